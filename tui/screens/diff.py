"""The diff screen (`d`): a run against the previous run of the same pipeline (`engine.diff`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from engine.diff import divergence_text
from tui import format as fmt
from tui.screens.console import HELP_AND_QUIT

if TYPE_CHECKING:
    from textual.app import ComposeResult

    from engine.diff import NodeDiff, RunDiff
    from tui.messages import RunSummary
    from tui.screens.console import ConsoleScreen


def previous_run(runs: list[RunSummary], run_id: str) -> str | None:
    """The run of the same pipeline created last before `run_id` (None if there is none)."""
    this = next((r for r in runs if r.run_id == run_id), None)
    if this is None or this.created_at is None:
        return None
    earlier = [
        r for r in runs
        if r.pipeline_id == this.pipeline_id and r.run_id != run_id
        and r.created_at is not None and r.created_at < this.created_at
    ]
    return max(earlier, key=lambda r: r.created_at or "").run_id if earlier else None


def header_text(diff: RunDiff) -> Text:
    """What changed around the nodes: definition, params, and where the runs went apart."""
    a, b = diff.state
    text = Text(" A ")
    text.append(fmt.short_id(diff.run_a), style="bold")
    text.append(f" {a}", style=fmt.state_style(a))
    text.append("  ->  B ")
    text.append(fmt.short_id(diff.run_b), style="bold")
    text.append(f" {b}", style=fmt.state_style(b))
    text.append(f"   ({diff.pipeline[1]})", style="dim")
    if diff.identical:
        text.append("\n the runs match: same definition, params, node states and outputs",
                    style="green")
    changes = [f"+{n}" for n in diff.nodes_added] + [f"-{n}" for n in diff.nodes_removed]
    changes += [f"~{n} ({', '.join(keys)})" for n, keys in diff.nodes_changed.items()]
    changes += [f"~pipeline ({', '.join(diff.pipeline_fields_changed)})"] * bool(
        diff.pipeline_fields_changed
    )
    text.append("\n definition: ")
    text.append(", ".join(changes) if changes else "unchanged",
                style="yellow" if changes else "dim")
    params = [f"+{k}={v!r}" for k, v in diff.params_added.items()]
    params += [f"-{k}" for k in diff.params_removed]
    params += [f"{k}: {old!r} -> {new!r}" for k, (old, new) in diff.params_changed.items()]
    text.append("\n params: ")
    text.append(", ".join(params) if params else "unchanged", style="yellow" if params else "dim")
    text.append("\n first divergence: ")
    if diff.first_divergence is None:
        text.append("none", style="dim")
    else:
        text.append(divergence_text(diff.nodes[diff.first_divergence]), style="bold red")
    return text


def _secs(value: float | None) -> str:
    return fmt.duration(value) if value is not None else "-"


def node_cells(node: NodeDiff, *, ascii: bool) -> list[Text]:
    outcome = bool(set(node.differs) - {"duration"})
    mark = ("!" if outcome else "~" if node.differs else " ") if ascii else (
        "≠" if outcome else "~" if node.differs else " "
    )
    a, b = node.state
    states = Text(a or "-", style=fmt.state_style(a or ""))
    if a != b:
        states.append(" -> ")
        states.append(b or "-", style=fmt.state_style(b or ""))
    tries = f"{node.attempts[0] if node.attempts[0] is not None else '-'}"
    tries += f" / {node.attempts[1] if node.attempts[1] is not None else '-'}"
    output = "-" if node.output_hash == (None, None) else (
        "differs" if "output" in node.differs else "same"
    )
    return [
        Text(mark, style="bold red" if outcome else "yellow"),
        Text(node.node_id, style="bold" if outcome else ""),
        states,
        Text(tries, style="yellow" if "attempts" in node.differs else ""),
        Text(f"{_secs(node.duration[0])} -> {_secs(node.duration[1])}",
             style="yellow" if "duration" in node.differs else ""),
        Text(output, style="red" if output == "differs" else "dim"),
    ]


class DiffScreen(Screen[None]):
    """Run B (the selected one) against run A (the previous run of its pipeline)."""

    CSS_PATH = "diff.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        *HELP_AND_QUIT,
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, diff: RunDiff, *, ascii: bool = False) -> None:
        super().__init__()
        self.diff = diff
        self.ascii = ascii

    @property
    def table(self) -> DataTable[Text]:
        return self.query_one("#diff-nodes", DataTable)

    def compose(self) -> ComposeResult:
        yield Static(header_text(self.diff), id="diff-header")
        yield DataTable(id="diff-nodes", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        columns = (("mark", "", 1), ("node", "Node", 24), ("state", "State A -> B", 26),
                   ("tries", "Tries A / B", 11), ("time", "Time A -> B", 20),
                   ("output", "Output", 8))
        for key, label, width in columns:
            self.table.add_column(label, key=key, width=width)
        for node in self.diff.nodes.values():
            self.table.add_row(*node_cells(node, ascii=self.ascii), key=node.node_id)
        if self.diff.first_divergence is not None:
            self.table.move_cursor(row=self.table.get_row_index(self.diff.first_divergence))
        self.table.focus()

    def action_back(self) -> None:
        self.dismiss()


async def open_diff(screen: ConsoleScreen, run_id: str) -> None:
    """Show `run_id` against the previous run of its pipeline, or say why not."""
    from engine.diff import diff_runs

    earlier = previous_run(screen.bridge.runs, run_id)
    if earlier is None:
        screen.notify(
            f"run {fmt.short_id(run_id)} has no earlier run of its pipeline to compare with",
            severity="warning",
        )
        return
    try:
        before = await screen.bridge.run_state(earlier)
        after = await screen.bridge.run_state(run_id)
    except Exception as exc:  # an unreadable run is reported, not raised
        screen.notify(f"cannot compare: {exc}", severity="error")
        return
    await screen.app.push_screen(DiffScreen(diff_runs(before, after), ascii=screen.ctx.ascii))
