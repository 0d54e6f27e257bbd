"""Node detail: one node of a run: inputs, output, logs, error and every attempt with timing."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import work
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Label, RichLog, Static

from engine.state import RunStatus
from tui import format as fmt
from tui import view
from tui.ascii import ascii_text
from tui.escape import printable
from tui.screens.base import RUN_BINDINGS, RunActionsScreen
from tui.screens.console import RunFollower
from tui.screens.node_test import NodeTestKey
from tui.screens.run import RunScreen
from tui.widgets.vim import VimTable

if TYPE_CHECKING:
    from textual.app import ComposeResult

    from engine.state import NodeState, RunState
    from tui.context import Context
    from tui.messages import BreakersChanged, RunEventsArrived


def pretty(value: Any) -> str:
    if value is None:
        return "-"
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def node_summary(
    state: RunState,
    node: NodeState,
    info: view.NodeInfo | None,
    row: view.NodeRow,
    *,
    ascii: bool,
) -> Text:
    text = Text(" ")
    text.append(f"{fmt.node_glyph(row.state, ascii=ascii)} {node.node_id}", style="bold")
    text.append(f"  {row.state}", style=fmt.state_style(row.state))
    if info is not None:
        text.append(f"  type {info.node_type}  timeout {fmt.duration(info.timeout)}", style="dim")
    text.append(f"  in run {fmt.short_id(state.run_id)} ({state.pipeline_id})", style="dim")
    text.append(f"\n attempts {row.attempt}  took {row.duration}")
    if row.left is not None:
        text.append("  SIGKILL in " if row.state == "cancelling" else "  timeout in ")
        text.append(fmt.countdown_bar(row.left, row.total, 20, ascii=ascii), style="cyan")
    if info is not None and info.breaker_key:
        text.append(f"  breaker {info.breaker_key}: {row.breaker}")
    if node.decision:
        d = node.decision
        text.append(
            f"\n {d['decision']} by {d['actor']} at {fmt.day_time(d['at'])}"
            + (f": {d['reason']}" if d.get("reason") else ""),
            style="bold magenta",
        )
    return text


class NodeScreen(NodeTestKey, RunFollower, RunActionsScreen):
    """Everything about one node; follows the run live. `escape` goes back."""

    CSS_PATH = "node.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        *RUN_BINDINGS,
        Binding("L", "log_full", "Log full screen"),
        Binding("escape", "back", "Back"),
    ]
    RETRY_FROM_NODE = True  # `f` here runs this node again too, and what is downstream of it

    def __init__(
        self, ctx: Context, run_id: str, node_id: str, infos: dict[str, view.NodeInfo]
    ) -> None:
        super().__init__(ctx)
        self.run_id = run_id
        self.node_id = node_id
        self.infos = infos
        self.state: RunState | None = None
        self.breakers: dict[str, view.BreakerView] = {}
        self._logs_shown = 0
        self._log_tail: str | None = None

    @property
    def attempts(self) -> DataTable[str]:
        return self.query_one("#attempts", DataTable)

    @property
    def logs(self) -> RichLog:
        return self.query_one("#logs", RichLog)

    def compose(self) -> ComposeResult:
        yield Static("", id="node-summary")
        with VerticalScroll(id="node-body"):
            yield Label("Attempts", classes="section")
            yield VimTable(id="attempts", cursor_type="row")
            yield Label("Error", classes="section")
            yield Static("-", id="node-error")
            yield Label("Inputs", classes="section")
            yield Static("-", id="node-inputs")
            yield Label("Output", classes="section")
            yield Static("-", id="node-output")
            yield Label("Logs", classes="section")
            yield RichLog(id="logs", wrap=False, markup=False, max_lines=500)
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        for label in ("#", "Started (UTC)", "Ended", "Took", "Outcome", "Error"):
            self.attempts.add_column(label, key=label)
        self.breakers = self.bridge.breakers
        self.set_interval(1.0, self.refresh_view)
        self._follow()

    @work(exit_on_error=False)
    async def _follow(self) -> None:
        watched = await self.watch_run(None, history=False)  # None: the run vanished
        if watched is None:
            return
        self.state = watched[0]
        self.refresh_view()
        self.query_one("#node-body").focus()

    def target_run(self) -> str | None:
        return self.run_id

    def target_node(self) -> str | None:
        return self.node_id

    def on_run_events_arrived(self, message: RunEventsArrived) -> None:
        if message.run_id == self.run_id and self._watching:
            self.state = message.state
            self.refresh_view()

    def on_breakers_changed(self, message: BreakersChanged) -> None:
        self.breakers = message.breakers

    def refresh_view(self) -> None:
        if self.state is None or self.node_id not in self.state.nodes:
            return
        node = self.state.nodes[self.node_id]
        info = self.infos.get(self.node_id)
        run_view = self._run_view()
        # The run view's clock and graces: an interrupted run's clocks stopped when its owner
        # was lost, and a node in a cancel's grace counts down to its SIGKILL, here too.
        now = run_view.clock() if run_view is not None else self.ctx.now()
        grace = run_view.graces.get(self.node_id) if run_view is not None else None
        breakers = {**view.breakers_from_run(self.state), **self.breakers}
        row = view.node_row(
            node, info, breakers, now, grace=grace,
            orphaned=self.state.state is RunStatus.INTERRUPTED,
        )
        self.query_one("#node-summary", Static).update(
            node_summary(self.state, node, info, row, ascii=self.ctx.ascii)
        )
        self._show_attempts(node, now)
        error = f"{node.error_class}: {node.reason}" if node.error_class else (node.reason or "-")
        style = "red" if node.error_class else ""
        error = printable(error)
        if self.ctx.ascii:
            error = ascii_text(error)
        self.query_one("#node-error", Static).update(Text(error, style=style))
        inputs = view.node_inputs(self.state, self.node_id)
        self.query_one("#node-inputs", Static).update(pretty(inputs))
        self.query_one("#node-output", Static).update(pretty(node.output))
        self._show_logs(node.logs)

    def _show_logs(self, lines: list[str]) -> None:
        """Append the new log lines; redraw when the kept window of lines moved."""
        shown = self._logs_shown
        if len(lines) == shown and (not lines or lines[-1] == self._log_tail):
            return
        if not (shown <= len(lines) and (shown == 0 or lines[shown - 1] == self._log_tail)):
            self.logs.clear()
            shown = 0
        for line in lines[shown:]:
            line = printable(line)
            self.logs.write(Text(ascii_text(line) if self.ctx.ascii else line))
        self._logs_shown = len(lines)
        self._log_tail = lines[-1] if lines else None

    def _show_attempts(self, node: NodeState, now: float) -> None:
        table = self.attempts
        table.clear()
        # An attempt still open in an interrupted run is not running: its owner is gone.
        lost = self.state is not None and self.state.state is RunStatus.INTERRUPTED
        for record in node.history:
            took = fmt.elapsed(record.started_at, record.ended_at, now)
            open_as = ("lost", "orphaned") if lost else ("running", "running")
            table.add_row(
                str(record.attempt),
                fmt.day_time(record.started_at),
                fmt.clock_time(record.ended_at) if record.ended_at else open_as[0],
                fmt.duration(took),
                record.outcome or open_as[1],
                fmt.one_line(
                    f"{record.error_class}: {record.reason}" if record.error_class else "", 60
                ),
            )

    def _run_view(self) -> RunScreen | None:
        for screen in self.app.screen_stack:
            if isinstance(screen, RunScreen) and screen.run_id == self.run_id:
                return screen
        return None

    def action_log_full(self) -> None:
        """The node's log alone on the screen (again: back to the whole detail)."""
        full = not self.has_class("-log-full")
        self.set_class(full, "-log-full")
        if full:
            self.logs.focus()
            self.logs.scroll_end(animate=False)

    def action_back(self) -> None:
        if self.has_class("-log-full"):  # escape leaves the full-screen log first
            self.action_log_full()
            return
        self.dismiss()
