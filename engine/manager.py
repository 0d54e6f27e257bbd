"""RunManager: starts, queues, controls, resumes and replays runs in one process.

Contract:
- `start` creates the run at once (`run.created` is published, so the run id exists and is
  listed) and returns a `RunHandle`; the run executes when one of `max_concurrent_runs` slots is
  free. Awaiting the handle gives the final `RunState`; the run's `run.completed` is committed to
  every sink (the durable store included) before the handle resolves.
- With a `Store`, every run is durable and controllable from other processes: the manager claims
  ownership of its runs, heartbeats them, and polls the store (every `control_interval`, at most
  250 ms) for `cancel`/`approve`/`reject` commands, acting within a second. Breaker state is
  loaded from and saved to the store, so it survives restarts.
- The manager holds a run's handle (its executor and live state) only while the run is not
  finished: whoever wants a finished run's state keeps the handle, or folds it from the store.
- `resume` continues an interrupted run from its folded events (guards: terminal runs are
  refused, gate-failed runs only with an override and a reason); `replay` starts a new run from
  a stored run's definition snapshot and params, linked to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from engine.breaker import BreakerChange, BreakerRegistry, CircuitBreaker
from engine.errors import (
    InterlockError,
    PipelineTimeoutError,
    ResumeRefusedError,
    RunCancelledError,
    RunFailedError,
    UnknownRunError,
)
from engine.events import Event, EventType, new_id, utc_now_iso
from engine.executor import Executor
from engine.state import NodeStatus, RunState, RunStatus

if TYPE_CHECKING:
    import random
    from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping, Sequence

    from engine.bus import EventSink
    from engine.spec import Pipeline
    from engine.store import BreakerRecord, Owner, Store


ENDED_RUNS_KEPT = 10_000  # ids of ended runs a manager remembers (`ran_here`)


class RunHandle:
    """A started run: await it for the final state."""

    def __init__(self, executor: Executor, task: asyncio.Task[RunState]) -> None:
        self.executor = executor
        self.run_id = executor.run_id
        self._task = task

    @property
    def state(self) -> RunState:
        """The live state (the fold of the events emitted so far)."""
        return self.executor.state

    @property
    def pipeline(self) -> Pipeline:
        return self.executor.pipeline

    def done(self) -> bool:
        return self._task.done()

    def __await__(self) -> Generator[Any, None, RunState]:
        return asyncio.shield(self._task).__await__()

    async def wait(self, timeout: float | None = None) -> RunState:  # noqa: ASYNC109  (wait_for's API)
        return await asyncio.wait_for(asyncio.shield(self._task), timeout)

    def raise_for_state(self) -> RunState:
        """The final state, or the exception that matches how the run ended."""
        state = self._task.result()
        if state.state is RunStatus.SUCCEEDED:
            return state
        if state.state is RunStatus.TIMEOUT:
            raise PipelineTimeoutError(
                self.pipeline.id, self.pipeline.timeout, state.nodes_in(NodeStatus.SUCCEEDED)
            )
        if state.state is RunStatus.CANCELLED:
            raise RunCancelledError(self.run_id, state.reason)
        failed = state.nodes_in(NodeStatus.FAILED, NodeStatus.TIMED_OUT)
        raise RunFailedError(self.run_id, failed)


class RunManager:
    """Owns the runs of this process. Use as `async with RunManager(...) as manager:`."""

    def __init__(
        self,
        *,
        store: Store | None = None,
        sinks: Sequence[EventSink] = (),
        max_concurrent_runs: int = 4,
        breakers: BreakerRegistry | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        now: Callable[[], str] = utc_now_iso,
        rng: random.Random | None = None,
        control_interval: float = 0.1,
        heartbeat_interval: float = 2.0,
        owner: Owner | None = None,
    ) -> None:
        self.store = store
        self._sinks = list(sinks)
        self.max_concurrent_runs = max_concurrent_runs
        self._slots = asyncio.Semaphore(max_concurrent_runs)
        self.breakers = breakers if breakers is not None else BreakerRegistry()
        self.breakers.on_change = self._breaker_changed
        self._sleep = sleep
        self._now = now
        self._rng = rng
        self._control_interval = min(control_interval, 0.25)
        self._heartbeat_interval = heartbeat_interval
        self._owner = owner
        self._runs: dict[str, RunHandle] = {}  # the runs not finished yet
        # The ids of the latest runs that ended here: a manager that runs for weeks (the
        # console's) keeps no finished run's executor and state, only a bounded list of ids.
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._background: set[asyncio.Task[Any]] = set()
        self._control_task: asyncio.Task[None] | None = None
        self._closed = False

    # -- lifecycle --------------------------------------------------------------------------------

    async def __aenter__(self) -> RunManager:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> RunManager:
        if self.store is not None:
            from engine.store import Owner

            self._owner = self._owner or Owner.current()
            await self._load_breakers()
        return self

    async def close(self, reason: str = "the run manager closed") -> None:
        """Cancel what still runs, wait for it, and stop background work."""
        if self._closed:
            return
        self._closed = True
        await self.cancel_all(reason)
        if self._control_task is not None:
            self._control_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._control_task
            self._control_task = None
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # -- starting ---------------------------------------------------------------------------------

    def _all_sinks(self) -> list[EventSink]:
        sinks: list[EventSink] = []
        if self.store is not None:
            sinks.append(self.store)
        return sinks + self._sinks

    def add_sink(self, sink: EventSink) -> None:
        """Publish every later event to `sink` too (the console's bridge, metrics)."""
        self._sinks.append(sink)

    def _executor(self, pipeline: Pipeline, **kwargs: Any) -> Executor:
        return Executor(
            pipeline,
            sinks=self._all_sinks(),
            breakers=self.breakers,
            sleep=self._sleep,
            now=self._now,
            rng=self._rng,
            **kwargs,
        )

    async def start(
        self,
        pipeline: Pipeline,
        *,
        params: Mapping[str, Any] | None = None,
        simulate: bool = False,
        search_path: str | None = None,
        run_id: str | None = None,
        replay_of: str | None = None,
        actor: str = "engine",
    ) -> RunHandle:
        """Create a run and schedule it; returns at once with its handle."""
        if self._closed:
            raise RuntimeError("the run manager is closed")
        merged = resolve_params(pipeline, params)
        executor = self._executor(
            pipeline,
            run_id=run_id or new_id(),
            params=merged,
            simulate=simulate,
            search_path=search_path,
        )
        executor.create(replay_of=replay_of, actor=actor)
        return await self._launch(executor)

    async def _launch(self, executor: Executor) -> RunHandle:
        if self.store is not None:
            assert self._owner is not None
            # The claim commits together with the run's events published so far (its
            # run.created): one commit before the run starts. If they failed, so did the claim,
            # and flush reports why, as it would have before the claim.
            try:
                breakers = await self.store.claim_run(executor.run_id, self._owner)
            except InterlockError:
                await self.store.flush()
                raise
            self._refresh_breakers(breakers.values())
        task = asyncio.create_task(self._execute(executor), name=f"interlock-run:{executor.run_id}")
        handle = RunHandle(executor, task)
        self._runs[executor.run_id] = handle
        self._ensure_control()
        return handle

    async def _execute(self, executor: Executor) -> RunState:
        released = False
        try:
            if await self._take_slot(executor):
                try:
                    state = await executor.execute()
                finally:
                    self._slots.release()
            else:
                # Stopped while queued: it ends at once (nothing starts), so it needs no slot.
                state = await executor.execute()
            # Its run.completed is committed, and the same commit let go of the run.
            released = True
        except asyncio.CancelledError:
            if not executor.state.is_terminal:
                executor.cancel("the owning process stopped the run")
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(executor.execute())
            raise
        finally:
            await self._after_run(executor, released)
            self._forget(executor)
        return state

    def _forget(self, executor: Executor) -> None:
        handle = self._runs.get(executor.run_id)
        if handle is not None and handle.executor is executor:
            del self._runs[executor.run_id]
        self._ended[executor.run_id] = None
        self._ended.move_to_end(executor.run_id)
        while len(self._ended) > ENDED_RUNS_KEPT:
            self._ended.popitem(last=False)

    async def _take_slot(self, executor: Executor) -> bool:
        """Wait for a run slot; False (holding none) if the run is stopped while it waits."""
        if not self._slots.locked():  # a slot is free: taken at once, nothing to wait for
            await self._slots.acquire()
            return True
        slot = asyncio.ensure_future(self._slots.acquire())
        stopped = asyncio.ensure_future(executor.wait_stop_requested())
        try:
            await asyncio.wait((slot, stopped), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            stopped.cancel()
            if slot.done() and not slot.cancelled():
                self._slots.release()
            slot.cancel()
            raise
        stopped.cancel()
        if slot.done():
            return slot.result()
        # Not acquired yet: cancelled, it never takes the slot (a waiter woken in the meantime
        # hands it on to the next one).
        slot.cancel()
        return False

    async def _after_run(self, executor: Executor, released: bool) -> None:
        if self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
        if self.store is not None and not released:
            with contextlib.suppress(Exception):
                await self.store.release_run(executor.run_id)

    # -- control ----------------------------------------------------------------------------------

    def get(self, run_id: str) -> RunHandle | None:
        """The handle of a run this manager is running (None once it has ended)."""
        return self._runs.get(run_id)

    def ran_here(self, run_id: str) -> bool:
        """Whether this manager runs, or ran, the run (of its last `ENDED_RUNS_KEPT` ended)."""
        return run_id in self._runs or run_id in self._ended

    def active_runs(self) -> list[str]:
        return [run_id for run_id, handle in self._runs.items() if not handle.done()]

    def is_running(self, run_id: str) -> bool:
        handle = self._runs.get(run_id)
        return handle is not None and not handle.done()

    def cancel(self, run_id: str, reason: str | None = None, *, actor: str = "engine") -> bool:
        """Cancel a run of this process; False if it is not running here."""
        handle = self._runs.get(run_id)
        if handle is None or handle.done():
            return False
        handle.executor.cancel(reason, actor)
        return True

    def force(self, run_id: str) -> bool:
        """Kill the nodes of a run of this process whose cancel waits out its grace, now;
        False if it is not running here or nothing stops it."""
        handle = self._runs.get(run_id)
        if handle is None or handle.done() or not handle.executor.stop_requested:
            return False
        handle.executor.force()
        return True

    def stopping(self, run_id: str) -> bool:
        """Whether a run of this process was asked to stop and has not ended yet."""
        handle = self._runs.get(run_id)
        return handle is not None and not handle.done() and handle.executor.stop_requested

    async def cancel_all(self, reason: str = "cancelled") -> list[RunState]:
        handles = [h for h in self._runs.values() if not h.done()]
        for handle in handles:
            handle.executor.cancel(reason)
        results = await asyncio.gather(*(h.wait() for h in handles), return_exceptions=True)
        return [r for r in results if isinstance(r, RunState)]

    def approve(
        self, run_id: str, node_id: str, *, actor: str = "engine", reason: str | None = None
    ) -> bool:
        return self._decide(run_id, node_id, True, actor, reason)

    def reject(
        self, run_id: str, node_id: str, *, actor: str = "engine", reason: str | None = None
    ) -> bool:
        return self._decide(run_id, node_id, False, actor, reason)

    def _decide(
        self, run_id: str, node_id: str, approved: bool, actor: str, reason: str | None
    ) -> bool:
        handle = self._runs.get(run_id)
        if handle is None or handle.done():
            return False
        return handle.executor.decide(node_id, approved, actor=actor, reason=reason)

    # -- durable runs ---------------------------------------------------------------------------

    def _require_store(self) -> Store:
        if self.store is None:
            raise RuntimeError("this needs a RunManager with a store")
        return self.store

    async def resume(
        self,
        run_id: str,
        *,
        override: bool = False,
        reason: str | None = None,
        actor: str = "engine",
        search_path: str | None = None,
    ) -> RunHandle:
        """Continue an interrupted (or, with an override, a gate-failed) run in this process."""
        store = self._require_store()
        if self.is_running(run_id):
            raise ResumeRefusedError(f"run {run_id} is running in this process")
        await reconcile(store, run_id)
        state = await store.fold_run(run_id)
        row = await store.run_row(run_id)
        if row is not None and not state.is_terminal and _owner_alive(row):
            raise ResumeRefusedError(
                f"run {run_id} is owned by a live process (pid {row.owner_pid} on "
                f"{row.owner_host}); cancel it there or wait for it"
            )
        if state.gate_failures and state.state is RunStatus.FAILED:
            if not override:
                raise ResumeRefusedError(
                    f"run {run_id} failed a hard gate ({', '.join(state.gate_failures)}); "
                    "resume it only with --override --reason TEXT"
                )
            if not reason:
                raise ResumeRefusedError("an override needs a reason (--reason TEXT)")
        elif state.is_terminal:
            raise ResumeRefusedError(
                f"run {run_id} is {state.state.value}; terminal runs cannot be resumed "
                "(replay it instead)"
            )
        pipeline = pipeline_from_state(state)
        folded_seq = state.last_seq  # the executor goes on from here, in this very state
        executor = self._executor(
            pipeline,
            state=state,
            params=state.params,
            simulate=state.simulate,
            search_path=search_path or await _stored_search_path(store, run_id),
        )
        executor.prepare_resume(actor=actor, override_reason=reason if override else None)
        try:
            return await self._launch(executor)
        except InterlockError:
            if await store.last_seq(run_id) > folded_seq:
                # Our run.resumed lost the race for its seq: another process wrote first.
                raise ResumeRefusedError(
                    f"run {run_id} changed while it was being resumed here (another process, "
                    "a second resume or a cancel, wrote to it at the same moment); see "
                    f"`interlock status {run_id}`"
                ) from None
            raise

    async def replay(
        self, run_id: str, *, actor: str = "engine", search_path: str | None = None
    ) -> RunHandle:
        """A new run from the stored definition snapshot and params of `run_id`."""
        store = self._require_store()
        state = await store.fold_run(run_id)
        pipeline = pipeline_from_state(state)
        return await self.start(
            pipeline,
            params=state.params,
            simulate=state.simulate,
            replay_of=run_id,
            actor=actor,
            search_path=search_path or await _stored_search_path(store, run_id),
        )

    def _ensure_control(self) -> None:
        if self.store is None or self._control_task is not None:
            return
        self._control_task = asyncio.create_task(self._control_loop(), name="interlock-control")

    async def _control_loop(self) -> None:
        """Act on commands other processes wrote to the store; heartbeat our runs."""
        store = self._require_store()
        assert self._owner is not None
        since_heartbeat = self._heartbeat_interval
        while True:
            await asyncio.sleep(self._control_interval)
            active = self.active_runs()
            if not active:
                continue
            try:
                commands = await store.pending_commands(active)
                for command in commands:
                    result = self._act(command.run_id, command.kind, command.node_id,
                                       command.reason, command.actor)
                    await store.ack_command(command.id, result)
                since_heartbeat += self._control_interval
                if since_heartbeat >= self._heartbeat_interval:
                    since_heartbeat = 0.0
                    await store.heartbeat(active, self._owner)
            except asyncio.CancelledError:
                raise
            except Exception:
                continue

    def _act(
        self, run_id: str, kind: str, node_id: str | None, reason: str | None, actor: str
    ) -> str:
        if kind == "cancel":
            # Requested, not done: the run ends once its nodes have stopped (their grace).
            return "cancel requested" if self.cancel(run_id, reason, actor=actor) else "not running"
        if kind in ("approve", "reject") and node_id is not None:
            decided = self._decide(run_id, node_id, kind == "approve", actor, reason)
            return ("approved" if kind == "approve" else "rejected") if decided else "not waiting"
        return f"unknown command {kind}"

    # -- breakers -------------------------------------------------------------------------------

    def _breaker_changed(self, breaker: CircuitBreaker, change: BreakerChange) -> None:
        if self.store is None:
            return
        from engine.store import BreakerRecord

        record = BreakerRecord(
            key=breaker.key,
            state=change.to_state.value,
            failures=breaker.failures,
            opened_at=breaker.opened_at,
            recovery_timeout=breaker.recovery_timeout,
            updated_at=breaker.changed_at,
        )
        task = asyncio.ensure_future(self.store.save_breaker(record))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _load_breakers(self) -> None:
        store = self._require_store()
        for record in (await store.load_breakers()).values():
            self.breakers.restore(
                record.key,
                record.state,
                record.failures,
                record.opened_at,
                record.recovery_timeout,
                changed_at=record.updated_at,
            )

    def _refresh_breakers(self, records: Iterable[BreakerRecord]) -> None:
        """Take breaker changes other processes stored since we last looked."""
        for record in records:
            local = self.breakers.peek(record.key)
            if local is None or record.updated_at > local.changed_at:
                self.breakers.restore(
                    record.key,
                    record.state,
                    record.failures,
                    record.opened_at,
                    record.recovery_timeout,
                    failure_threshold=local.failure_threshold if local else 5,
                    changed_at=record.updated_at,
                )

    async def reset_breaker(self, key: str) -> bool:
        found = self.breakers.reset(key)
        if self.store is not None:
            found = await reset_stored_breaker(self.store, key) or found
        return found


# ---------------------------------------------------------------------------------------------
# helpers shared by the CLI and the console


async def reset_stored_breaker(store: Store, key: str) -> bool:
    """Close a stored breaker with its failures cleared; False if none is stored. Kept, not
    deleted: `interlock breakers` still lists it (closed, 0), as the console does."""
    from engine.store import BreakerRecord

    record = (await store.load_breakers()).get(key)
    if record is None:
        return False
    await store.save_breaker(
        BreakerRecord(key, "closed", 0, None, record.recovery_timeout, time.time())
    )
    return True


def resolve_params(pipeline: Pipeline, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """The pipeline's param defaults overlaid with `given`; unknown names are an error."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(pipeline.params))
    if unknown:
        known = ", ".join(sorted(pipeline.params)) or "none"
        raise ValueError(f"unknown param {', '.join(unknown)} (this pipeline takes: {known})")
    merged = {name: spec.default for name, spec in pipeline.params.items()}
    merged.update(given)
    return merged


def pipeline_from_state(state: RunState) -> Pipeline:
    """The pipeline a stored run was created from (its definition snapshot)."""
    from engine.loader import load_dict

    if not state.definition:
        raise UnknownRunError(state.run_id)
    return load_dict(state.definition, file=f"<run {state.run_id}>")


async def _stored_search_path(store: Store, run_id: str) -> str | None:
    """The folder the run's `call:` modules and relative paths were found in (its pipeline
    file's), as recorded in `run.created`: a resume or replay from elsewhere still finds them."""
    first = await store.events(run_id, limit=1)
    value = (first[0].data or {}).get("search_path") if first else None
    return value if isinstance(value, str) else None


def _owner_alive(row: Any) -> bool:
    from engine.store import Owner

    if row.owner_pid is None or row.owner_host is None:
        return False
    owner = Owner(row.owner_host, int(row.owner_pid), float(row.owner_started_at or 0.0))
    return owner.is_alive(heartbeat_at=row.heartbeat_at)


async def reconcile(store: Store, run_id: str) -> bool:
    """Mark a non-terminal run whose owner is gone as `interrupted`. Idempotent.

    Returns True if this call wrote the event. Two processes reconciling at once cannot both
    write it: the second insert breaks `UNIQUE(run_id, seq)` and is treated as already done.
    """
    from engine.store import StoreError

    row = await store.run_row(run_id)
    if row is None:
        raise UnknownRunError(run_id)
    if row.state in ("interrupted", *[s.value for s in RunStatus if s.is_terminal]):
        return False
    if _owner_alive(row):
        return False
    last = await store.last_seq(run_id)
    tail = await store.tail_events(run_id, 1)
    attempt = tail[-1].attempt if tail and tail[-1].node_id is None else 1
    event = Event(
        new_id(),
        last + 1,
        EventType.RUN_STATE_CHANGED,
        run_id,
        utc_now_iso(),
        "engine",
        attempt,
        reason="owner process is gone",
        data={"from": row.state, "to": RunStatus.INTERRUPTED.value, "owner_pid": row.owner_pid},
    )
    try:
        await store.append([event])
    except StoreError:
        return False
    return True


async def cancel_interrupted(
    store: Store, run_id: str, reason: str | None, actor: str
) -> RunState:
    """Cancel a run that no live process owns, directly in the store."""
    state = await store.fold_run(run_id)
    executor = Executor(pipeline_from_state(state), state=state, sinks=[store])
    executor.cancel(reason or "cancelled", actor)
    return await executor.execute()
