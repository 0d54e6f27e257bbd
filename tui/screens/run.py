"""The run view: header, the DAG, the node table and the live event log of one run."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.binding import Binding, BindingType
from textual.widgets import Footer, Input, Static

from engine.state import RunStatus
from tui import format as fmt
from tui import view
from tui.ascii import ascii_text
from tui.dag_grid import run_graph
from tui.messages import NodeRequested
from tui.screens.base import RUN_BINDINGS, RunActionsScreen
from tui.screens.console import RunFollower
from tui.widgets.dag_view import DagView
from tui.widgets.event_log import EventLog
from tui.widgets.node_table import NodeTable
from tui.widgets.run_header import RunHeader

REFRESH_EVERY = 0.25  # seconds: the least time between two redraws of the tables in a burst

if TYPE_CHECKING:
    from textual.app import ComposeResult

    from engine.events import Event
    from engine.state import RunState
    from tui.context import Context
    from tui.messages import BreakersChanged, RunEventsArrived


def selected_line(
    state: RunState,
    node_id: str,
    infos: dict[str, view.NodeInfo],
    breakers: dict[str, view.BreakerView],
    now: float,
    *,
    ascii: bool,
    live: bool = True,
    graces: dict[str, view.Grace] | None = None,
) -> Text:
    """The status line under the DAG: the selected node, its timeout countdown (or the one to
    its SIGKILL, in a cancel's grace), its breaker."""
    node = state.nodes.get(node_id)
    if node is None:
        return Text(f" {node_id}")
    info = infos.get(node_id)
    row = view.node_row(
        node, info, {**view.breakers_from_run(state), **breakers}, now, live=live,
        grace=(graces or {}).get(node_id), orphaned=state.state is RunStatus.INTERRUPTED,
    )
    line = Text(" ")
    line.append(f"{fmt.node_glyph(row.state, ascii=ascii)} {node_id}", style="bold")
    line.append(f"  {row.state}", style=fmt.state_style(row.state))
    if info is not None:
        line.append(f"  {info.node_type}", style="dim")
    line.append(f"  try {row.attempt}  took {row.duration}")
    if row.left is not None:
        line.append("  SIGKILL in " if row.state == "cancelling" else "  timeout ")
        line.append(fmt.countdown_bar(row.left, row.total, 16, ascii=ascii), style="cyan")
    if row.breaker:
        key = info.breaker_key if info else ""
        line.append(f"  breaker {key}: ")
        line.append(row.breaker, style=fmt.BREAKER_STYLES.get(row.breaker_state or "", ""))
    if row.error:
        error = fmt.one_line(row.error, 50)
        line.append(f"  {ascii_text(error) if ascii else error}", style="red")
    return line


class RunScreen(RunFollower, RunActionsScreen):
    """One run, live: from this console's manager as it happens, or polled from the store."""

    CSS_PATH = "run.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        *RUN_BINDINGS,
        Binding("slash", "filter", "Filter log"),
        Binding("F", "follow", "Follow log", show=False),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, ctx: Context, run_id: str) -> None:
        super().__init__(ctx)
        self.run_id = run_id
        self.state: RunState | None = None
        self.infos: dict[str, view.NodeInfo] = {}
        self.breakers: dict[str, view.BreakerView] = {}
        self._status_shown: Text | None = None
        self.graces: dict[str, view.Grace] = {}  # nodes whose process group got SIGTERM
        self._heard = view.OwnerHeard()  # an interrupted run: when its owner was last heard
        self._refreshed = 0.0  # monotonic time of the last refresh
        self._refresh_due = False  # a refresh is scheduled
        # The view's clock moves once a second: the durations and countdowns of 200 running
        # nodes then change once a second, not with every batch of events (ten a second), and
        # each change of the node table repaints all of it.
        self._now = ctx.now()

    @property
    def header(self) -> RunHeader:
        return self.query_one(RunHeader)

    @property
    def dag(self) -> DagView:
        return self.query_one(DagView)

    @property
    def table(self) -> NodeTable:
        return self.query_one(NodeTable)

    @property
    def log_view(self) -> EventLog:
        return self.query_one(EventLog)

    @property
    def dag_status(self) -> Static:
        return self.query_one("#dag-status", Static)

    @property
    def log_filter(self) -> Input:
        return self.query_one("#log-filter", Input)

    def compose(self) -> ComposeResult:
        yield RunHeader(id="run-header")
        yield DagView(ascii=self.ctx.ascii, id="dag")
        yield Static("", id="dag-status")
        yield NodeTable(ascii=self.ctx.ascii, id="nodes")
        yield Input(placeholder="filter events: words that must all appear", id="log-filter")
        yield EventLog(ascii=self.ctx.ascii, id="events")
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.log_filter.display = False
        # Focus first, before the run's events arrive: a focus change recomposes the footer
        # (some 20 keys, a stylesheet pass each), which in a 200-node burst held up the first
        # arrow key by a tenth of a second or more.
        self.dag.focus()
        self.breakers = self.bridge.breakers
        self.set_interval(1.0, self._tick)
        self._follow()

    @work(exit_on_error=False)
    async def _follow(self) -> None:
        watched = await self.watch_run(f"cannot show run {fmt.short_id(self.run_id)}")
        if watched is None:
            return
        state, events = watched
        self._now = self.ctx.now()
        self.state = state
        self.infos = view.infos_of_state(state)
        self.dag.set_graph(run_graph(state))
        focus = view.focus_node(state)
        if focus is not None:
            self.dag.select(focus)
        self.log_view.reset(events)
        self._log_title()
        self._take(events)
        self.refresh_view()
        self.dag.focus()

    def target_run(self) -> str | None:
        return self.run_id

    def open_run(self, run_id: str) -> None:
        if run_id != self.run_id:  # a resumed run goes on right here
            super().open_run(run_id)

    def target_node(self) -> str | None:
        return self.dag.selected

    # -- news -------------------------------------------------------------------------------------

    def on_run_events_arrived(self, message: RunEventsArrived) -> None:
        if message.run_id != self.run_id or not self._watching:
            return
        self.state = message.state
        self.log_view.add(message.events)  # kept as lines, drawn once in sight
        self._take(message.events)
        self._refresh_soon()

    def _refresh_soon(self) -> None:
        """Refresh now, or, if the last refresh was under `REFRESH_EVERY` ago, once that much
        has passed: in a burst (200 nodes starting at once) the tables are redrawn four times a
        second rather than with every batch of events, and a key gets the frames in between."""
        if self._refresh_due:
            return
        wait = self._refreshed + REFRESH_EVERY - time.monotonic()
        if wait <= 0:
            self.refresh_view()
            return
        self._refresh_due = True
        self.set_timer(wait, self._refresh_now)

    def _refresh_now(self) -> None:
        self._refresh_due = False
        self.refresh_view()

    def _take(self, events: list[Event]) -> None:
        view.note_graces(events, self.graces)
        if events:
            self._heard.take(events, self.bridge.heartbeat_at(self.run_id))

    def clock(self) -> float:
        """The view's now: an interrupted run's clocks stop when its owner was lost."""
        state = self.state
        if state is None:
            return self._now
        return self._heard.clock(state, self._now, self.bridge.heartbeat_at(self.run_id))

    def on_screen_resume(self) -> None:
        if self._watching:
            self._tick()  # what was held back while a node's detail was on view

    def _tick(self) -> None:
        self._now = self.ctx.now()
        self.refresh_view()

    def on_breakers_changed(self, message: BreakersChanged) -> None:
        self.breakers = message.breakers
        self._refresh_soon()

    def refresh_view(self) -> None:
        state = self.state
        if state is None or not self.in_sight:
            return
        self._refreshed = time.monotonic()
        now = self.clock()
        own = self.bridge.is_own(self.run_id)
        source, updated = "this console", None
        interrupted = state.state is RunStatus.INTERRUPTED
        if interrupted:
            listed = self.bridge.summary(self.run_id)
            owner = listed.owner if listed is not None else "-"
            source = "owner lost"
            if owner not in ("lost", "-"):
                source += f" {owner.removeprefix('lost ')}"
            if now < self._now:
                source += f", last heard {fmt.epoch_clock_time(now)}"
        elif not own:
            listed = self.bridge.summary(self.run_id)
            source = "followed from the store"
            if listed is not None and listed.owner != "-":
                source += f" ({listed.owner})"
            # News of a run of another process: its last event, or its owner's last heartbeat.
            heard = [fmt.epoch(state.updated_at) or 0.0]
            if listed is not None and listed.heartbeat_at is not None:
                heard.append(listed.heartbeat_at)
            updated = max(0.0, now - max(heard))
        graces = view.in_grace(state, self.graces) if not state.is_terminal else []
        stopping = view.cancelling(state, self.graces, own and self.bridge.stopping(self.run_id))
        kill_in = min((grace.left(now) for grace in graces), default=None)
        self.header.show(
            state, now, ascii=self.ctx.ascii, source=source, updated=updated,
            stopping=stopping, kill_in=kill_in, can_force=own,
        )
        rows = view.node_rows(state, self.infos, self.breakers, now, graces=self.graces)
        # The DAG marks what the table says: `cancelling` in a grace, `orphaned` when interrupted.
        self.dag.set_states({row.node_id: row.state for row in rows})
        self.table.show(rows)
        self._status_line()

    def _status_line(self) -> None:
        selected = self.dag.selected
        line = Text()
        if self.state is not None and selected is not None:
            line = selected_line(
                self.state, selected, self.infos, self.breakers, self.clock(),
                ascii=self.ctx.ascii, graces=self.graces,
            )
        if line != self._status_shown:
            self._status_shown = line
            self.dag_status.update(line, layout=False)  # one line (run.tcss): no layout

    # -- keys -------------------------------------------------------------------------------------

    def on_dag_view_node_selected(self, message: DagView.NodeSelected) -> None:
        self._status_line()
        # The key's answer on screen first: the table's cursor follows a frame later (when it
        # scrolls, the whole table is drawn again, the slowest drawing on this screen).
        self.call_after_refresh(self._table_follows_dag)

    def _table_follows_dag(self) -> None:
        selected = self.dag.selected
        if selected is not None and not self.table.has_focus:  # never yank the table's cursor
            self.table.select(selected)

    def on_dag_view_node_opened(self, message: DagView.NodeOpened) -> None:
        self.open_node(message.node_id)

    def on_node_table_node_opened(self, message: NodeTable.NodeOpened) -> None:
        self.open_node(message.node_id)

    def open_node(self, node_id: str) -> None:
        self.post_message(NodeRequested(self.run_id, node_id, self.infos))

    def action_open(self) -> None:
        if self.dag.selected is not None:
            self.open_node(self.dag.selected)

    def action_filter(self) -> None:
        self.log_filter.display = True
        self.log_filter.focus()

    def action_follow(self) -> None:
        """Follow the newest events, or stop (to read back while the run goes on)."""
        log = self.log_view
        log.follow = not log.follow
        self._log_title()
        self.notify("the log follows the run" if log.follow else "the log stays put (F follows)",
                    timeout=3)

    def _log_title(self) -> None:
        log = self.log_view
        parts = ["events"]
        if log.query_text:
            parts.append(f"matching '{log.query_text}' (escape clears)")
        parts.append("following (F: stop)" if log.follow else "paused (F: follow)")
        log.border_title = ", ".join(parts)

    def on_input_changed(self, event: Input.Changed) -> None:
        self.log_view.query_text = event.value.strip()
        self._log_title()

    def on_input_submitted(self) -> None:
        if not self.log_filter.value.strip():
            self.log_filter.display = False
        self.log_view.focus()

    def action_back(self) -> None:
        # Escape undoes the filter first (wherever the focus is), then leaves.
        if self.log_filter.has_focus or self.log_filter.value or self.log_filter.display:
            self.log_filter.value = ""
            self.log_filter.display = False
            self._log_title()
            self.dag.focus()
            return
        self.dismiss()
