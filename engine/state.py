"""States of runs and nodes, and `fold`: the one function that turns events into state.

Contract: the event log is the single source of truth. Every view of a run (the console, `status`,
`summary`, resume, playback) is `fold(events)`; nothing keeps its own copy of what happened.
`fold` is pure: the same events always give an equal `RunState`, and it does no I/O.

`apply(state, event)` updates the `RunState` it is given in place and returns it. Folding a
100,000-event run must take well under half a second, so copying the state per event (the purist
form) is not affordable; `fold` owns the state it builds, which keeps it pure from the outside.
The live executor keeps its own `RunState` through the very same `apply`, so the live state and a
later fold of the stored events cannot drift apart.

A run's nodes and their needs come from its `run.created` definition, read through the one DAG
(`Graph.from_definition`), which `RunState.graph` keeps for the run's views. Reading it is
remembered per definition object by `engine.encoding.definition_shape`, the one cache on the
fold's path (the executor shares a definition among a pipeline's runs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from engine.encoding import definition_shape
from engine.events import Event, EventType

if TYPE_CHECKING:
    from engine.graph import Graph


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL_RUN


_TERMINAL_RUN = frozenset(
    {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.TIMEOUT, RunStatus.CANCELLED}
)


class NodeStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL_NODE


_TERMINAL_NODE = frozenset(
    {
        NodeStatus.SUCCEEDED,
        NodeStatus.FAILED,
        NodeStatus.TIMED_OUT,
        NodeStatus.SKIPPED,
        NodeStatus.CANCELLED,
    }
)


class ErrorClass(StrEnum):
    TRANSIENT = "transient"
    TIMEOUT = "timeout"
    ERROR = "error"
    GATE = "gate"
    CIRCUIT_OPEN = "circuit_open"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    CONFIG = "config"


# How many node.log lines a NodeState keeps (the store keeps them all).
LOG_LINES_KEPT = 500


@dataclass
class AttemptRecord:
    """One attempt of a node: when it ran and how it ended."""

    attempt: int
    started_at: str
    ended_at: str | None = None
    outcome: str | None = None  # a NodeStatus value, or "retrying" for a failed attempt retried
    error_class: str | None = None
    reason: str | None = None


@dataclass
class NodeState:
    node_id: str
    node_type: str = ""
    needs: tuple[str, ...] = ()
    state: NodeStatus = NodeStatus.PENDING
    attempts: int = 0
    error_class: str | None = None
    reason: str | None = None
    output: Any = None
    inputs_hash: str | None = None
    started_at: str | None = None  # first attempt
    attempt_started_at: str | None = None  # current attempt
    ended_at: str | None = None
    timeout: float | None = None  # seconds allowed for the current attempt
    retry_delay: float | None = None  # the backoff before the next attempt
    simulated: bool = False
    history: list[AttemptRecord] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    decision: dict[str, Any] | None = None  # approval: decision, actor, at, reason
    reused_from: str | None = None  # retry from failure: the run whose output it took

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal


@dataclass
class RunState:
    run_id: str
    pipeline_id: str = ""
    state: RunStatus = RunStatus.PENDING
    params: dict[str, Any] = field(default_factory=dict)
    definition: dict[str, Any] = field(default_factory=dict)
    nodes: dict[str, NodeState] = field(default_factory=dict)
    created_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    updated_at: str | None = None
    deadline_at: str | None = None
    reason: str | None = None
    error_class: str | None = None
    replay_of: str | None = None
    retry_of: str | None = None
    run_attempt: int = 1  # 1 for the first execution, +1 per resume
    simulate: bool = False
    gate_failures: list[str] = field(default_factory=list)
    overrides: list[dict[str, Any]] = field(default_factory=list)
    breakers: dict[str, dict[str, Any]] = field(default_factory=dict)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    last_seq: int = 0
    # The run's DAG, read from its definition by `run.created` (None before, or for a
    # definition with a cycle). Not part of the state's value: it is the definition's.
    graph: Graph | None = field(default=None, compare=False, repr=False)

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal

    def nodes_in(self, *states: NodeStatus) -> list[str]:
        return [n.node_id for n in self.nodes.values() if n.state in states]


# The statuses `apply` sets, as module names: reading a member off an enum class costs ten
# times a global, and folding spends an eighth of its time on it (benchmarks/NOTES.md).
_RUNNING, _WAITING, _PENDING = NodeStatus.RUNNING, NodeStatus.WAITING, NodeStatus.PENDING
_SUCCEEDED, _FAILED, _TIMED_OUT = NodeStatus.SUCCEEDED, NodeStatus.FAILED, NodeStatus.TIMED_OUT
_CANCELLED, _SKIPPED, _RETRYING = NodeStatus.CANCELLED, NodeStatus.SKIPPED, NodeStatus.RETRYING
_OUTCOMES = {status: status.value for status in NodeStatus}  # `.value` is a property call


def _node(state: RunState, node_id: str | None) -> NodeState:
    if node_id is None:
        raise ValueError("node event without node_id")
    node = state.nodes.get(node_id)
    if node is None:
        # A node not in the definition (e.g. events folded without run.created): track it anyway.
        node = state.nodes[node_id] = NodeState(node_id)
    return node


def _close_attempt(node: NodeState, event: Event, outcome: str) -> None:
    if node.history and node.history[-1].ended_at is None:
        record = node.history[-1]
    elif event.attempt > node.attempts:
        # An attempt that never started its work (refused by an open circuit breaker).
        record = AttemptRecord(event.attempt, event.timestamp_utc)
        node.history.append(record)
    else:
        return
    node.attempts = max(node.attempts, event.attempt)
    record.ended_at = event.timestamp_utc
    record.outcome = outcome
    record.error_class = event.error_class
    record.reason = event.reason


def _finish_node(node: NodeState, event: Event, status: NodeStatus) -> None:
    node.state = status
    node.ended_at = event.timestamp_utc
    node.error_class = event.error_class
    node.reason = event.reason
    node.retry_delay = None
    _close_attempt(node, event, _OUTCOMES[status])


_NO_DATA: Mapping[str, Any] = MappingProxyType({})

_Apply = Callable[[RunState, Event, Mapping[str, Any]], None]


def _node_log(state: RunState, event: Event, data: Mapping[str, Any]) -> None:
    if data.get("stream") == "process":  # where the command runs (for containment), not output
        return
    node = _node(state, event.node_id)
    node.logs.append(str(data.get("line", "")))
    if len(node.logs) > LOG_LINES_KEPT:
        del node.logs[: len(node.logs) - LOG_LINES_KEPT]


def _node_started(state: RunState, event: Event, data: Mapping[str, Any]) -> None:
    node = _node(state, event.node_id)
    node.state = _RUNNING
    node.attempts = event.attempt
    node.started_at = node.started_at or event.timestamp_utc
    node.attempt_started_at = event.timestamp_utc
    node.ended_at = node.error_class = node.reason = node.retry_delay = None
    node.inputs_hash = event.inputs_hash
    timeout = data.get("timeout")
    node.timeout = float(timeout) if timeout is not None else None
    node.history.append(AttemptRecord(event.attempt, event.timestamp_utc))


def _node_succeeded(state: RunState, event: Event, data: Mapping[str, Any]) -> None:
    node = _node(state, event.node_id)
    _finish_node(node, event, _SUCCEEDED)
    node.output = data.get("output")
    node.simulated = bool(data.get("simulated", False))
    node.reused_from = data.get("reused_from")
    node.attempts = max(node.attempts, event.attempt)


def _node_failed(state: RunState, event: Event, data: Mapping[str, Any]) -> None:
    node = _node(state, event.node_id)
    _finish_node(node, event, _FAILED)
    if "output" in data:
        node.output = data["output"]


def _node_finished(status: NodeStatus) -> _Apply:
    def finish(state: RunState, event: Event, data: Mapping[str, Any]) -> None:
        _finish_node(_node(state, event.node_id), event, status)

    return finish


def _node_retried(state: RunState, event: Event, data: Mapping[str, Any]) -> None:
    node = _node(state, event.node_id)
    _close_attempt(node, event, _OUTCOMES[_RETRYING])
    node.state = _RETRYING
    node.error_class = event.error_class
    node.reason = event.reason
    delay = data.get("delay")
    node.retry_delay = float(delay) if delay is not None else None


def _approval_requested(state: RunState, event: Event, data: Mapping[str, Any]) -> None:
    _node(state, event.node_id).state = _WAITING


def _approval_decided(state: RunState, event: Event, data: Mapping[str, Any]) -> None:
    _node(state, event.node_id).decision = {
        "decision": "approved" if event.event_type == EventType.APPROVAL_GRANTED else "rejected",
        "actor": event.actor,
        "at": event.timestamp_utc,
        "reason": event.reason,
    }


def _run_state_changed(state: RunState, event: Event, data: Mapping[str, Any]) -> None:
    new = RunStatus(str(data.get("to", state.state.value)))
    state.state = new
    if new in (RunStatus.RUNNING, RunStatus.WAITING) and state.started_at is None:
        state.started_at = event.timestamp_utc
    if "deadline_at" in data:
        state.deadline_at = data["deadline_at"]
    if event.reason is not None:
        state.reason = event.reason


def _run_created(state: RunState, event: Event, data: Mapping[str, Any]) -> None:
    state.pipeline_id = str(data.get("pipeline_id", ""))
    definition = data.get("definition") or {}
    state.definition = dict(definition)
    state.params = dict(data.get("params") or {})
    state.replay_of = data.get("replay_of")
    state.retry_of = data.get("retry_of")
    state.simulate = bool(data.get("simulate", False))
    state.created_at = event.timestamp_utc
    state.state = RunStatus.PENDING
    shape = definition_shape(definition)
    state.graph = shape.graph
    state.nodes = {node: NodeState(node, kind, needs) for node, kind, needs in shape.nodes}


def _run_completed(state: RunState, event: Event, data: Mapping[str, Any]) -> None:
    state.state = RunStatus(str(data.get("state", state.state.value)))
    state.ended_at = event.timestamp_utc
    state.reason = event.reason
    state.error_class = event.error_class


def _run_resumed(state: RunState, event: Event, data: Mapping[str, Any]) -> None:
    state.run_attempt = event.attempt
    state.ended_at = None
    state.reason = event.reason
    state.error_class = None
    for node_id in data.get("reset") or ():
        node = _node(state, node_id)
        node.state = _PENDING
        node.ended_at = None
        node.error_class = None
        node.reason = None
        node.retry_delay = None
        if node.history and node.history[-1].ended_at is None:
            node.history[-1].ended_at = event.timestamp_utc
            node.history[-1].outcome = "interrupted"
    state.gate_failures = [g for g in state.gate_failures if g not in (data.get("reset") or ())]


def _run_override_applied(state: RunState, event: Event, data: Mapping[str, Any]) -> None:
    overridden = list(data.get("nodes") or ())
    state.overrides.append({"actor": event.actor, "reason": event.reason, "nodes": overridden})
    # The verdict is overridden: those gates no longer fail the run (`overrides` keeps it).
    state.gate_failures = [g for g in state.gate_failures if g not in overridden]


def _gate_failed(state: RunState, event: Event, data: Mapping[str, Any]) -> None:
    if event.node_id is not None and event.node_id not in state.gate_failures:
        state.gate_failures.append(event.node_id)


def _breaker_state_changed(state: RunState, event: Event, data: Mapping[str, Any]) -> None:
    key = str(data.get("key", ""))
    state.breakers[key] = {
        "state": data.get("to"),
        "failures": data.get("failures", 0),
        "at": event.timestamp_utc,
        "node_id": event.node_id,
        "recovery_timeout": data.get("recovery_timeout"),
    }


def _artifact_emitted(state: RunState, event: Event, data: Mapping[str, Any]) -> None:
    state.artifacts.append({"node_id": event.node_id, **dict(data)})


# What each event type changes, one small function per type, looked up by the type's name.
_APPLY: dict[str, _Apply] = {
    EventType.NODE_LOG: _node_log,
    EventType.NODE_STARTED: _node_started,
    EventType.NODE_SUCCEEDED: _node_succeeded,
    EventType.NODE_FAILED: _node_failed,
    EventType.NODE_TIMED_OUT: _node_finished(_TIMED_OUT),
    EventType.NODE_CANCELLED: _node_finished(_CANCELLED),
    EventType.NODE_SKIPPED: _node_finished(_SKIPPED),
    EventType.NODE_RETRIED: _node_retried,
    EventType.APPROVAL_REQUESTED: _approval_requested,
    EventType.APPROVAL_GRANTED: _approval_decided,
    EventType.APPROVAL_REJECTED: _approval_decided,
    EventType.RUN_STATE_CHANGED: _run_state_changed,
    EventType.RUN_CREATED: _run_created,
    EventType.RUN_COMPLETED: _run_completed,
    EventType.RUN_RESUMED: _run_resumed,
    EventType.RUN_OVERRIDE_APPLIED: _run_override_applied,
    EventType.GATE_FAILED: _gate_failed,
    EventType.BREAKER_STATE_CHANGED: _breaker_state_changed,
    EventType.ARTIFACT_EMITTED: _artifact_emitted,
}


def apply(state: RunState, event: Event) -> RunState:
    """Apply one event to `state` (in place) and return it."""
    state.last_seq = event.seq
    state.updated_at = event.timestamp_utc
    change = _APPLY.get(event.event_type)
    if change is not None:  # else a type this version does not know: it changes nothing
        change(state, event, event.data or _NO_DATA)
    return state


def fold(events: Iterable[Event], run_id: str | None = None) -> RunState:
    """The state of a run after `events` (in seq order). Pure."""
    state: RunState | None = None
    for event in events:
        if state is None:
            state = RunState(run_id or event.run_id)
        apply(state, event)
    if state is None:
        if run_id is None:
            raise ValueError("cannot fold an empty event list without a run id")
        state = RunState(run_id)
    return state


def state_to_dict(state: RunState, *, with_output: bool = True) -> dict[str, Any]:
    """The `status --json` view: run_id, pipeline_id, state, nodes {id: {state, attempts, ...}}."""
    nodes: dict[str, Any] = {}
    for node in state.nodes.values():
        item: dict[str, Any] = {"state": node.state.value, "attempts": node.attempts}
        if node.error_class is not None:
            item["error_class"] = node.error_class
        if node.reason is not None:
            item["reason"] = node.reason
        if with_output and node.output is not None:
            item["output"] = node.output
        nodes[node.node_id] = item
    out: dict[str, Any] = {
        "run_id": state.run_id,
        "pipeline_id": state.pipeline_id,
        "state": state.state.value,
        "nodes": nodes,
    }
    for key in ("created_at", "started_at", "ended_at", "reason", "replay_of", "retry_of"):
        value = getattr(state, key)
        if value is not None:
            out[key] = value
    if state.gate_failures:
        out["gate_failures"] = list(state.gate_failures)
    return out
