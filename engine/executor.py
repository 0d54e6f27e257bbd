"""The executor: runs one run of a pipeline, emitting every state change as an event.

Contract (DESIGN section 4): ready nodes run concurrently up to `max_concurrency`; a node starts
when its trigger rule holds, is skipped (with the reason, propagating) when it no longer can;
retries go through tenacity by error class; each attempt is bounded by the node timeout and the
run by its deadline (stated on the injected `now` clock, like every timestamp); cancellation
stops new starts at once and cancels running nodes (a shell node's process group gets SIGTERM,
then SIGKILL after `cleanup_grace`; a node still running after the grace is cancelled again,
every half second, until it gives in). When `execute` returns, for any reason, none of the
run's tasks is left.

Shape: decide purely, act thinly. The scheduler (`engine.scheduler`) decides, from the run's
state and the nodes that just finished, what starts, what is skipped, whether fail_fast stops
the run and whether it is over. The driver (`Executor._drive`) is a short loop that acts on
those decisions and then waits on one wake-up, fed by the node tasks' completions (each node's
task only reports that it ended: `_report`), stop requests, the force timer and the record
catching up; it never polls. A node's attempts (breaker, timeout, retries, its events) are
`engine.attempt`; its work runs through the run's `Runner` (`engine.runner`). The executor's
view of the run is a `RunState` kept with `engine.state.apply` over the events it emits, so the
live state is by construction the fold of the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from engine.attempt import AttemptPath, Plan, Step
from engine.breaker import BreakerRegistry
from engine.deadlines import Deadlines
from engine.events import EventType, new_id, parse_timestamp, utc_now_iso
from engine.run_log import RunLog
from engine.runner import LocalRunner, Runner
from engine.scheduler import Decision, Scheduler, Shape, Stop, decide_node, final_status
from engine.state import NodeStatus, RunState, RunStatus

if TYPE_CHECKING:
    import random

    from engine.breaker import CircuitBreaker
    from engine.bus import EventSink
    from engine.notify import Notifier
    from engine.spec import NodeBase, Pipeline

__all__ = ["RECORD_LAG", "Executor", "WriteGate", "decide_node", "final_status"]

Sleep = Callable[[float], Awaitable[None]]
RECORD_LAG = 1.0  # seconds: see `WriteGate`
FORCE_EVERY = 0.5  # seconds between the cancels of a node that ignores its cancellation
HOLD_FOR = 0.001  # seconds the driver may run nodes itself before the loop gets a turn


class WriteGate(Protocol):
    """The durable store as the executor sees it when deciding to start a node."""

    def lagging(self, threshold: float = RECORD_LAG) -> bool: ...

    async def caught_up(self) -> None: ...


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Executor(RunLog):
    """One run of one pipeline. Create it, `create()` (or resume it), then `await execute()`."""

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        run_id: str | None = None,
        params: Mapping[str, Any] | None = None,
        sinks: Sequence[EventSink] = (),
        breakers: BreakerRegistry | None = None,
        simulate: bool = False,
        search_path: str | None = None,
        sleep: Sleep = asyncio.sleep,
        now: Callable[[], str] = utc_now_iso,
        rng: random.Random | None = None,
        state: RunState | None = None,
        write_gate: WriteGate | None = None,
        claim_trial: Callable[[CircuitBreaker], Awaitable[None]] | None = None,
        runner: Runner | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.run_id = run_id or (state.run_id if state else new_id())
        self.simulate = simulate
        self.search_path = search_path
        self.params = dict(params or {})
        self._sinks = list(sinks)
        self._breakers = breakers if breakers is not None else BreakerRegistry()
        self._sleep = sleep
        self._now = now
        self.state = state if state is not None else RunState(self.run_id)
        self._seq = self.state.last_seq
        self._plan = Plan.of(pipeline)
        self._shape = Shape.of(pipeline)
        self._runner: Runner = runner if runner is not None else LocalRunner()
        # `cleanup_grace`, its one meaning: how long a cancelled node's work gets to stop (the
        # runner's part, `NodeContext.cleanup_grace`). A node still running after it (and a
        # little more, for the runner's own SIGKILL) is cancelled again.
        self._force_after = pipeline.cleanup_grace + FORCE_EVERY
        self._attempts = AttemptPath(self, self._plan, rng)
        self._publishers = tuple(sink.publish for sink in self._sinks)
        # `notify:` targets (none in a simulated run: a rehearsal pages nobody).
        self._notifier: Notifier | None = None
        if pipeline.notify and not simulate:
            from engine.notify import Notifier

            self._notifier = Notifier(pipeline.notify, self._emit_notification, sleep=sleep)
        # The driver's wake-up (made by `execute`): control messages and node completions.
        self._loop: asyncio.AbstractEventLoop  # the loop `execute` runs on
        self._inbox: deque[str] | None = None  # "stop", "force", "recorded"
        self._completions: deque[tuple[str, bool, Exception | None]] = deque()
        self._finished: list[str] = []  # ended and settled: for the scheduler's next step
        self._waiter: asyncio.Future[None] | None = None  # the driver, waiting
        self._scheduler: Scheduler | None = None
        self._deadlines: Deadlines | None = None
        self._run_deadline = math.inf  # loop time
        self._tasks: dict[str, asyncio.Task[None]] = {}  # the running nodes' tasks
        self._watched: set[asyncio.Task[None]] = set()  # cancelled by the driver
        self._driver: asyncio.Task[None] | None = None  # the task `_drive` runs in
        self._context = contextvars.Context()  # the run's context: each node sees a copy
        self._inline: str | None = None  # the node the driver runs itself (see `_drive`)
        self._inline_cancels = 0  # how often a stop cancelled it
        self._inline_force: asyncio.TimerHandle | None = None
        self._may_inline = True  # until a node run inline changed the driver's context
        self._hold_until = 0.0  # loop time: see `_act`
        self._named = False  # the driver carries the name of the node it ran last
        self._approvals: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._stop: Stop | None = None
        self._stop_requested = asyncio.Event()
        self._done = False
        # Work never runs far ahead of the record: while the store has events published over
        # `RECORD_LAG` seconds ago unacknowledged, no node starts; a task waits for the store
        # to catch up, then wakes the driver.
        self._write_gate = write_gate
        self._record_wait: asyncio.Task[None] | None = None
        # A half-open breaker's trial, claimed where other processes see it (the manager's
        # store); raises CircuitOpenError when another process has it.
        self._claim_trial = claim_trial

    # -- control from outside -----------------------------------------------------------------

    def request_stop(
        self, status: RunStatus, reason: str, error_class: str, actor: str = "engine"
    ) -> None:
        """Stop the run: nothing new starts, running nodes are cancelled. First request wins."""
        self._request_stop(Stop(status, reason, error_class, actor))

    def _request_stop(self, stop: Stop) -> None:
        if self._stop is not None or self._done:
            return
        self._stop = stop
        self._stop_requested.set()
        self._post("stop")

    async def wait_stop_requested(self) -> None:
        """Return once a stop was requested (a run waiting for a slot stops waiting)."""
        await self._stop_requested.wait()

    def cancel(self, reason: str | None = None, actor: str = "engine") -> None:
        text = reason or "cancelled"
        self.request_stop(RunStatus.CANCELLED, text, "cancelled", actor)

    @property
    def stop_requested(self) -> bool:
        """Whether a stop (cancel, run deadline, fail-fast) was asked for and the run is still
        winding down: running nodes are in their cleanup grace."""
        return self._stop is not None and not self._done

    def force(self) -> None:
        """After a stop: cancel running nodes again now, skipping what is left of the grace."""
        if self._stop is not None:
            self._post("force")

    @property
    def pending_approvals(self) -> list[str]:
        return list(self._approvals)

    def decide(self, node_id: str, approved: bool, *, actor: str, reason: str | None) -> bool:
        """Approve or reject a waiting approval node; False if it is not waiting."""
        future = self._approvals.get(node_id)
        if future is None or future.done():
            return False
        node = self.state.nodes[node_id]
        event_type = EventType.APPROVAL_GRANTED if approved else EventType.APPROVAL_REJECTED
        self._emit(event_type, node_id=node_id, attempt=node.attempts, actor=actor, reason=reason)
        future.set_result(
            {"decision": "approved" if approved else "rejected", "actor": actor, "reason": reason}
        )
        return True

    # -- running ----------------------------------------------------------------------------------

    async def execute(self) -> RunState:
        """Run until the run is terminal; returns the final state. Leaves no task behind."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._inbox = deque()
        if self._deadlines is None:  # kept if `execute` runs again: attempts may hold entries
            self._deadlines = Deadlines(loop)
        if self._scheduler is None:
            self._scheduler = Scheduler(self._shape, self.state)
        run_deadline: list[Any] | None = None  # its entry in `_deadlines`
        if self._stop is None:
            timeout = self.pipeline.timeout
            self._run_deadline = loop.time() + timeout
            run_deadline = self._deadlines.arm(self._run_deadline, self._deadline_passed)
            # The deadline is on the clock of the event that announces it: a test (or a
            # screenshot) that injects `now` fixes the deadline with it.
            timestamp = self._now()
            self._emit(
                EventType.RUN_STATE_CHANGED,
                data={
                    "from": self.state.state.value,
                    "to": "running",
                    "deadline_at": _iso(parse_timestamp(timestamp) + timeout),
                },
                timestamp=timestamp,
            )
        self._context = contextvars.copy_context()
        if self._driver is None or self._driver.done():
            self._driver = loop.create_task(
                self._drive(), name="interlock:driver", context=self._context.copy()
            )
        try:
            await self._driven()
        except asyncio.CancelledError:
            # The owner is going away (its task was cancelled): stop properly, then tell it so.
            self.cancel("the owning process stopped the run")
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._drain_and_finish())
            raise
        finally:
            if run_deadline is not None:
                self._deadlines.disarm(run_deadline)
        await self._finish()
        return self.state

    async def _driven(self) -> None:
        """Until the driver's task has ended. Only the run cancels its driver (a stop cancels
        the node the driver runs itself): a cancel of the driver that landed as that node was
        ending is no cancel of the caller's."""
        driver = self._driver
        assert driver is not None
        try:
            await asyncio.shield(driver)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not driver.cancelled() or (current is not None and current.cancelling()):
                raise

    async def _drain_and_finish(self) -> None:
        await self._driven()
        await self._finish()

    async def _finish(self) -> None:
        if self._done:
            return
        status, reason, error_class = final_status(self.state, self._shape.optional, self._stop)
        actor = self._stop.actor if self._stop is not None else "engine"
        if self._notifier is not None:
            # Delivered and recorded before run.completed (nothing may follow it), each target
            # within its own `timeout`: that bounds how long the run's end waits for them.
            await self._notifier.finishing(
                self.state, status.value, reason, error_class, self._now()
            )
        self._done = True
        self._emit(
            EventType.RUN_COMPLETED,
            actor=actor,
            reason=reason,
            error_class=error_class,
            data={
                "state": status.value,
                "from": self.state.state.value,
                "completed_nodes": self.state.nodes_in(NodeStatus.SUCCEEDED),
            },
        )
        for sink in self._sinks:
            await sink.flush()

    def _post(self, message: str) -> None:
        """Hand the driver a message (from a callback, a timer or a control call)."""
        inbox = self._inbox
        if inbox is None:  # not executing yet: `execute` looks at `_stop` when it starts
            return
        inbox.append(message)
        self._wake()
        if self._inline is not None and message in ("stop", "force"):
            self._cancel_inline(message)

    def _cancel_inline(self, message: str) -> None:
        """Cancel the node the driver runs itself, as `_cancel_tasks` does a node's task (and
        again every `FORCE_EVERY` once its grace is over)."""
        assert self._driver is not None
        if message == "force" or self._inline_force is None:
            self._inline_cancels += 1
            self._driver.cancel()
            if self._inline_force is not None:
                self._inline_force.cancel()
            delay = FORCE_EVERY if message == "force" else self._force_after
            self._inline_force = self._loop.call_later(delay, self._post, "force")

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _deadline_passed(self) -> None:
        timeout = self.pipeline.timeout
        self.request_stop(RunStatus.TIMEOUT, f"run deadline of {timeout:g}s passed", "timeout")

    async def _drive(self) -> None:
        """The loop: settle what ended, ask the scheduler, act, wait for the next wake-up."""
        inbox, scheduler, completions = self._inbox, self._scheduler, self._completions
        attempts, ended_inline = self._attempts, self._ended_inline
        driver = self._driver
        assert inbox is not None and scheduler is not None and self._deadlines is not None
        assert driver is not None
        loop = self._loop
        force_handle: asyncio.TimerHandle | None = None
        finished = self._finished
        self._hold_until = loop.time() + HOLD_FOR
        try:
            while True:
                while inbox:
                    if inbox.popleft() == "force" and force_handle is not None:
                        self._cancel_tasks()
                        force_handle = loop.call_later(FORCE_EVERY, self._post, "force")
                while completions:
                    node_id, cancelled, error = completions.popleft()
                    if cancelled or error is not None:  # else its attempts recorded its end
                        self._settle(node_id, cancelled, error)
                    finished.append(node_id)
                stop = scheduler.finished(self.state, finished)
                finished.clear()
                if stop is not None:
                    self._request_stop(stop)
                stopping = self._stop is not None
                may_start = stopping or self._write_gate is None or self._record_kept_up()
                decision = scheduler.decide(self.state, stopping=stopping, may_start=may_start)
                inline = self._act(decision)
                if inline is not None:
                    while inline is not None:  # the driver runs it itself (see `_act`)
                        self._enter_inline(inline, driver)
                        pending = True  # a stop's cancel of the driver has not landed yet
                        try:
                            await attempts.run(inline, ended_inline, driver)
                        except asyncio.CancelledError:
                            if not self._inline_cancels:  # not the run's own stop
                                raise
                            pending = False
                        finally:
                            stopped = self._leave_inline(driver)
                        if stopped and pending:
                            # No await of the node took the stop's cancel (3.11's `uncancel`
                            # leaves it pending): taken here, not where it would end the driver.
                            with contextlib.suppress(asyncio.CancelledError):
                                await asyncio.sleep(0)
                        if loop.time() >= self._hold_until:  # the loop's turn: see `_act`
                            await asyncio.sleep(0)
                            self._hold_until = loop.time() + HOLD_FOR
                        inline = self._chain_on(scheduler)
                    continue
                if stopping:
                    if self._record_wait is not None:
                        self._record_wait.cancel()
                        self._record_wait = None
                    if self._tasks and force_handle is None:
                        self._cancel_tasks()
                        # A node that ignores its cancellation is cancelled again after the
                        # grace, until it gives in.
                        force_handle = loop.call_later(self._force_after, self._post, "force")
                if decision.over and not self._tasks and self._record_wait is None:
                    break
                if inbox or completions:
                    continue
                if self._named:  # the name of the last node the driver ran itself
                    self._named = False
                    driver.set_name("interlock:driver")
                self._waiter = loop.create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
                self._hold_until = loop.time() + HOLD_FOR
        finally:
            if force_handle is not None:
                force_handle.cancel()
        self._deadlines.close()  # no attempt is left
        if self._stop is not None:
            for node in self.state.nodes.values():
                if not node.is_terminal:
                    self._emit(
                        EventType.NODE_CANCELLED,
                        node_id=node.node_id,
                        attempt=node.attempts,
                        actor=self._stop.actor,
                        error_class="cancelled",
                        reason=self._stop.reason,
                    )

    def _act(self, decision: Decision) -> Step | None:
        """Emit the decided skips, start the decided nodes, each in a task of its own; or,
        for the one node a chain starts, return it for the driver to run itself.

        A chain of short nodes would otherwise cost a task and two loop turns per node, the
        largest part of such a node's cost (benchmarks/NOTES.md, "## Executor"). The driver
        runs a node itself only when that is the same to the node: it is the only node to
        start, nothing else runs, and the driver's context is still the run's (a node that
        changed it ran in it). Once it has held the loop for `HOLD_FOR` seconds, the driver
        gives the loop a turn (`asyncio.sleep(0)`) before it goes on."""
        nodes = self.state.nodes
        for node_id, reason in decision.skip:
            self._emit(
                EventType.NODE_SKIPPED, node_id=node_id, attempt=nodes[node_id].attempts,
                reason=reason,
            )
        start, steps = decision.start, self._plan.steps
        if (
            len(start) == 1
            and not self._tasks
            and self._may_inline
        ):
            return steps[start[0]]
        context = self._context
        for node_id in start:
            step = steps[node_id]
            # The task's coroutine finds the task in `_tasks` and reports its end (`_report`).
            self._tasks[node_id] = self._loop.create_task(
                self._attempts.run(step, self._report),
                name=step.task_name,
                context=context.copy(),
            )
        return None

    def _enter_inline(self, step: Step, driver: asyncio.Task[None]) -> None:
        """The driver is to run a node's attempts itself (in `_drive`), under the node's task
        name; the node's end is reported as from a task of its own (`_report`)."""
        self._inline = step.node_id
        driver.set_name(step.task_name)  # set back when the driver next waits
        self._named = True

    def _leave_inline(self, driver: asyncio.Task[None]) -> bool:
        """The node the driver ran has ended: take back the cancels a stop made of it (and
        say whether there were any)."""
        self._inline = None
        if self._inline_force is not None:
            self._inline_force.cancel()
            self._inline_force = None
        cancels, self._inline_cancels = self._inline_cancels, 0
        for _ in range(cancels):
            driver.uncancel()
        if contextvars.copy_context() != self._context:
            self._may_inline = False
        return cancels > 0

    def _ended_inline(self, node_id: str, cancelled: bool, error: Exception | None) -> None:
        if cancelled or error is not None:
            self._completions.append((node_id, cancelled, error))
        else:  # its attempts recorded its end: nothing to settle
            self._finished.append(node_id)

    def _chain_on(self, scheduler: Scheduler) -> Step | None:
        """The next node the driver runs itself, if the one it ran succeeded and lets exactly
        its one child start (`Scheduler.next_in_chain`) while nothing else happened; else None
        and the loop's full step decides. A chain's node then costs one scheduler call, not a
        step and a `Decision` (benchmarks/NOTES.md, "## Chain speed after the rebuild")."""
        finished = self._finished
        gate = self._write_gate
        if len(finished) != 1 or self._inbox or self._completions or self._stop is not None:
            return None
        if not self._may_inline or (gate is not None and gate.lagging()):
            return None
        child = scheduler.next_in_chain(self.state, finished[0])
        if child is None:
            return None
        finished.clear()
        return self._plan.steps[child]

    def _record_kept_up(self) -> bool:
        """False (and the record is waited for) while the store lags and nodes wait to start."""
        gate = self._write_gate
        assert self._scheduler is not None
        if gate is None or not self._scheduler.has_ready or not gate.lagging():
            return True
        if self._record_wait is None:

            async def wait() -> None:
                try:
                    await gate.caught_up()
                finally:
                    self._record_wait = None
                self._post("recorded")

            self._record_wait = self._loop.create_task(wait(), name="interlock:record-wait")
        return False

    def _report(self, node_id: str, cancelled: bool, error: Exception | None) -> None:
        if self._tasks.pop(node_id, None) is not None:
            self._completions.append((node_id, cancelled, error))
            self._wake()

    def _cancel_tasks(self) -> None:
        for task in self._tasks.values():
            task.cancel()
            if task not in self._watched:
                # A task cancelled before its first step never runs its coroutine, so it cannot
                # report its own end: its done callback does.
                self._watched.add(task)
                task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._watched.discard(task)
        node_id = task.get_name().removeprefix("interlock:")
        if self._tasks.get(node_id) is task:  # ended without running: cancelled at once
            self._report(node_id, True, None)

    def _settle(self, node_id: str, cancelled: bool, error: Exception | None) -> None:
        """A node's task was cancelled, or ended with a fault: record it, if its attempts did
        not."""
        node = self.state.nodes[node_id]
        if node.is_terminal:
            return
        stop = self._stop
        if cancelled:
            self._emit(
                EventType.NODE_CANCELLED,
                node_id=node_id,
                attempt=node.attempts,
                actor=stop.actor if stop else "engine",
                error_class="cancelled",
                reason=stop.reason if stop else "cancelled",
            )
        elif error is not None:
            self._emit(
                EventType.NODE_FAILED,
                node_id=node_id,
                attempt=node.attempts,
                error_class="error",
                reason=f"internal error: {type(error).__name__}: {error}",
            )

    # -- what an attempt reports ------------------------------------------------------------

    def _emit_artifact(self, node_id: str, attempt: int, data: dict[str, Any]) -> None:
        if self._done:  # nothing follows run.completed
            return
        self._emit(EventType.ARTIFACT_EMITTED, node_id=node_id, attempt=attempt, data=data)

    def _log(
        self, node_id: str, attempt: int, stream: str, line: str,
        extra: dict[str, Any] | None = None,
    ) -> None:
        if self._done:  # nothing follows run.completed
            return
        data = {"stream": stream, "line": line}
        if extra:
            data.update(extra)
        self._emit(EventType.NODE_LOG, node_id=node_id, attempt=attempt, data=data)

    async def _wait_for_decision(self, spec: NodeBase, attempt: int) -> dict[str, Any]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._approvals[spec.id] = future
        message = getattr(spec, "message", None)
        self._emit(
            EventType.APPROVAL_REQUESTED,
            node_id=spec.id,
            attempt=attempt,
            data={"message": message} if message else None,
        )
        self._sync_waiting()
        try:
            return await future
        finally:
            self._approvals.pop(spec.id, None)
            self._sync_waiting()

    def _sync_waiting(self) -> None:
        if self._stop is not None or self._done:
            return
        current = self.state.state
        if self._approvals and current is RunStatus.RUNNING:
            self._emit(EventType.RUN_STATE_CHANGED, data={"from": "running", "to": "waiting"})
            self.waiting_changed(True)
            if self._notifier is not None:
                self._notifier.waiting(self.state, self._now())
        elif not self._approvals and current is RunStatus.WAITING:
            self._emit(EventType.RUN_STATE_CHANGED, data={"from": "waiting", "to": "running"})
            self.waiting_changed(False)
