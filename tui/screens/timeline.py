"""`T`: the timeline of a run, live: one row per node on a shared time axis.

Contract: the screen follows the run through the bridge (all its events so far, then each batch
as it arrives) and draws `tui.timeline.render` at the screen's width, once a second while the
run goes and at every batch; the axis and the legend stay put while the rows scroll (`up`,
`down`, `page up`, `page down`). `escape` (or `T` again) goes back. Colour only repeats what the
characters say.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Footer, Static

from engine.state import RunStatus
from tui import format as fmt
from tui import view
from tui.screens.console import RunFollower
from tui.timeline import MARKS, Timeline, render

if TYPE_CHECKING:
    from textual.app import ComposeResult

    from engine.events import Event
    from engine.state import RunState
    from tui.context import Context
    from tui.messages import RunEventsArrived

MAX_ROWS = 1000  # nodes drawn (in graph order); a bigger run says how many more it has
_STYLES: dict[str, str] = {
    "ran": "green",
    "failed": "bold red",
    "timed_out": "bold red",
    "cancelled": "yellow",
    "retry_wait": "yellow",
    "approval_wait": "magenta",
    "grace": "red",
    "reused": "cyan",
    "interrupted": "dim",
}
_STYLE_OF_CHAR = {
    char: _STYLES[kind] for kind, chars in MARKS.items() for char in chars if char not in "#"
} | {"#": "green"}


def coloured(line: str) -> Text:
    """A row of the timeline with its marks coloured (between the bars only), one style per
    stretch of the same mark."""
    text = Text(line)
    left, right = line.find("|"), line.rfind("|")
    if left < 0 or right <= left:
        return text
    at = left + 1
    for char, run in itertools.groupby(line[left + 1 : right]):
        width = len(list(run))
        style = _STYLE_OF_CHAR.get(char)
        if style:
            text.stylize(style, at, at + width)
        at += width
    return text


class TimelineScreen(RunFollower):
    """The Gantt of one run's attempts, retries and waits."""

    CSS_PATH = "timeline.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,T", "back", "Back"),
    ]

    def __init__(self, ctx: Context, run_id: str) -> None:
        super().__init__(ctx)
        self.run_id = run_id
        self.timeline = Timeline()
        self.state: RunState | None = None  # the bridge's: `interrupted` when the lease says so
        self.graces: dict[str, view.Grace] = {}  # nodes whose process group got SIGTERM
        self._heard = view.OwnerHeard()  # an interrupted run's clock stops when it was lost
        self._drawn: tuple[int, int, float | None, str] | None = None  # what the rows show now

    @property
    def rows(self) -> Static:
        return self.query_one("#timeline-rows", Static)

    def compose(self) -> ComposeResult:
        yield Static("", id="timeline-title")
        yield Static("", id="timeline-axis")
        with VerticalScroll(id="timeline-body"):
            yield Static("", id="timeline-rows")
        yield Static("", id="timeline-legend")
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.set_interval(1.0, self.refresh_view)
        self._follow()

    @work(exit_on_error=False)
    async def _follow(self) -> None:
        watched = await self.watch_run(f"no timeline for run {fmt.short_id(self.run_id)}")
        if watched is None:
            return
        self.state = watched[0]
        self._take(watched[1])
        self.refresh_view()
        self.query_one("#timeline-body").focus()

    def on_run_events_arrived(self, message: RunEventsArrived) -> None:
        if message.run_id == self.run_id and self._watching:
            self.state = message.state
            self._take(message.events)
            self.refresh_view()

    def _take(self, events: list[Event]) -> None:
        self.timeline.add(events)
        view.note_graces(events, self.graces)
        if events:
            self._heard.take(events, self.bridge.heartbeat_at(self.run_id))

    def shown_state(self) -> str:
        """The run's state as the run view's header says it: `interrupted` when its owner is
        lost, `cancelling` while its nodes are in a cancel's grace."""
        state = self.state
        if state is None:
            return self.timeline.state
        here = self.bridge.is_running_here(self.run_id) and self.bridge.stopping(self.run_id)
        return "cancelling" if view.cancelling(state, self.graces, here) else state.state.value

    def on_resize(self) -> None:
        self.refresh_view()

    def refresh_view(self) -> None:
        if not self._watching or not self.in_sight:
            return
        timeline = self.timeline
        width = max(40, self.size.width - 2)  # the scrollbar's columns
        shown = self.shown_state()
        lost = shown == RunStatus.INTERRUPTED.value
        drawn = (timeline.last_seq, width, timeline.end, shown)
        if drawn == self._drawn and (timeline.end is not None or lost):
            return  # a finished (or dead) run drawn at this width: nothing can have moved
        self._drawn = drawn
        now = self.ctx.now()
        if self.state is not None:
            # As in the run view: a dead owner's run stands still from when it was lost.
            now = self._heard.clock(self.state, now, self.bridge.heartbeat_at(self.run_id))
        lines, legend = render(
            timeline, width, now, ascii=self.ctx.ascii, rows=MAX_ROWS, lost=lost
        )
        live = timeline.end is None and not lost
        start = timeline.start if timeline.start is not None else now
        span = (timeline.end if timeline.end is not None else now) - start
        glyph = fmt.run_glyph(shown, ascii=self.ctx.ascii)
        self.query_one("#timeline-title", Static).update(
            Text(
                f" Timeline  {glyph} {shown.upper()}  run {fmt.short_id(self.run_id)}"
                f"  {len(timeline.lanes)} nodes  {fmt.duration(max(0.0, span))}"
                + ("  (live)" if live else ""),
                style="bold",
            )
        )
        self.query_one("#timeline-axis", Static).update(Text(lines[0]))
        self.rows.update(Text("\n").join(coloured(line) for line in lines[1:]))
        self.query_one("#timeline-legend", Static).update(Text("\n".join(legend)))

    def action_back(self) -> None:
        self.dismiss()
