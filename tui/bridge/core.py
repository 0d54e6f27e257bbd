"""The bridge's core: it hosts the run manager, follows runs live and from the store, and
posts batched, coalescing messages to the screens (see `tui.bridge` for the contract)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.state import RunState, RunStatus, apply
from tui.bridge.commands import CommandError, Commands, operator_actor
from tui.bridge.history import History
from tui.bridge.polling import Polling
from tui.messages import BreakersChanged, RunEventsArrived, RunsListed
from tui.pipeline_folder import scan_pipelines
from tui.view import Grace, in_grace, note_graces

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from textual.message import Message
    from textual.message_pump import MessagePump

    from engine.events import Event
    from engine.manager import RunManager
    from engine.metrics import Metrics
    from engine.store import Store
    from tui.messages import RunSummary
    from tui.pipeline_folder import PipelineEntry
    from tui.view import BreakerView

log = logging.getLogger("interlock.console")

KEPT = 2000
"""Events of a followed run kept in memory, the latest (a screen opening the run gets the older
ones from the store). Not all of them: a busy run makes thousands a second, and every event kept
is one more object for each full pass of the garbage collector, a pause the console's keys and
frames wait behind."""


@dataclass
class _Run:
    """A run the bridge follows: its fold and its latest events."""

    state: RunState
    own: bool
    recent: deque[Event] = field(default_factory=lambda: deque(maxlen=KEPT))
    # The folded run state hidden while the run's lease says `interrupted` (shown, never
    # written: reading a run does not write to it).
    masked: RunStatus | None = None
    # Nodes whose process group got SIGTERM, with when their SIGKILL is due (a quit during a
    # cancel's grace counts down to that, not to a grace started anew).
    graces: dict[str, Grace] = field(default_factory=dict)

    @property
    def last_seq(self) -> int:
        return self.state.last_seq


class Bridge(Polling, History, Commands):
    """The console's one link to the engine: `open()` it in the app's loop, `close()` it on exit.

    Screens `subscribe` to its messages while mounted and `watch`/`unwatch` the runs they show.
    """

    def __init__(
        self,
        db_path: Path,
        *,
        search_path: str | None = None,
        clock: Callable[[], float] = time.time,
        actor: str | None = None,
        poll_interval: float = 0.5,
        flush_interval: float = 0.1,
        metrics_port: int | None = None,
        manager_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.db_path = db_path
        self.search_path = search_path
        self.clock = clock
        self.actor = actor or operator_actor()
        self.poll_interval = poll_interval
        self.flush_interval = flush_interval
        self.metrics_port = metrics_port
        self._manager_options = dict(manager_options or {})
        self._store: Store | None = None
        self._reader: Store | None = None
        self._manager: RunManager | None = None
        self._metrics: Metrics | None = None
        self._subscribers: list[MessagePump] = []
        self._runs: dict[str, _Run] = {}
        self._watched: dict[str, int] = {}
        self._pending: dict[str, list[Event]] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._listed: list[RunSummary] = []
        self._listed_once = False  # the runs were looked up at least once
        self._breakers: dict[str, BreakerView] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._closed = False
        self._opened = asyncio.Event()

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def manager(self) -> RunManager:
        if self._manager is None:
            raise CommandError("the console is still opening its database")
        return self._manager

    @property
    def store(self) -> Store:
        if self._store is None:
            raise CommandError("the console is still opening its database")
        return self._store

    @property
    def ready(self) -> bool:
        return self._manager is not None

    async def wait_ready(self) -> None:
        """Return once `open()` has finished (a key pressed while the database opens waits)."""
        await self._opened.wait()

    async def open(self) -> None:
        from engine.manager import RunManager
        from engine.store import Store

        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        store = Store(self.db_path)
        await store.__aenter__()
        self._store = store
        try:
            reader = Store(self.db_path, readonly=True)
            await reader.__aenter__()
            self._reader = reader
            manager = RunManager(store=store, **self._manager_options)
            await manager.open()
        except BaseException:
            await self.close()
            raise
        manager.add_sink(self)
        if self.metrics_port is not None:
            from engine.metrics import Metrics

            self._metrics = Metrics()
            self.metrics_port = self._metrics.serve(self.metrics_port)  # 0 picks a free port
            manager.add_sink(self._metrics)
        self._manager = manager
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._drain_loop(), name="interlock-bridge-drain"),
            loop.create_task(self._poll_loop(), name="interlock-bridge-poll"),
        ]
        self._opened.set()

    async def close(self, reason: str = "the console quit") -> None:
        """Cancel this console's runs, stop polling, close the database. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._manager is not None:
            await self._manager.close(reason)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._metrics is not None:
            self._metrics.stop()
        for store in (self._reader, self._store):
            if store is not None:
                with contextlib.suppress(Exception):
                    await store.__aexit__(None, None, None)

    # -- subscribers ------------------------------------------------------------------------------

    def subscribe(self, pump: MessagePump) -> None:
        """Post every later message to `pump` too (a screen, while it is mounted)."""
        if pump not in self._subscribers:
            self._subscribers.append(pump)
        if self._listed:
            pump.post_message(RunsListed(list(self._listed), self._runs_total))
        if self._breakers:
            pump.post_message(BreakersChanged(dict(self._breakers)))

    def unsubscribe(self, pump: MessagePump) -> None:
        if pump in self._subscribers:
            self._subscribers.remove(pump)

    def _post(self, make: Callable[[], Message]) -> None:
        for pump in tuple(self._subscribers):
            pump.post_message(make())  # one message per pump: messages carry delivery state

    # -- the live sink ----------------------------------------------------------------------------

    def publish(self, event: Event) -> None:
        self._pending.setdefault(event.run_id, []).append(event)
        self._wake.set()

    async def flush(self) -> None:
        return None

    async def _drain_loop(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.flush_interval)
            self._wake.clear()
            batch, self._pending = self._pending, {}
            for run_id, events in batch.items():
                try:
                    await self._take(run_id, events, own=True)
                except Exception:  # one run's trouble must not stop the live feed of the others
                    log.exception("could not follow run %s", run_id)

    async def _take(self, run_id: str, events: list[Event], *, own: bool) -> None:
        async with self._lock(run_id):
            run = self._runs.get(run_id)
            if run is None and events[0].seq == 1:
                run = self._runs[run_id] = _Run(RunState(run_id), own)
            elif run is None or events[0].seq > run.last_seq + 1:
                # Joined mid-run (e.g. a resume of an older run): the store has the start.
                run, _ = await self._load(run_id, own=own)
            fresh = [event for event in events if event.seq > run.last_seq]
            if not fresh or fresh[0].seq != run.last_seq + 1:
                return
            for event in fresh:
                apply(run.state, event)
            run.recent.extend(fresh)
            note_graces(fresh, run.graces)
            state = run.state
            if state.is_terminal and run_id not in self._watched:
                del self._runs[run_id]  # nobody looks at it: the store has it all
        self._post(lambda: RunEventsArrived(run_id, state, list(fresh), own))

    def _show_lease(self, run_id: str, interrupted: bool) -> None:
        """Show a followed run of another process as `interrupted` while its lease says so
        (and as folded again once an owner writes to it)."""
        run = self._runs.get(run_id)
        if run is None or run.own:
            return
        state = run.state
        if interrupted and not state.is_terminal and state.state is not RunStatus.INTERRUPTED:
            run.masked, state.state = state.state, RunStatus.INTERRUPTED
        elif not interrupted and run.masked is not None:
            masked, run.masked = run.masked, None
            if state.state is not RunStatus.INTERRUPTED:
                return
            state.state = masked
        else:
            return
        self._post(lambda: RunEventsArrived(run_id, state, [], False))

    def _lock(self, run_id: str) -> asyncio.Lock:
        lock = self._locks.get(run_id)
        if lock is None:
            lock = self._locks[run_id] = asyncio.Lock()
        return lock

    async def _load(self, run_id: str, *, own: bool) -> tuple[_Run, list[Event]]:
        """Catch a followed run up from the store (the caller holds the run's lock); returns
        it and the events read.

        A run already followed keeps its one `RunState` object: screens hold on to it."""
        await self.store.flush()
        run = self._runs.get(run_id)
        if run is None:
            run = self._runs[run_id] = _Run(RunState(run_id), own)
        events = await self._read().events(run_id, after_seq=run.last_seq)
        for event in events:
            apply(run.state, event)
        run.recent.extend(events)
        note_graces(events, run.graces)
        return run, events

    async def _history(self, run_id: str, run: _Run) -> list[Event]:
        """Every event of a followed run so far: the kept ones, the older ones from the store
        (the caller holds the run's lock)."""
        recent = list(run.recent)
        if not recent or recent[0].seq == 1:
            return recent
        await self.store.flush()
        older = await self._read().events(run_id, limit=recent[0].seq - 1)
        return older + recent

    def _read(self) -> Store:
        if self._reader is None:
            raise CommandError("the console is still opening its database")
        return self._reader

    # -- following runs ---------------------------------------------------------------------------

    async def watch(
        self, run_id: str, *, history: bool = True
    ) -> tuple[RunState, list[Event]]:
        """Follow a run (live or polled) until `unwatch`; returns its state and events so far
        (none with `history=False`, for a screen that shows only the state).

        The state is the one object later `RunEventsArrived` messages carry, kept up to date."""
        async with self._lock(run_id):
            run = self._runs.get(run_id)
            if run is None:
                run, events = await self._load(run_id, own=self.is_own(run_id))
                if not events:
                    del self._runs[run_id]
                    raise CommandError(f"no run {run_id[:8]}")
                if not run.own:
                    # Judged from its lease at once, not at the next poll: a key on the home
                    # screen (resume, approve) must see an orphaned run as interrupted.
                    row = await self._read().run_row(run_id)
                    self._show_lease(run_id, row is not None and row.shown_state() == "interrupted")
            else:
                events = await self._history(run_id, run) if history else []
            self._watched[run_id] = self._watched.get(run_id, 0) + 1
            return run.state, events if history else []

    def unwatch(self, run_id: str) -> None:
        count = self._watched.get(run_id, 0) - 1
        if count > 0:
            self._watched[run_id] = count
            return
        self._watched.pop(run_id, None)
        run = self._runs.get(run_id)
        if run is not None and (not self.is_own(run_id) or run.state.is_terminal):
            del self._runs[run_id]

    def is_own(self, run_id: str) -> bool:
        return self._manager is not None and self._manager.ran_here(run_id)

    def is_running_here(self, run_id: str) -> bool:
        return self._manager is not None and self._manager.is_running(run_id)

    def active_runs(self) -> list[str]:
        return self._manager.active_runs() if self._manager is not None else []

    def sigkill_in(self, run_ids: list[str]) -> float | None:
        """Seconds until the last SIGKILL due to a node of `run_ids` still in its cleanup grace
        (the deadline the run view counts down to), None if none is in its grace."""
        now = self.clock()
        lefts = [
            grace.left(now)
            for run in (self._runs.get(run_id) for run_id in run_ids)
            if run is not None
            for grace in in_grace(run.state, run.graces)
        ]
        return max(lefts) if lefts else None

    async def run_state(self, run_id: str) -> RunState:
        """The run's state now (without following it)."""
        state, _ = await self.watch(run_id, history=False)
        self.unwatch(run_id)
        return state

    async def scan(self, directory: Path) -> list[PipelineEntry]:
        return await asyncio.to_thread(scan_pipelines, directory)

    async def load_events(self, run_id: str) -> list[Event]:
        """All stored events of a run (for playback)."""
        await self.store.flush()
        return await self._read().events(run_id)

    @property
    def runs(self) -> list[RunSummary]:
        return list(self._listed)

    @property
    def breakers(self) -> dict[str, BreakerView]:
        return dict(self._breakers)

    def summary(self, run_id: str) -> RunSummary | None:
        """The run's line in the runs list (owner, heartbeat), if it is listed."""
        return next((run for run in self._listed if run.run_id == run_id), None)

    def heartbeat_at(self, run_id: str) -> float | None:
        """The last heartbeat of the run's owner, as the runs list has it."""
        listed = self.summary(run_id)
        return listed.heartbeat_at if listed is not None else None

    def _last_seq(self, run_id: str) -> int | None:
        run = self._runs.get(run_id)
        return None if run is None else run.last_seq
