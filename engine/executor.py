"""The executor: runs one run of a pipeline, emitting every state change as an event.

Contract (DESIGN section 4): ready nodes run concurrently up to `max_concurrency`; a node starts
when its trigger rule holds, is skipped (with the reason, propagating) when it no longer can;
retries go through tenacity by error class; each attempt is bounded by the node timeout and the
run by its deadline (stated on the injected `now` clock, like every timestamp); cancellation
stops new starts at once and cancels running nodes (a shell node's process group gets SIGTERM,
then SIGKILL after `cleanup_grace`). When `execute` returns, for any reason, none of the run's
tasks is left.

Shape: deciding is pure, acting is thin. `decide_node` says, for a node whose parents are all
terminal, whether it starts or is skipped and why. A node's task acts on its own completion as
it ends (it settles the node and starts what that lets start, running the first of them itself
when it may: `_run_node`), so a chain of quick nodes costs the loop a turn per millisecond, not
per node; the driver (`Executor._drive`) is a short loop that starts the run and
then waits on one inbox, fed by stop requests, the force timer, errors and "no node left"; it
never polls. The executor's view of the run is a `RunState` kept with `engine.state.apply` over
the events it emits, so the live state is by construction the fold of the log.

The per-node path is kept lean (issue 6): what a node's run needs from the pipeline is worked
out once per pipeline (`_Step`), events are built without the frozen dataclass's `__init__`,
and the attempts' timeouts share one loop timer (`_Deadlines`) instead of an `asyncio.timeout`
each, with the same semantics.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import heapq
import math
import random
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from engine.breaker import (
    BreakerChange,
    BreakerRegistry,
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
)
from engine.errors import NodeError, NodeTimeoutError, TransientError
from engine.events import (
    EncodedData,
    Event,
    EventType,
    compact_json,
    json_hash,
    new_event,
    new_event_id,
    new_id,
    parse_timestamp,
    stable_hash,
    utc_now_iso,
)
from engine.nodes import (
    BUILTIN_HANDLERS,
    Handler,
    NodeContext,
    handler_for,
    secret_forms,
    secret_names,
)
from engine.retry import make_retrying
from engine.state import NodeState, NodeStatus, RunState, RunStatus, apply

if TYPE_CHECKING:
    from tenacity import RetryCallState

    from engine.bus import EventSink
    from engine.notify import Notifier
    from engine.spec import NodeBase, Pipeline, RetryPolicy

Sleep = Callable[[float], Awaitable[None]]
RECORD_LAG = 1.0  # seconds: see `WriteGate`


class WriteGate(Protocol):
    """The durable store as the executor sees it when deciding to start a node."""

    def lagging(self, threshold: float = RECORD_LAG) -> bool: ...

    async def caught_up(self) -> None: ...

_FAILED = (NodeStatus.FAILED, NodeStatus.TIMED_OUT, NodeStatus.CANCELLED)
# Bound once: reading an enum member off its class costs several times a global (per node).
_SUCCEEDED = NodeStatus.SUCCEEDED
_HALF_OPEN = BreakerState.HALF_OPEN
_FAILED_OR_TIMED_OUT = (NodeStatus.FAILED, NodeStatus.TIMED_OUT)
_TERMINAL = frozenset(status for status in NodeStatus if status.is_terminal)
_UNFINISHED = (NodeStatus.PENDING, NodeStatus.RUNNING, NodeStatus.RETRYING, NodeStatus.WAITING)
_NO_BREAKER_TYPES = frozenset({"condition", "delay", "approval", "trigger", "parallel"})
_EMPTY_HASH = stable_hash({})


# ---------------------------------------------------------------------------------------------
# pure decisions


def decide_node(
    node: NodeBase,
    parents: Sequence[str],
    state: RunState,
    optional: Mapping[str, bool],
    conditions: frozenset[str],
) -> str | None:
    """For a node whose parents are all terminal: None to start it, else why it is skipped."""
    succeeded = failed = skipped = 0
    branch_not_taken = False
    for parent_id in parents:
        parent = state.nodes[parent_id]
        status = parent.state
        if status is NodeStatus.SUCCEEDED:
            if parent_id in conditions:
                wanted = node.when.get(parent_id, True) if node.when else True
                output = parent.output if isinstance(parent.output, Mapping) else {}
                if bool(output.get("result")) is not wanted:
                    skipped += 1
                    branch_not_taken = True
                    continue
            succeeded += 1
        elif status in _FAILED:
            if optional.get(parent_id, False) and status is not NodeStatus.CANCELLED:
                succeeded += 1  # an optional node's failure is recorded; dependents go on
            else:
                failed += 1
        else:
            skipped += 1
    rule = node.trigger
    if rule == "all_done":
        return None
    if rule == "one_failed":
        return None if failed else "no_upstream_failed"
    if failed:
        return "upstream_failed"
    if rule == "none_failed":
        if parents and not succeeded:
            return "branch_not_taken" if branch_not_taken else "upstream_skipped"
        return None
    if skipped:  # all_success
        return "branch_not_taken" if branch_not_taken else "upstream_skipped"
    return None


def final_status(
    state: RunState, optional: Mapping[str, bool], stop: _Stop | None
) -> tuple[RunStatus, str | None, str | None]:
    """The run's terminal state, its reason and error class, from the node states."""
    if stop is not None and stop.status is not RunStatus.FAILED:
        return stop.status, stop.reason, stop.error_class
    if state.gate_failures:
        gates = ", ".join(state.gate_failures)
        return RunStatus.FAILED, f"gate failed: {gates}", "gate"
    failed = [
        n.node_id
        for n in state.nodes.values()
        if n.state in _FAILED and not optional.get(n.node_id, False)
    ]
    if stop is not None:
        return RunStatus.FAILED, stop.reason, stop.error_class
    if failed:
        return RunStatus.FAILED, f"failed nodes: {', '.join(failed)}", None
    return RunStatus.SUCCEEDED, None, None


