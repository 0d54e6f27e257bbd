"""Playback: scrub through a stored run's events like a video (the state is fold(first k))."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.binding import Binding, BindingType
from textual.widgets import Footer, Static

from tui import format as fmt
from tui import view
from tui.dag_grid import run_graph
from tui.playback import Tape, faster, slower
from tui.screens.console import ConsoleScreen
from tui.screens.run import selected_line
from tui.widgets.dag_view import DagView
from tui.widgets.event_log import EventLog
from tui.widgets.node_table import NodeTable
from tui.widgets.run_header import RunHeader

if TYPE_CHECKING:
    from textual.app import ComposeResult
    from textual.timer import Timer

    from tui.context import Context

FRAME = 0.1  # seconds between frames while playing


class PlaybackScreen(ConsoleScreen):
    """`space` play/pause, `left`/`right` step, `home`/`end` jump, `+`/`-` speed."""

    CSS_PATH = "playback.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "play_pause", "Play/pause"),
        Binding("left,comma", "step(-1)", "Step back", priority=True),
        Binding("right,full_stop", "step(1)", "Step", priority=True),
        Binding("home", "jump(0)", "Start", priority=True),
        Binding("end", "jump(1)", "End", priority=True),
        Binding("plus,equals_sign", "speed(1)", "Faster"),
        Binding("minus", "speed(-1)", "Slower"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, ctx: Context, run_id: str) -> None:
        super().__init__(ctx)
        self.run_id = run_id
        self.tape: Tape | None = None
        self.infos: dict[str, view.NodeInfo] = {}
        self.speed = 1.0
        self.playing = False
        self._at = 0.0  # playhead, seconds into the run (finer than the events)
        self._timer: Timer | None = None
        self._log_k = 0  # events written to the log so far

    @property
    def dag(self) -> DagView:
        return self.query_one(DagView)

    @property
    def log_view(self) -> EventLog:
        return self.query_one(EventLog)

    def compose(self) -> ComposeResult:
        yield Static("", id="playback-bar")
        yield RunHeader(id="playback-header")
        yield DagView(ascii=self.ctx.ascii, openable=False, id="playback-dag")
        yield Static("", id="playback-status")
        yield NodeTable(ascii=self.ctx.ascii, id="playback-nodes")
        yield EventLog(id="playback-events")
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        self._load()

    @work(exit_on_error=False)
    async def _load(self) -> None:
        try:
            events = await self.bridge.load_events(self.run_id)
        except Exception as exc:  # nothing to play
            self.notify(str(exc), severity="error")
            self.dismiss()
            return
        if not events:
            self.notify(f"run {fmt.short_id(self.run_id)} has no events", severity="error")
            self.dismiss()
            return
        self.tape = Tape(self.run_id, events)
        final = self.tape
        final.seek(final.total)
        state = final.state()
        self.infos = view.infos_of_state(state)
        self.dag.set_graph(run_graph(state))
        final.seek(0)
        self._at = 0.0
        self.show()
        self.dag.focus()

    def show(self) -> None:
        tape = self.tape
        if tape is None:
            return
        state = tape.state()
        now = tape.now
        mark = "▶ playing" if self.playing else "⏸ paused"
        if self.ctx.ascii:
            mark = "> playing" if self.playing else "|| paused"
        bar = Text()
        bar.append(" PLAYBACK ", style="reverse bold")
        bar.append(f"  {mark} at {self.speed:g}x   event {tape.k}/{tape.total}   ")
        bar.append(f"+{fmt.duration(tape.at)} of {fmt.duration(tape.length)}  ")
        width = 24
        progress = fmt.bar(tape.k / tape.total if tape.total else 0, width, ascii=self.ctx.ascii)
        bar.append(progress, style="bold cyan")
        self.query_one("#playback-bar", Static).update(bar)
        self.query_one(RunHeader).show(state, now, ascii=self.ctx.ascii, source="as it was then")
        self.dag.set_states({n.node_id: n.state.value for n in state.nodes.values()})
        self.query_one(NodeTable).show(view.node_rows(state, self.infos, {}, now))
        if tape.k >= self._log_k:
            self.log_view.add(tape.events[self._log_k : tape.k])
        else:
            self.log_view.reset(tape.shown)
        self._log_k = tape.k
        selected = self.dag.selected
        status = self.query_one("#playback-status", Static)
        if selected is not None:
            status.update(selected_line(state, selected, self.infos, {}, now, ascii=self.ctx.ascii))

    def on_dag_view_node_selected(self) -> None:
        self.show()

    # -- transport --------------------------------------------------------------------------------

    def action_play_pause(self) -> None:
        if self.tape is None:
            return
        if not self.playing and self.tape.k >= self.tape.total:
            self.tape.seek(0)
            self._at = 0.0
        self.playing = not self.playing
        if self.playing:
            self._timer = self.set_interval(FRAME, self._frame)
        elif self._timer is not None:
            self._timer.stop()
            self._timer = None
        self.show()

    def _frame(self) -> None:
        tape = self.tape
        if tape is None:
            return
        self._at += FRAME * self.speed
        tape.seek_time(self._at)
        if tape.k >= tape.total:
            self.action_play_pause()
            return
        self.show()

    def action_step(self, delta: int) -> None:
        if self.tape is not None:
            self.tape.step(delta)
            self._at = self.tape.at
            self.show()

    def action_jump(self, end: int) -> None:
        if self.tape is not None:
            self.tape.seek(self.tape.total if end else 0)
            self._at = self.tape.at
            self.show()

    def action_speed(self, direction: int) -> None:
        self.speed = faster(self.speed) if direction > 0 else slower(self.speed)
        self.show()

    def action_back(self) -> None:
        self.dismiss()
