"""RunHeader: a run's state, elapsed time, deadline countdown and where its news comes from."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import Static

from engine.state import RunStatus
from tui import format as fmt
from tui import view
from tui.ascii import ascii_text

if TYPE_CHECKING:
    from engine.state import RunState


def header_text(
    state: RunState,
    now: float,
    *,
    ascii: bool = False,
    source: str = "",
    updated: float | None = None,
    stopping: bool = False,
    kill_in: float | None = None,
    can_force: bool = False,
    width: int = 120,
) -> Text:
    """Two lines: what the run is and how it stands; then its clock and node counts.

    `stopping`: a cancel (or the run deadline) stops it and its nodes are in their cleanup
    grace, the SIGKILL due in `kill_in` seconds; `can_force`: `K` can skip the grace here."""
    shown = "cancelling" if stopping else state.state.value
    glyph = fmt.run_glyph(shown, ascii=ascii)
    first = Text()
    first.append(f" {glyph} {shown.upper()} ", style=fmt.state_style(shown))
    first.append(f" {state.pipeline_id}", style="bold")
    first.append(f"  run {fmt.short_id(state.run_id)}")
    if state.replay_of:
        first.append(f"  replay of {fmt.short_id(state.replay_of)}", style="dim")
    if state.retry_of:
        first.append(f"  retry of {fmt.short_id(state.retry_of)}", style="dim")
    if state.run_attempt > 1:
        first.append(f"  resumed x{state.run_attempt - 1}", style="dim")
    if state.simulate:
        first.append("  SIMULATED", style="bold yellow")
    if source:
        first.append(f"  {source}", style="dim")
    if updated is not None and not state.is_terminal:
        first.append(f", updated {fmt.ago(updated)}", style="dim")

    second = Text(" ")
    second.append(f"elapsed {fmt.duration(view.run_elapsed(state, now))}")
    if kill_in is not None:
        second.append("  SIGKILL in ")
        second.append(fmt.countdown(max(0.0, kill_in)), style="bold red")
        if can_force:
            second.append(" (K: now)", style="dim")
    left = view.run_deadline_left(state, now)
    if left is not None:
        second.append("  deadline in ")
        second.append(fmt.countdown(left), style="bold cyan" if left > 10 else "bold red")
    counts = view.counts(state)
    # The nodes named as the node table names them: in an interrupted run what was running or
    # waiting is orphaned; in a cancel's grace what runs is cancelling.
    if state.state is RunStatus.INTERRUPTED:
        orphaned = counts.pop("running", 0) + counts.pop("waiting", 0)
        if orphaned:
            counts["orphaned"] = orphaned
    elif stopping and "running" in counts:
        counts["cancelling"] = counts.pop("running")
    marks = "  ".join(
        f"{fmt.node_glyph(s, ascii=ascii)}{n} {s}" for s, n in counts.items() if n
    )
    second.append(f"  {marks}", style="dim")
    if state.reason and (state.is_terminal or state.state is RunStatus.INTERRUPTED):
        # Cut to what is left of the line, with an ellipsis: never cut off mid-word by the edge.
        room = max(12, width - second.cell_len - len("  reason: ") - 1)
        reason = fmt.one_line(state.reason, min(room, 80))
        if ascii and reason.endswith("…"):
            reason = reason[:-3] + "..."
        if ascii:
            reason = ascii_text(reason)
        second.append(f"  reason: {reason}", style="italic")
    return Text("\n").join([first, second])


class RunHeader(Static):
    """The top two lines of a run view (and of a playback)."""

    DEFAULT_CSS = """
    RunHeader {
        height: 2;
        background: $boost;
    }
    """

    _shown: Text | None = None

    def show(
        self,
        state: RunState,
        now: float,
        *,
        ascii: bool = False,
        source: str = "",
        updated: float | None = None,
        stopping: bool = False,
        kill_in: float | None = None,
        can_force: bool = False,
    ) -> None:
        text = header_text(
            state, now, ascii=ascii, source=source, updated=updated, stopping=stopping,
            kill_in=kill_in, can_force=can_force, width=self.size.width or 120,
        )
        if text != self._shown:  # most batches of events change neither line
            self._shown = text
            self.update(text, layout=False)  # two lines whatever they say: no layout