# ---------------------------------------------------------------------------------------------
# the driver


@dataclass(frozen=True, slots=True)
class _Step:
    """What running one node needs to know about it, read off the pipeline once."""

    spec: NodeBase
    node_id: str
    kind: str
    parents: tuple[str, ...]
    timeout: float
    retry: RetryPolicy
    # (key, failure_threshold, recovery_timeout), or None for a node without a breaker.
    breaker: tuple[str, int, float] | None
    holds_slot: bool  # an approval waits without taking a concurrency slot
    sees_all_outputs: bool  # conditions and actions read any succeeded node's output
    does_work: bool  # simulate mode replaces the work
    hard_gate: bool
    task_name: str
    handler: Handler | None  # a built-in type's handler (a plugin's is looked up per attempt)
    # Trigger `all_success` and no parent is a condition or optional: `decide_node` starts it
    # exactly when every parent succeeded.
    plain: bool
    max_attempts: int  # the retry policy's
    started: EncodedData  # `node.started` data (shared by every attempt: event data is read-only)
    started_simulated: EncodedData  # the same in simulate mode


@dataclass(frozen=True, slots=True)
class _Plan:
    """What the executor derives from a pipeline alone, worked out once per pipeline object
    rather than once per run (pipelines are frozen models, so it cannot go stale)."""

    specs: dict[str, NodeBase]
    parents: dict[str, tuple[str, ...]]
    children: dict[str, list[str]]
    optional: dict[str, bool]
    conditions: frozenset[str]
    retry: dict[str, RetryPolicy]
    # (key, failure_threshold, recovery_timeout), or None for a node without a breaker.
    breakers: dict[str, tuple[str, int, float] | None]
    steps: dict[str, _Step]
    secret_names: tuple[str, ...]  # the environment variables the pipeline reads as secrets
    # `run.created`'s definition snapshot, shared by the pipeline's runs: event data is
    # read-only, and dumping a 1,000-node pipeline costs more than running one of its nodes.
    snapshot: dict[str, Any]
    snapshot_json: str  # its compact JSON, which the store would otherwise encode for each run

    @classmethod
    def of(cls, pipeline: Pipeline) -> _Plan:
        nodes = pipeline.nodes
        parents = {node.id: pipeline.needs_of(node) for node in nodes}
        children: dict[str, list[str]] = {node.id: [] for node in nodes}
        for node_id, needs in parents.items():
            for parent in needs:
                children[parent].append(node_id)
        breakers: dict[str, tuple[str, int, float] | None] = {}
        for node in nodes:
            if node.type in _NO_BREAKER_TYPES or node.gate == "hard":
                breakers[node.id] = None
            else:
                policy = pipeline.breaker_for(node)
                assert policy.key is not None
                breakers[node.id] = (policy.key, policy.failure_threshold, policy.recovery_timeout)
        retry = {n.id: pipeline.retry_for(n) for n in nodes}
        timeouts = {n.id: pipeline.timeout_for(n) for n in nodes}
        conditions = frozenset(n.id for n in nodes if n.type == "condition")
        optional = {node.id: node.optional for node in nodes}
        steps = {
            node.id: _Step(
                spec=node,
                node_id=node.id,
                kind=node.type,
                parents=parents[node.id],
                timeout=timeouts[node.id],
                retry=retry[node.id],
                breaker=breakers[node.id],
                holds_slot=node.type != "approval",
                sees_all_outputs=node.type in ("condition", "action"),
                does_work=node.does_work,
                hard_gate=node.gate == "hard",
                task_name=f"interlock:{node.id}",
                handler=BUILTIN_HANDLERS.get(node.type),
                max_attempts=retry[node.id].max_attempts,
                plain=node.trigger == "all_success"
                and not any(p in conditions or optional[p] for p in parents[node.id]),
                started=EncodedData.encode({"timeout": timeouts[node.id]}),
                started_simulated=EncodedData.encode(
                    {"timeout": timeouts[node.id], "simulated": True}
                ),
            )
            for node in nodes
        }
        snapshot = pipeline.snapshot()
        return cls(
            specs={node.id: node for node in nodes},
            parents=parents,
            children=children,
            optional=optional,
            conditions=conditions,
            retry=retry,
            breakers=breakers,
            steps=steps,
            secret_names=secret_names(pipeline),
            snapshot=snapshot,
            snapshot_json=EncodedData.encode(snapshot).json,
        )


_PLANS: OrderedDict[int, tuple[Pipeline, _Plan]] = OrderedDict()
_PLANS_KEPT = 64


def _plan_for(pipeline: Pipeline) -> _Plan:
    # Keyed by identity, holding the pipeline so that its id cannot be reused meanwhile.
    key = id(pipeline)
    hit = _PLANS.get(key)
    if hit is not None and hit[0] is pipeline:
        _PLANS.move_to_end(key)
        return hit[1]
    plan = _PLANS[key] = (pipeline, _Plan.of(pipeline))
    while len(_PLANS) > _PLANS_KEPT:
        _PLANS.popitem(last=False)
    return plan[1]


@dataclass(frozen=True)
class _Stop:
    status: RunStatus  # the run's final state: cancelled, timeout or failed (fail_fast)
    reason: str
    error_class: str
    actor: str = "engine"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# A deadline counts as reached this close to it, as the loop's own timers do.
