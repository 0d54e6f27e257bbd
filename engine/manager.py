"""RunManager: starts, queues, controls, resumes and replays runs in one process.

Contract:
- `start` creates the run at once (`run.created` is published, so the run id exists and is
  listed) and returns a `RunHandle`; the run executes when one of `max_concurrent_runs` slots is
  free. A run waiting for an approval lends its slot meanwhile (`engine.run_slots`), so runs
  waiting for decisions never keep others queued; a resumed run that has to queue is `pending`.
  Awaiting the handle gives the final `RunState`; the run's `run.completed` is committed to
  every sink (the durable store included) before the handle resolves.
- With a `Store`, every run is durable and controllable from other processes: the manager holds
  a lease on each of its runs (`engine.lease`), renews it by heartbeat, and polls the store
  (every `control_interval`, at most 250 ms) for `cancel`/`approve`/`reject` commands, acting
  within a second. Breaker state is loaded from the store, and every attempt's outcome is
  counted there atomically, so breakers trip across processes and survive restarts.
- Fail-closed: when the store cannot record a run's events any more (its lease was taken over,
  the disk is full, the database stayed locked past the busy timeout, an I/O error), the run is
  stopped at once (no node starts, running nodes are cancelled with their grace) and its handle
  carries the cause (`RunHandle.write_error`); nothing of it is written after the failure.
- The manager holds a run's handle (its executor and live state) only while the run is not
  finished: whoever wants a finished run's state keeps the handle, or folds it from the store.
- `resume` takes over an interrupted run (a compare-and-set on its lease: of racing processes
  exactly one wins, the others get `TakeOverRefusedError` naming the winner and write nothing),
  records the interruption, and continues from its folded events (guards: terminal runs are
  refused, gate-failed runs only with an override and a reason); `replay` starts a new run from
  a stored run's definition snapshot and params, linked to it.
- What is decided about runs of other processes (take-over, the cancel of an interrupted run,
  commands to an owner) lives in `engine.control`; how breakers follow the store, in
  `engine.breaker.StoredBreakers`. The manager wires them to its runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from engine import control
from engine.breaker import BreakerRegistry, StoredBreakers
from engine.errors import (
    InterlockError,
    PipelineTimeoutError,
    ResumeRefusedError,
    RunCancelledError,
    RunFailedError,
)
from engine.events import new_id, utc_now_iso
from engine.executor import Executor
from engine.run_slots import RunSlots
from engine.state import NodeStatus, RunState, RunStatus

# Kept importable from here: the CLI, the console and the tests have always found them here.
cancel_interrupted = control.cancel_interrupted
pipeline_from_state = control.pipeline_from_state
resolve_params = control.resolve_params
take_over = control.take_over

if TYPE_CHECKING:
    import random
    from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence

    from engine.bus import EventSink
    from engine.events import Event
    from engine.spec import Pipeline
    from engine.store import Owner, Store, StoreError


ENDED_RUNS_KEPT = 10_000  # ids of ended runs a manager remembers (`ran_here`)


class RunHandle:
    """A started run: await it for the final state."""

    def __init__(self, executor: Executor, task: asyncio.Task[RunState]) -> None:
        self.executor = executor
        self.run_id = executor.run_id
        self._task = task
        # Set when the store stopped accepting the run's events (fail-closed): the cause. The
        # final state is then only this process's view: the stored log ends before it.
        self.write_error: StoreError | None = None

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
        heartbeat_interval: float | None = None,
        owner: Owner | None = None,
    ) -> None:
        self.store = store
        self._sinks = list(sinks)
        self.max_concurrent_runs = max_concurrent_runs
        self._slots = RunSlots(max_concurrent_runs)
        self.breakers = breakers if breakers is not None else BreakerRegistry()
        self._sleep = sleep
        self._now = now
        self._rng = rng
        self._control_interval = min(control_interval, 0.25)
        if heartbeat_interval is None:
            from engine.lease import heartbeat_seconds

            heartbeat_interval = heartbeat_seconds()
        self._heartbeat_interval = heartbeat_interval
        self._owner = owner
        self._runs: dict[str, RunHandle] = {}  # the runs not finished yet
        # The ids of the latest runs that ended here: a manager that runs for weeks (the
        # console's) keeps no finished run's executor and state, only a bounded list of ids.
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._background: set[asyncio.Task[Any]] = set()
        self._control_task: asyncio.Task[None] | None = None
        self._closed = False
        self._stored_breakers: StoredBreakers | None = None

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
            self.store.write_failure_listeners.append(self._write_failed)
            # Breakers trip across processes: outcomes and trials go through the store.
            self._stored_breakers = StoredBreakers(self.breakers, self.store, self._owner)
            self.breakers.on_outcome = self._stored_breakers.outcome
            await self._stored_breakers.load()
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
        if self.store is not None:
            with contextlib.suppress(ValueError):
                self.store.write_failure_listeners.remove(self._write_failed)

    def _write_failed(self, run_id: str, error: StoreError) -> None:
        """The store writes nothing more of `run_id`: stop the run now (fail-closed)."""
        handle = self._runs.get(run_id)
        if handle is None or handle.done():
            return
        if handle.write_error is None:
            handle.write_error = error
        handle.executor.request_stop(
            RunStatus.CANCELLED, f"the store cannot record the run: {error}", "cancelled"
        )

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
            write_gate=self.store,
            claim_trial=self._stored_breakers.claim_trial if self._stored_breakers else None,
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
        retry_of: str | None = None,
        prepare: Callable[[Executor], None] | None = None,
    ) -> RunHandle:
        """Create a run and schedule it; returns at once with its handle. `prepare` sees the
        executor after `run.created` and before the run is claimed (retry from failure)."""
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
        executor.create(replay_of=replay_of, actor=actor, retry_of=retry_of)
        if prepare is not None:
            prepare(executor)
        return await self._launch(executor)

    async def start_seeded(
        self, pipeline: Pipeline, seed: Sequence[Event], *, search_path: str | None = None
    ) -> RunHandle:
        """A run whose first events are given (`run.created` and the nodes settled before it
        runs: `interlock test --record`, see `engine.single_node`); it goes on from them."""
        from engine.single_node import executor_for

        for sink in self._all_sinks():
            for event in seed:
                sink.publish(event)
        executor = executor_for(
            pipeline, seed, sinks=self._all_sinks(), search_path=search_path,
            breakers=self.breakers,
        )
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
            if self._stored_breakers is not None:
                self._stored_breakers.refresh(breakers.values())
        task = asyncio.create_task(self._execute(executor), name=f"interlock-run:{executor.run_id}")
        handle = RunHandle(executor, task)
        self._runs[executor.run_id] = handle
        self._ensure_control()
        return handle

    async def _execute(self, executor: Executor) -> RunState:
        released = False
        try:
            try:
                if await self._take_slot(executor):
                    executor.waiting_changed = self._slots.waiting_hook(executor.run_id)
                    try:
                        state = await executor.execute()
                    finally:
                        self._slots.release(executor.run_id)
                else:
                    # Stopped while queued: it ends at once (nothing starts), so needs no slot.
                    state = await executor.execute()
            except InterlockError:
                # The store refused the run's end (fail-closed): the run is stopped, and what
                # this process saw is all there is to return; its handle says why.
                failure = self.store.write_failure(executor.run_id) if self.store else None
                if failure is None:
                    raise
                handle = self._runs.get(executor.run_id)
                if handle is not None and handle.write_error is None:
                    handle.write_error = failure
                released = True  # nothing more is written for it from here
                return executor.state
            # Its run.completed is committed, and the same commit let go of the run.
            released = self.store is None or self.store.write_failure(executor.run_id) is None
            if not released and self.store is not None:
                handle = self._runs.get(executor.run_id)
                if handle is not None and handle.write_error is None:
                    handle.write_error = self.store.write_failure(executor.run_id)
                released = True  # nothing more is written for it from here
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
        if not self._slots.free():
            # A resumed run says it is queued, rather than `interrupted` (or the failed state
            # an override reopens) until a slot frees.
            executor.record_queued()
        return await self._slots.take(executor.run_id, executor.wait_stop_requested)

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
        """Continue an interrupted (or, with an override, a gate-failed) run in this process.

        The run's lease is taken with a compare-and-set first; a process that loses the race
        gets `TakeOverRefusedError` naming the winner, having written nothing."""
        store = self._require_store()
        if self.is_running(run_id):
            raise ResumeRefusedError(f"run {run_id} is running in this process")
        assert self._owner is not None
        taken = await control.take_for_resume(
            store, run_id, self._owner, override=override, reason=reason
        )
        state = taken.state
        pipeline = pipeline_from_state(state)
        executor = self._executor(
            pipeline,
            state=state,
            params=state.params,
            simulate=state.simulate,
            search_path=search_path or await control.stored_search_path(store, run_id),
        )
        if taken.interruption is not None:
            executor.record_interrupted(*taken.interruption)
        executor.prepare_resume(actor=actor, override_reason=reason if override else None)
        return await self._launch(executor)

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
            search_path=search_path or await control.stored_search_path(store, run_id),
        )

    async def retry(
        self,
        run_id: str,
        *,
        nodes: Sequence[str] = (),
        actor: str = "engine",
        search_path: str | None = None,
    ) -> RunHandle:
        """Retry from failure: a new run of `run_id`'s definition and params that reuses its
        succeeded outputs and runs the rest (and `nodes` with what is downstream of them)."""
        from engine.retry_from import start_retry

        return await start_retry(
            self, self._require_store(), run_id, nodes=nodes, actor=actor, search_path=search_path
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
                    # A run found taken over is fenced off in the store, which stops it here
                    # (`_write_failed`).
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

    async def reset_breaker(self, key: str) -> bool:
        """Close the breaker and clear its count, here and in the store (it stays listed)."""
        if self._stored_breakers is not None:
            return await self._stored_breakers.reset(key)
        return self.breakers.reset(key)
