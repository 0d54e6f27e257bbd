"""The bridge: the one place where the console talks to the engine and the store.

Contract: the console's screens and widgets never touch the store or the run manager; they call
the bridge's commands and receive its messages (`tui.messages`).

- It hosts one `RunManager` (with a `Store` on the database) in the app's event loop and is a
  sink on it, so this process's runs arrive live, event by event.
- It polls the store read-only every `poll_interval` for what other processes do: the runs list,
  the events of the runs on screen (`events(after_seq=last)`), the breakers.
- Events are batched and posted at most every `flush_interval` (10 times a second), and queued
  messages coalesce (`Message.can_replace`), so a burst of events never floods the UI.
- Commands act through the manager for runs of this process and through store commands for runs
  owned by other live processes; a run no live process owns is reconciled (`interrupted`) and
  cancelled in the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.state import RunState, RunStatus, apply, fold
from tui import runs as run_views
from tui.messages import BreakersChanged, RunEventsArrived, RunsListed
from tui.view import BreakerView

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from textual.message import Message
    from textual.message_pump import MessagePump

    from engine.events import Event
    from engine.manager import RunManager
    from engine.metrics import Metrics
    from engine.spec import Pipeline
    from engine.store import Store
    from tui.messages import RunSummary


class CommandError(Exception):
    """A command the engine refused; the text is shown to the operator as is."""


def operator_actor() -> str:
    """`operator:<login name>`: who decided, recorded in the events."""
    try:
        name = getpass.getuser()
    except Exception:  # a login name is a nicety; no passwd entry must not break approvals
        name = "unknown"
    return f"operator:{name}"


@dataclass
class _Run:
    """A run the bridge follows: its fold and its events (all of them, from seq 1)."""

    state: RunState
    events: list[Event]
    own: bool

    @property
    def last_seq(self) -> int:
        return self.state.last_seq


class Bridge:
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
        self._breakers: dict[str, BreakerView] = {}
        self._reconciled: dict[str, float] = {}
        self._closed = False

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
            self._metrics.serve(self.metrics_port)
            manager.add_sink(self._metrics)
        self._manager = manager
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._drain_loop(), name="interlock-bridge-drain"),
            loop.create_task(self._poll_loop(), name="interlock-bridge-poll"),
        ]

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
            pump.post_message(RunsListed(list(self._listed)))
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
                await self._take(run_id, events, own=True)

    async def _take(self, run_id: str, events: list[Event], *, own: bool) -> None:
        run = self._runs.get(run_id)
        if run is None or events[0].seq > run.last_seq + 1:
            if events[0].seq == 1:
                run = self._runs[run_id] = _Run(RunState(run_id), [], own)
            else:
                # Joined mid-run (a resume of an older run): the store has the start of it.
                await self.store.flush()
                run = await self._load(run_id, own=own)
        fresh = [event for event in events if event.seq > run.last_seq]
        if not fresh:
            return
        for event in fresh:
            apply(run.state, event)
        run.events.extend(fresh)
        state = run.state
        self._post(lambda: RunEventsArrived(run_id, state, list(fresh), own))

    async def _load(self, run_id: str, *, own: bool) -> _Run:
        events = await self._read().events(run_id)
        run = self._runs[run_id] = _Run(fold(events, run_id), list(events), own)
        return run

    def _read(self) -> Store:
        if self._reader is None:
            raise CommandError("the console is still opening its database")
        return self._reader

    # -- following runs ---------------------------------------------------------------------------

    async def watch(self, run_id: str) -> tuple[RunState, list[Event]]:
        """Follow a run (live or polled) until `unwatch`; returns its state and events so far."""
        self._watched[run_id] = self._watched.get(run_id, 0) + 1
        run = self._runs.get(run_id)
        if run is None:
            await self.store.flush()
            run = await self._load(run_id, own=self.is_own(run_id))
        return run.state, list(run.events)

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
        return self._manager is not None and self._manager.get(run_id) is not None

    def is_running_here(self, run_id: str) -> bool:
        return self._manager is not None and self._manager.is_running(run_id)

    def active_runs(self) -> list[str]:
        return self._manager.active_runs() if self._manager is not None else []

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

    # -- polling ----------------------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # a busy or locked database: try next time
                await self.poll()
            await asyncio.sleep(self.poll_interval)

    async def poll(self) -> None:
        """One look at the store: runs, followed runs' new events, breakers."""
        reader = self._read()
        rows = await reader.list_runs(limit=500)
        listed = [run_views.summary(row, own=self.is_own(row.run_id)) for row in rows]
        await self._reconcile_orphans(listed)
        if listed != self._listed:
            self._listed = listed
            self._post(lambda: RunsListed(list(listed)))
        for run_id in list(self._watched):
            run = self._runs.get(run_id)
            if run is None or self.is_running_here(run_id):
                continue
            events = await reader.events(run_id, after_seq=run.last_seq)
            if events:
                await self._take(run_id, events, own=False)
        breakers = run_views.merge_breakers(
            await reader.load_breakers(), self.manager.breakers.snapshots()
        )
        if breakers != self._breakers:
            self._breakers = breakers
            self._post(lambda: BreakersChanged(dict(breakers)))

    async def _reconcile_orphans(self, listed: list[RunSummary]) -> None:
        """Runs left non-terminal by a process that is gone are marked `interrupted`."""
        from engine.manager import reconcile

        now = self.clock()
        for row in listed:
            if row.own or row.state in run_views.SETTLED:
                continue
            if now - self._reconciled.get(row.run_id, 0.0) < 3.0:
                continue
            self._reconciled[row.run_id] = now
            await reconcile(self.store, row.run_id)

    # -- commands ---------------------------------------------------------------------------------

    async def launch(
        self, pipeline: Pipeline, params: Mapping[str, Any], *, simulate: bool = False
    ) -> str:
        from engine.manager import resolve_params

        try:
            merged = resolve_params(pipeline, params)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        handle = await self.manager.start(
            pipeline, params=merged, simulate=simulate, search_path=self.search_path,
            actor=self.actor,
        )
        return handle.run_id

    async def cancel(self, run_id: str, reason: str | None = None) -> str:
        reason = reason or f"cancelled by {self.actor}"
        if self.manager.cancel(run_id, reason, actor=self.actor):
            return "cancelling"
        return await self._remote(run_id, "cancel", None, reason)

    async def approve(self, run_id: str, node_id: str) -> str:
        if self.manager.approve(run_id, node_id, actor=self.actor):
            return f"approved {node_id}"
        return await self._remote(run_id, "approve", node_id, None)

    async def reject(self, run_id: str, node_id: str, reason: str | None) -> str:
        if self.manager.reject(run_id, node_id, actor=self.actor, reason=reason):
            return f"rejected {node_id}"
        return await self._remote(run_id, "reject", node_id, reason)

    async def _remote(self, run_id: str, kind: str, node_id: str | None, reason: str | None) -> str:
        """A command for a run this process does not run: its owner acts on it, or, if no
        live process owns it, a cancel is applied in the store."""
        from engine.manager import cancel_interrupted, reconcile

        if self.is_own(run_id):
            raise CommandError(f"run {run_id[:8]} is not running any more")
        row = await self.store.run_row(run_id)
        if row is None:
            raise CommandError(f"no run {run_id[:8]}")
        if row.state in run_views.TERMINAL:
            raise CommandError(f"run {run_id[:8]} already ended ({row.state})")
        await reconcile(self.store, run_id)
        row = await self.store.run_row(run_id)
        if row is not None and row.state == RunStatus.INTERRUPTED:
            if kind != "cancel":
                raise CommandError(
                    f"run {run_id[:8]} is interrupted (no live process owns it): resume it first"
                )
            await cancel_interrupted(self.store, run_id, reason, self.actor)
            return "cancelled (no live process owned it)"
        await self.store.post_command(run_id, kind, node_id=node_id, reason=reason, actor=self.actor)
        owner = f"pid {row.owner_pid}" if row is not None and row.owner_pid else "its owner"
        return f"asked {owner} to {kind}"

    async def resume(self, run_id: str, *, override: bool = False, reason: str | None = None) -> str:
        from engine.errors import InterlockError

        try:
            handle = await self.manager.resume(
                run_id, override=override, reason=reason, actor=self.actor,
                search_path=self.search_path,
            )
        except (InterlockError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        return handle.run_id

    async def replay(self, run_id: str) -> str:
        from engine.errors import InterlockError

        try:
            handle = await self.manager.replay(run_id, actor=self.actor, search_path=self.search_path)
        except (InterlockError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        return handle.run_id

    async def reset_breaker(self, key: str) -> bool:
        found = await self.manager.reset_breaker(key)
        self._breakers.pop(key, None)
        with contextlib.suppress(Exception):
            await self.poll()
        return found