_CLOCK_RESOLUTION = time.get_clock_info("monotonic").resolution
_FIRED: Any = object()  # an entry's task slot once its deadline cancelled the task
_NOT_FIRED = 1 << 62  # `Executor._disarm` when the deadline cancelled nothing
_HAND_ON_FOR = 0.001  # seconds a node task may go on running the nodes that follow it
# Retry jitter's generator when none is given: one per process, not one per run (seeding a
# `random.Random` from the OS costs 10 us, a tenth of a one-node run).
_JITTER = random.Random()
# A deadline further off than twice this is first woken up for this long before it: see
# `_Deadlines.arm`.
_PREWAKE = 0.02


class _Deadlines:
    """The attempts' timeouts of one run, and the run's own deadline, on one loop timer.

    `asyncio.timeout` costs a context manager and a timer handle per attempt, the handle
    cancelled again (and left in the loop's heap) when nearly every attempt ends in time. Here
    an attempt's deadline is an entry in a heap, and one `call_at` waits for the earliest. The
    semantics are `asyncio.timeout`'s: a deadline reached cancels the attempt's task, and the
    attempt (see `Executor._attempt`) turns that cancellation, and only that one, into a
    timeout, with the same `uncancel` bookkeeping.

    An entry is `[deadline, order, target]`, the target an attempt's task (cancelled when the
    deadline is reached) or, for the run's deadline, a function (called); `disarm` clears the
    target, and cleared entries leave the heap when they reach its top (or when they are more
    than half of it).

    The timer for a deadline more than `2 * _PREWAKE` away first goes off `_PREWAKE` early,
    finds nothing due and is set again for the deadline itself. A process whose loop has slept
    for seconds wakes up late: on our 2-core VM, 200 shell nodes timing out 3 s after they
    started were killed up to 8 ms past their deadlines, and under 3 ms once the loop had been
    awake 20 ms before (a laptop's deep idle states do the same). The early turn costs a timer
    callback per deadline cycle, nothing per attempt.
    """

    __slots__ = ("_at", "_count", "_handle", "_heap", "_loop", "_stale")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[list[Any]] = []
        self._handle: asyncio.TimerHandle | None = None
        self._at = math.inf  # the deadline the timer is set for
        self._count = 0
        self._stale = 0

    def arm(self, deadline: float, target: asyncio.Task[Any] | Callable[[], None]) -> list[Any]:
        """Cancel `target` (a task), or call it, at `deadline` (loop time) unless disarmed
        before."""
        self._count += 1
        entry = [deadline, self._count, target]
        heapq.heappush(self._heap, entry)
        if deadline < self._at:
            self._set_timer(deadline)
        return entry

    def _set_timer(self, deadline: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._at = deadline
        at = deadline - _PREWAKE if deadline - self._loop.time() > 2 * _PREWAKE else deadline
        self._handle = self._loop.call_at(at, self._fire)

    def disarm(self, entry: list[Any]) -> bool:
        """The attempt is over: True if its deadline had already cancelled its task."""
        if entry[2] is _FIRED:
            return True
        entry[2] = None
        heap = self._heap
        if heap[0] is entry:
            heapq.heappop(heap)
            while heap and heap[0][2] is None:
                heapq.heappop(heap)
                self._stale -= 1
        else:
            self._stale += 1
            if self._stale > 64 and self._stale * 2 > len(heap):
                self._heap = [e for e in heap if e[2] is not None]
                heapq.heapify(self._heap)
                self._stale = 0
        return False

    def _fire(self) -> None:
        # The handle may be early (its entry was disarmed, or it woke the loop ahead of the
        # deadline): the next live deadline is re-armed.
        self._handle = None
        self._at = math.inf
        heap = self._heap
        reached = self._loop.time() + _CLOCK_RESOLUTION
        while heap and (heap[0][2] is None or heap[0][0] < reached):
            entry = heapq.heappop(heap)
            target = entry[2]
            if target is None:
                self._stale -= 1
                continue
            entry[2] = _FIRED
            if isinstance(target, asyncio.Task):
                target.cancel()
            else:
                target()
        if heap:
            self._set_timer(heap[0][0])

    def close(self) -> None:
        """No attempt runs any more: drop the timer (it would hold on to the run until then)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._at = math.inf


class Executor:
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
        self._rng = rng or _JITTER
        self.state = state if state is not None else RunState(self.run_id)
        self._seq = self.state.last_seq
        plan = _plan_for(pipeline)
        self._plan = plan
        self._specs = plan.specs
        self._parents = plan.parents
        self._children = plan.children
        self._optional = plan.optional
        self._conditions = plan.conditions
        self._steps = plan.steps
        self._publishers = tuple(sink.publish for sink in self._sinks)
        # `notify:` targets (none in a simulated run: a rehearsal pages nobody).
        self._notifier: Notifier | None = None
        if pipeline.notify and not simulate:
            from engine.notify import Notifier

            self._notifier = Notifier(pipeline.notify, self._emit_notification, sleep=sleep)
        # The driver's inbox (made by `execute`): stop requests, the force timer and errors.
        self._loop: asyncio.AbstractEventLoop  # the loop `execute` runs on
        self._inbox: deque[tuple[str, Any]] | None = None
        self._waiter: asyncio.Future[None] | None = None  # the driver, waiting on the inbox
        self._deadlines: _Deadlines | None = None
        self._run_deadline = math.inf  # loop time
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # Nodes ready to start, and how many unfinished parents each other node waits for.
        self._ready: deque[str] = deque()
        self._remaining: dict[str, int] = {}
        self._context = contextvars.copy_context()  # each node's task runs in a copy of it
        self._watched: set[asyncio.Task[None]] = set()  # cancelled by the driver
        self._busy = 0  # tasks in `_tasks` that hold a concurrency slot (approvals hold none)
        self._params_hash: str | None = None
        self._output_hashes: dict[str, str] = {}  # node id -> its outputs_hash
        self._single_input_hashes: dict[str, str] = {}  # input node id -> inputs hash
        self._approvals: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._stop: _Stop | None = None
        self._stop_requested = asyncio.Event()
        self._gate_blocked: dict[str, str] = {}
        self._done = False
        # Work never runs far ahead of the record: while the store has events published over
        # `RECORD_LAG` seconds ago unacknowledged, no node starts (`_start_ready`); a task waits
        # for the store to catch up, then the driver starts what is ready.
        self._write_gate = write_gate
        self._record_wait: asyncio.Task[None] | None = None
        # A half-open breaker's trial, claimed where other processes see it (the manager's
        # store); raises CircuitOpenError when another process has it.
        self._claim_trial = claim_trial

    # -- events ---------------------------------------------------------------------------------

    def _emit(
        self,
        event_type: str,
        *,
        node_id: str | None = None,
        attempt: int | None = None,
        actor: str = "engine",
        error_class: str | None = None,
        reason: str | None = None,
        data: Mapping[str, Any] | None = None,
        inputs_hash: str | None = None,
        outputs_hash: str | None = None,
        timestamp: str | None = None,
    ) -> Event:
        self._seq += 1
        event = new_event(
            new_event_id(),
            self._seq,
            event_type,
            self.run_id,
            timestamp or self._now(),
            actor,
            self.state.run_attempt if attempt is None else attempt,
            node_id,
            error_class,
            reason,
            inputs_hash,
            outputs_hash,
            data,
        )
        apply(self.state, event)
        for publish in self._publishers:
            publish(event)
        return event

    def _emit_notification(self, event_type: str, reason: str | None, data: dict[str, Any]) -> None:
        if not self._done:  # nothing follows run.completed
            self._emit(event_type, reason=reason, data=data)

    def _emit_node(
        self,
        event_type: str,
        node_id: str,
        attempt: int,
        data: Mapping[str, Any],
        inputs_hash: str | None = None,
        outputs_hash: str | None = None,
    ) -> None:
        """`_emit` for the events every node emits (started, succeeded), without its options."""
        self._seq = seq = self._seq + 1
        event = new_event(
            new_event_id(), seq, event_type, self.run_id, self._now(), "engine", attempt, node_id,
            None, None, inputs_hash, outputs_hash, data,
        )
        apply(self.state, event)
        for publish in self._publishers:
            publish(event)

    def create(
        self, *, replay_of: str | None = None, actor: str = "engine", retry_of: str | None = None
    ) -> Event:
        """Emit `run.created`: the run exists (pending) from here on."""
        data: dict[str, Any] = {
            "pipeline_id": self.pipeline.id,
            "definition": self._plan.snapshot,
            "params": self.params,
        }
        if replay_of:
            data["replay_of"] = replay_of
        if retry_of:
            data["retry_of"] = retry_of
        if self.simulate:
            data["simulate"] = True
        if self.search_path:
            # Where `call:` modules and relative paths were found: resume and replay need it.
            data["search_path"] = self.search_path
        encoded = EncodedData.joined(data, {"definition": self._plan.snapshot_json})
        return self._emit(EventType.RUN_CREATED, actor=actor, attempt=1, data=encoded)

    def record_interrupted(self, reason: str, data: Mapping[str, Any]) -> None:
        """Record the interruption a take-over acts on (`run.state_changed` to
        `interrupted`): readers only ever work it out from the lease, never write it."""
        if self.state.is_terminal or self.state.state is RunStatus.INTERRUPTED:
            return
        self._emit(
            EventType.RUN_STATE_CHANGED,
            reason=reason,
            data={"from": self.state.state.value, "to": RunStatus.INTERRUPTED.value, **data},
        )

    def reuse(self, node_id: str, output: Any, *, reused_from: str) -> None:
        """Before `execute`: record `node_id` as succeeded with another run's stored output
        (retry from failure): attempt 0, no work done, so it takes no time."""
        text = compact_json(output) if output else "{}"
        outputs_hash = json_hash(text) if output else None
        self._output_hashes[node_id] = outputs_hash or _EMPTY_HASH
        self._emit(
            EventType.NODE_SUCCEEDED,
            node_id=node_id,
            attempt=0,
            data={"output": output, "reused_from": reused_from},
            outputs_hash=outputs_hash,
        )

    def prepare_resume(
        self, *, actor: str = "engine", override_reason: str | None = None
    ) -> list[str]:
        """Emit `run.resumed` (and `run.override_applied`): reset what must run again."""
        overridden = list(self.state.gate_failures) if override_reason else []
        reset: list[str] = []
        blocked = set(overridden)
        for gate in overridden:
            blocked |= self._descendants(gate)
        for node in self.state.nodes.values():
            if node.state in _UNFINISHED:
                reset.append(node.node_id)
            elif node.node_id in blocked and node.node_id not in overridden:
                if node.state is not NodeStatus.SUCCEEDED:
                    reset.append(node.node_id)
            elif node.state is NodeStatus.CANCELLED:
                reset.append(node.node_id)
        previous = self.state.state.value
        self._emit(
            EventType.RUN_RESUMED,
            actor=actor,
            attempt=self.state.run_attempt + 1,
            data={"reset": reset, "from": previous},
        )
        if overridden:
            self._emit(
                EventType.RUN_OVERRIDE_APPLIED,
                actor=actor,
                reason=override_reason,
                data={"nodes": overridden},
            )
            for gate in overridden:
                node = self.state.nodes[gate]
                self._emit(
                    EventType.NODE_SUCCEEDED,
                    node_id=gate,
                    attempt=max(node.attempts, 1),
                    actor=actor,
                    reason=f"overridden: {override_reason}",
                    data={"output": {"overridden": True, "reason": override_reason}},
                )
        return reset

    def _descendants(self, node_id: str) -> set[str]:
        seen: set[str] = set()
        stack = list(self._children[node_id])
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self._children[current])
        return seen

    # -- control from outside -----------------------------------------------------------------

    def request_stop(
        self, status: RunStatus, reason: str, error_class: str, actor: str = "engine"
    ) -> None:
        """Stop the run: nothing new starts, running nodes are cancelled. First request wins."""
        if self._stop is not None or self._done:
            return
        self._stop = _Stop(status, reason, error_class, actor)
        self._stop_requested.set()
        self._post(("stop", None))

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
            self._post(("force", None))

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
            self._deadlines = _Deadlines(loop)
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
        try:
            await self._drive()
        except asyncio.CancelledError:
            # The owner is going away (its task was cancelled): stop properly, then tell it so.
            self.cancel("the owning process stopped the run")
            await self._shield_finish()
            raise
        finally:
            if run_deadline is not None:
                self._deadlines.disarm(run_deadline)
        await self._finish()
        return self.state

    async def _shield_finish(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(self._drain_and_finish())

    async def _drain_and_finish(self) -> None:
        await self._drive()
        await self._finish()

    async def _finish(self) -> None:
        if self._done:
            return
        status, reason, error_class = final_status(self.state, self._optional, self._stop)
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

    def _post(self, message: tuple[str, Any]) -> None:
        """Hand the driver a message (from a callback, a timer or a control call)."""
        inbox = self._inbox
        if inbox is None:  # not executing yet: `execute` looks at `_stop` when it starts
            return
        inbox.append(message)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _deadline_passed(self) -> None:
        timeout = self.pipeline.timeout
        self.request_stop(RunStatus.TIMEOUT, f"run deadline of {timeout:g}s passed", "timeout")

    async def _drive(self) -> None:
        inbox = self._inbox
        assert inbox is not None and self._deadlines is not None
        loop = asyncio.get_running_loop()
        self._context = contextvars.copy_context()
        self._ready = deque()
        self._remaining = self._init_remaining(self._ready)
        self._start_ready()
        force_handle: asyncio.TimerHandle | None = None
        try:
            while True:
                while inbox:
                    kind, payload = inbox.popleft()
                    if kind == "error":
                        raise payload
                    if kind == "force" and force_handle is not None:
                        self._cancel_tasks()
                        force_handle = loop.call_later(0.5, self._post, ("force", None))
                    elif kind == "recorded":
                        self._start_ready()
                if self._stop is not None and self._record_wait is not None:
                    self._record_wait.cancel()
                    self._record_wait = None
                if self._stop is not None and self._tasks and force_handle is None:
                    self._cancel_tasks()
                    # Forced: a node that ignores its cancellation is cancelled again after the
                    # grace, until it gives in.
                    force_handle = loop.call_later(
                        self.pipeline.cleanup_grace + 0.5, self._post, ("force", None)
                    )
                if not self._tasks and self._record_wait is None:
                    break
                self._waiter = loop.create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
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

    def _cancel_tasks(self) -> None:
        for task in self._tasks.values():
            task.cancel()
            if task not in self._watched:
                # A task cancelled before its first step never runs its coroutine, so it cannot
                # report its own end: its done callback does.
                self._watched.add(task)
                task.add_done_callback(self._task_done)

    def _init_remaining(self, ready: deque[str]) -> dict[str, int]:
        remaining: dict[str, int] = {}
        nodes = self.state.nodes
        for node_id, parents in self._parents.items():
            if nodes[node_id].state in _TERMINAL:
                continue
            count = 0
            for parent in parents:
                if nodes[parent].state not in _TERMINAL:
                    count += 1
            remaining[node_id] = count
            if count == 0:
                ready.append(node_id)
        return remaining

    def _start_ready(
        self, heir: asyncio.Task[None] | None = None, hand_on_until: float = 0.0
    ) -> _Step | None:
        """Start the ready nodes that may start now. `heir`, the task of a node that has just
        succeeded, takes on the first of them itself if it may (see `_run_node`): the caller
        then runs it."""
        inherited: _Step | None = None
        ready = self._ready
        if ready and self._write_gate is not None and self._write_gate.lagging():
            self._wait_for_record()
            return None
        limit = self.pipeline.max_concurrency
        steps = self._steps
        nodes = self.state.nodes
        while ready and self._stop is None:
            node_id = ready[0]
            step = steps[node_id]
            skip = None
            if step.plain:  # `decide_node` in short: it starts if every parent succeeded
                for parent in step.parents:
                    if nodes[parent].state is not _SUCCEEDED:
                        skip = self._decide(step)
                        break
            else:
                skip = self._decide(step)
            if skip is not None:
                ready.popleft()
                self._emit(
                    EventType.NODE_SKIPPED,
                    node_id=node_id,
                    attempt=self.state.nodes[node_id].attempts,
                    reason=skip,
                )
                self._release_children(node_id)
                continue
            holds_slot = step.holds_slot
            if holds_slot and self._busy >= limit:
                break
            ready.popleft()
            if heir is not None and self._may_hand_on(heir, hand_on_until):
                heir.set_name(step.task_name)
                self._tasks[node_id] = heir
                inherited = step
            else:
                # Started from the driver or from another node's task: either way in a copy of
                # the run's context, as if the driver had started it.
                self._tasks[node_id] = self._loop.create_task(
                    self._run_node(step), name=step.task_name, context=self._context.copy()
                )
            heir = None
            if holds_slot:
                self._busy += 1
        return inherited

    def _wait_for_record(self) -> None:
        """The store lags: start nothing until it has caught up (then the driver goes on)."""
        if self._record_wait is not None or self._stop is not None:
            return
        gate = self._write_gate
        assert gate is not None

        async def wait() -> None:
            try:
                await gate.caught_up()
            finally:
                self._record_wait = None
            self._post(("recorded", None))

        self._record_wait = self._loop.create_task(wait(), name="interlock:record-wait")

    def _may_hand_on(self, task: asyncio.Task[None], until: float) -> bool:
        return (
            task.cancelling() == 0
            and self._loop.time() < until
            and contextvars.copy_context() == self._context
        )

    def _decide(self, step: _Step) -> str | None:
        blocked = self._gate_blocked.get(step.node_id)
        if blocked:
            return f"gate_failed:{blocked}"
        return decide_node(step.spec, step.parents, self.state, self._optional, self._conditions)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._watched.discard(task)
        node_id = task.get_name().removeprefix("interlock:")
        if self._tasks.get(node_id) is task:  # ended without running: cancelled at once
            self._node_done(node_id, cancelled=True)

    def _node_done(
        self,
        node_id: str,
        *,
        cancelled: bool = False,
        error: Exception | None = None,
        heir: asyncio.Task[None] | None = None,
        hand_on_until: float = 0.0,
    ) -> _Step | None:
        """A node's task is ending: settle the node and start what that lets start; returns
        the node that `heir`, its task, is to run next, if any (see `_run_node`)."""
        try:
            self._settle(node_id, cancelled, error)
            inherited = self._start_ready(heir, hand_on_until)
        except Exception as exc:  # raised by the driver: here it would be the node task's
            self._post(("error", exc))
            return None
        if not self._tasks:
            self._wake()
        return inherited

    def _settle(self, node_id: str, cancelled: bool, error: Exception | None) -> None:
        del self._tasks[node_id]
        if self._steps[node_id].holds_slot:
            self._busy -= 1
        node = self.state.nodes[node_id]
        stop = self._stop
        if cancelled:
            if not node.is_terminal:
                self._emit(
                    EventType.NODE_CANCELLED,
                    node_id=node_id,
                    attempt=node.attempts,
                    actor=stop.actor if stop else "engine",
                    error_class="cancelled",
                    reason=stop.reason if stop else "cancelled",
                )
        elif error is not None and not node.is_terminal:
            self._emit(
                EventType.NODE_FAILED,
                node_id=node_id,
                attempt=node.attempts,
                error_class="error",
                reason=f"internal error: {type(error).__name__}: {error}",
            )
        node = self.state.nodes[node_id]
        if (
            node.state in _FAILED_OR_TIMED_OUT
            and self.pipeline.fail_fast
            and not self._optional[node_id]
        ):
            self.request_stop(RunStatus.FAILED, f"fail_fast: node '{node_id}' failed", "error")
        self._release_children(node_id)

    def _release_children(self, node_id: str) -> None:
        ready, remaining = self._ready, self._remaining
        for child in self._children[node_id]:
            if child in remaining:
                remaining[child] -= 1
                if remaining[child] == 0:
                    ready.append(child)

    # -- one node -----------------------------------------------------------------------------

    def _inputs(self, parents: tuple[str, ...]) -> dict[str, Any]:
        nodes = self.state.nodes
        inputs = {}
        for parent_id in parents:
            parent = nodes[parent_id]
            if parent.state is _SUCCEEDED:
                inputs[parent_id] = parent.output
        return inputs

    def _breaker_listener(self, node_id: str) -> Callable[[BreakerChange], None]:
        def report(change: BreakerChange) -> None:
            self._emit(
                EventType.BREAKER_STATE_CHANGED,
                node_id=node_id,
                attempt=self.state.nodes[node_id].attempts,
                data={
                    "key": change.key,
                    "from": change.from_state.value,
                    "to": change.to_state.value,
                    "failures": change.failures,
                    "recovery_timeout": change.recovery_timeout,
                },
            )

        return report

    async def _run_node(self, step: _Step) -> None:
        """A node's task: its attempts, then, as the task ends, its completion acted on.

        A node that succeeds hands its task on to a node that this lets start, which then runs
        in it rather than in a task of its own, as long as that is the same to the node: its
        predecessor left the context as it found it (each node sees a fresh copy of the run's
        context), nothing asked the task to stop, and the task has held the loop for under
        `_HAND_ON_FOR` seconds. A chain of nodes then costs the loop neither a task nor a turn
        per node, the largest cost of a chain of short nodes (asyncio 3.12's eager tasks save
        the same; 3.11 has none), while the loop still gets a turn every millisecond or so.
        """
        task = self._tasks[step.node_id]
        hand_on_until = self._loop.time() + _HAND_ON_FOR
        while True:
            node_id = step.node_id
            try:
                # The attempts, written out here for the usual single attempt (a coroutine
                # less per node); retried attempts go through `_retried`.
                prior = self.state.nodes[node_id].attempts
                if step.hard_gate or step.max_attempts - prior <= 1:
                    attempt = prior + 1
                    try:
                        output = await self._attempt(step, attempt)
                    except NodeError as err:
                        self._node_failed(step.spec, attempt, err)
                    else:
                        self._node_succeeded(step, attempt, output)
                else:
                    await self._retried(step, prior)
            except asyncio.CancelledError:
                self._node_done(node_id, cancelled=True)
                raise
            except Exception as exc:
                self._node_done(node_id, error=exc)
                return
            following = self._node_done(node_id, heir=task, hand_on_until=hand_on_until)
            if following is None:
                return
            step = following

    async def _retried(self, step: _Step, prior: int) -> None:
        """The attempts of a node that may retry, under its retry policy, and their outcome."""
        retrying = make_retrying(
            step.retry,
            classify=_error_class,
            prior_attempts=prior,
            sleep=self._sleep,
            before_sleep=self._before_sleep(step.spec, prior),
            rng=self._rng,
        )
        attempt = prior + 1
        try:
            async for try_ in retrying:
                with try_:
                    attempt = prior + try_.retry_state.attempt_number
                    output = await self._attempt(step, attempt)
        except NodeError as err:
            self._node_failed(step.spec, attempt, err)
        else:
            self._node_succeeded(step, attempt, output)

    def _node_succeeded(self, step: _Step, attempt: int, output: dict[str, Any]) -> None:
        """Emit `node.succeeded`. Its `outputs_hash` is the hash of the output's JSON text as
        the event holds it, and the event carries that text (`EncodedData`): the output is
        encoded once, not once for the hash and again when the store writes the event."""
        node_id = step.node_id
        text = compact_json(output) if output else "{}"
        if self.simulate and step.does_work:
            data = EncodedData(output=output, simulated=True)
            data.json = f'{{"output":{text},"simulated":true}}'
        else:
            data = EncodedData(output=output)
            data.json = f'{{"output":{text}}}'
        outputs_hash = json_hash(text) if output else None
        self._output_hashes[node_id] = outputs_hash or _EMPTY_HASH
        self._emit_node(EventType.NODE_SUCCEEDED, node_id, attempt, data, None, outputs_hash)

    def _inputs_hash(self, inputs: Mapping[str, Any]) -> str:
        """sha256 over the params' hash and each input's output hash: the same inputs always
        hash the same, and no output is serialised again for each of its children.

        The nodes whose one input is the same node share the hash, worked out once (a node
        succeeds at most once per execution): the 1,000 children of a fan-out's source."""
        if len(inputs) != 1:
            return self._hash_inputs(inputs)
        (parent,) = inputs
        known = self._single_input_hashes.get(parent)
        if known is None:
            known = self._single_input_hashes[parent] = self._hash_inputs(inputs)
        return known

    def _hash_inputs(self, inputs: Mapping[str, Any]) -> str:
        text = self._params_hash
        if text is None:
            text = self._params_hash = stable_hash(self.params)
        hashes = self._output_hashes
        # The lines "parent:hash" after the params' hash, in parent order (a single input, the
        # usual case, needs no sorting); `+=` on a string nobody else holds appends in place.
        for parent in inputs if len(inputs) == 1 else sorted(inputs):
            known = hashes.get(parent)
            if known is None:  # succeeded before a resume: its hash is worked out here
                output = inputs[parent]
                known = hashes[parent] = json_hash(compact_json(output)) if output else _EMPTY_HASH
            text += f"\n{parent}:{known}"
        return json_hash(text)

    def _before_sleep(self, spec: NodeBase, prior: int) -> Callable[[RetryCallState], None]:
        def before_sleep(retry_state: RetryCallState) -> None:
            outcome = retry_state.outcome
            exc = outcome.exception() if outcome is not None else None
            err = exc if isinstance(exc, NodeError) else NodeError("error", str(exc))
            self._emit(
                EventType.NODE_RETRIED,
                node_id=spec.id,
                attempt=prior + retry_state.attempt_number,
                error_class=err.error_class,
                reason=err.reason,
                data={"delay": round(retry_state.upcoming_sleep, 6)},
            )

        return before_sleep

    def _node_failed(self, spec: NodeBase, attempt: int, err: NodeError) -> None:
        node_id = spec.id
        if spec.gate == "hard" and err.error_class not in ("cancelled",):
            reason = f"gate verdict: {err.reason} ({err.error_class})"
            self._emit(
                EventType.NODE_FAILED,
                node_id=node_id,
                attempt=attempt,
                error_class="gate",
                reason=reason,
            )
            self._emit(
                EventType.GATE_FAILED, node_id=node_id, attempt=attempt, error_class="gate",
                reason=reason,
            )
            for descendant in self._descendants(node_id):
                self._gate_blocked.setdefault(descendant, node_id)
            return
        event_type = (
            EventType.NODE_TIMED_OUT if err.error_class == "timeout" else EventType.NODE_FAILED
        )
        data = {"output": err.output} if err.output is not None else None
        self._emit(
            event_type,
            node_id=node_id,
            attempt=attempt,
            error_class=err.error_class,
            reason=err.reason,
            data=data,
        )

    async def _attempt(self, step: _Step, attempt: int) -> dict[str, Any]:
        """One attempt: breaker, node.started, the handler under the timeout. Raises NodeError.

        The timeout is `async with asyncio.timeout_at(deadline)` on the run's shared deadline
        timer (`_Deadlines`): the deadline, and nothing else, turns a cancellation into a
        TimeoutError. It is written out here, not in a helper coroutine, because every node
        runs it."""
        node_id = step.node_id
        spec = step.spec
        breaker: CircuitBreaker | None = None
        if step.breaker is not None:
            breaker = self._breakers.get(*step.breaker)
            if not breaker.admits_freely:
                try:
                    breaker.acquire(self._breaker_listener(node_id))
                    if breaker.state is _HALF_OPEN and self._claim_trial is not None:
                        # One trial across processes: the store says whose it is.
                        await self._claim_trial(breaker)
                except CircuitOpenError as exc:
                    raise NodeError("circuit_open", str(exc)) from None
        timeout = step.timeout
        inputs = self._inputs(step.parents)
        secrets = self._plan.secret_names
        hooks = _AttemptHooks(self, spec, attempt)
        # Positional: the dataclass's field order (half the cost of naming sixteen arguments).
        ctx = NodeContext(
            self.run_id, node_id, attempt, self.params, inputs,
            _SucceededOutputs(self.state.nodes) if step.sees_all_outputs else inputs,
            timeout, self.pipeline.cleanup_grace, self.pipeline, self.simulate, self.search_path,
            hooks.log, hooks.emit_artifact, hooks.wait_for_decision, self._sleep,
            secret_forms(secrets) if secrets else [],
        )
        ctx.process_started = hooks.process_started
        simulated = self.simulate and step.does_work
        self._emit_node(
            EventType.NODE_STARTED,
            node_id,
            attempt,
            step.started_simulated if simulated else step.started,
            self._inputs_hash(inputs) if inputs else None,
        )
        entry: list[Any] | None = None
        task: asyncio.Task[None] | None = None
        cancelling = 0
        try:
            if simulated:
                output: dict[str, Any] = {"simulated": True}
            else:
                handler = step.handler or handler_for(step.kind)
                deadline = self._loop.time() + timeout
                if deadline <= self._run_deadline:  # else the run's deadline comes first
                    assert self._deadlines is not None
                    task = self._tasks[node_id]  # this very task: `_start_ready` made it
                    cancelling = task.cancelling()
                    entry = self._deadlines.arm(deadline, task)
                try:
                    output = await handler(spec, ctx)
                except asyncio.CancelledError as exc:
                    if entry is not None and self._disarm(entry, task) <= cancelling:
                        raise TimeoutError from exc
                    raise
                except BaseException:
                    if entry is not None:
                        self._disarm(entry, task)
                    raise
                if entry is not None:
                    self._disarm(entry, task)
        except TimeoutError:
            reason = str(NodeTimeoutError(node_id, timeout))
            if ctx.notes:
                reason += "; " + "; ".join(ctx.notes)
            err = NodeError("timeout", reason)
        except NodeError as exc:
            err = exc
        except TransientError as exc:
            err = NodeError("transient", str(exc) or "transient error")
        except asyncio.CancelledError:
            if breaker is not None:
                breaker.release()
            raise
        except Exception as exc:
            err = NodeError("error", f"{type(exc).__name__}: {exc}")
        else:
            if breaker is not None and not breaker.admits_freely:
                breaker.record_success(self._breaker_listener(node_id))
            return output
        if breaker is not None:
            if err.error_class in ("cancelled", "config"):
                breaker.release()
            else:
                breaker.record_failure(self._breaker_listener(node_id))
        raise err

    def _disarm(self, entry: list[Any], task: asyncio.Task[None] | None) -> int:
        """The attempt's work is over: disarm its deadline. If the deadline had cancelled the
        task, take that cancellation back (`Task.uncancel`) and return how many are left; else
        a count above any `cancelling()`, so that no TimeoutError is made up."""
        assert self._deadlines is not None and task is not None
        if self._deadlines.disarm(entry):
            return task.uncancel()
        return _NOT_FIRED

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
            if self._notifier is not None:
                self._notifier.waiting(self.state, self._now())
        elif not self._approvals and current is RunStatus.WAITING:
            self._emit(EventType.RUN_STATE_CHANGED, data={"from": "waiting", "to": "running"})


class _AttemptHooks:
    """What an attempt's handler reports through (`NodeContext.log`, `.emit_artifact`,
    `.wait_for_decision`): the bound methods of one small object per attempt. Three
    `functools.partial`s cost more: 1.4% of a no-op chain node's instructions (callgrind)."""

    __slots__ = ("_attempt", "_executor", "_spec")

    def __init__(self, executor: Executor, spec: NodeBase, attempt: int) -> None:
        self._executor, self._spec, self._attempt = executor, spec, attempt

    def log(self, stream: str, line: str) -> None:
        self._executor._log(self._spec.id, self._attempt, stream, line)

    def emit_artifact(self, data: dict[str, Any]) -> None:
        self._executor._emit_artifact(self._spec.id, self._attempt, data)

    def process_started(self, record: dict[str, Any]) -> None:
        # A `node.log` line: whoever cancels or resumes the run after this process died reads
        # the record back (`containment.kill_run_orphans`).
        line = "command started in a process group of its own (recorded for cleanup)"
        self._executor._log(self._spec.id, self._attempt, "process", line, record)

    def wait_for_decision(self) -> Awaitable[dict[str, Any]]:
        return self._executor._wait_for_decision(self._spec, self._attempt)


class _SucceededOutputs(Mapping[str, Any]):
    """The outputs of the nodes that have succeeded, by node id: a view of the run state, made
    in O(1) (a condition or action node used to copy every output of the run)."""

    __slots__ = ("_nodes",)

    def __init__(self, nodes: Mapping[str, NodeState]) -> None:
        self._nodes = nodes

    def __getitem__(self, node_id: str) -> Any:
        node = self._nodes.get(node_id)
        if node is None or node.state is not NodeStatus.SUCCEEDED:
            raise KeyError(node_id)
        return node.output

    def __iter__(self) -> Iterator[str]:
        return (n.node_id for n in self._nodes.values() if n.state is NodeStatus.SUCCEEDED)

    def __len__(self) -> int:
        return sum(1 for n in self._nodes.values() if n.state is NodeStatus.SUCCEEDED)


def _error_class(exc: BaseException) -> str:
    if isinstance(exc, NodeError):
        return exc.error_class
    if isinstance(exc, TransientError):
        return "transient"
    return "error"


def node_ids(events: Iterable[Event], event_type: str) -> list[str]:
    """The node ids of the events of one type, in order (a small helper for views and tests)."""
    return [e.node_id for e in events if e.event_type == event_type and e.node_id is not None]
