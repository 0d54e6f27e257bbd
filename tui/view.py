"""Pure view models: what the console's tables show, computed from folded state and the clock.

Contract: no Textual and no I/O. A `RunState` (the fold of a run's events), the static facts of
its pipeline (`NodeInfo`, from the run's definition snapshot), the breakers known to the console
and `now` go in; rows of plain values come out. The widgets only paint these.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.breaker import BreakerRecord
from engine.events import EventType
from engine.state import NodeStatus, RunStatus
from tui import format as fmt
from tui.escape import printable

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from engine.events import Event
    from engine.spec import Pipeline
    from engine.state import NodeState, RunState


@dataclass(frozen=True)
class NodeInfo:
    """What the definition says about a node: its limits, before anything ran."""

    node_id: str
    node_type: str
    needs: tuple[str, ...]
    max_attempts: int
    timeout: float
    breaker_key: str | None
    label: str


def node_infos(pipeline: Pipeline) -> dict[str, NodeInfo]:
    infos: dict[str, NodeInfo] = {}
    for node in pipeline.nodes:
        key = pipeline.breaker_terms(node)[0] if node.has_breaker else None
        infos[node.id] = NodeInfo(
            node_id=node.id,
            node_type=node.type,
            needs=pipeline.needs_of(node),
            max_attempts=pipeline.retry_for(node).max_attempts,
            timeout=pipeline.timeout_for(node),
            breaker_key=key,
            label=node.label,
        )
    return infos


def edges_of(infos: Mapping[str, NodeInfo]) -> list[tuple[str, str]]:
    return [(parent, info.node_id) for info in infos.values() for parent in info.needs]


# The console's breakers are the engine's one read model (`remaining`, `shown_state`).
BreakerView = BreakerRecord


def breaker_text(view: BreakerView | None, now: float) -> str:
    if view is None:
        return "-"
    state = view.shown_state(now)
    label = fmt.breaker_label(state)
    if state == "open":
        return f"{label} {fmt.countdown(view.remaining(now))}"
    if state == "closed" and view.failures:
        return f"{label} ({view.failures} failed)"  # plain ASCII: the same with --ascii
    return label


def breakers_from_run(state: RunState) -> dict[str, BreakerView]:
    """Breaker states as the run's own `breaker.state_changed` events last recorded them."""
    views: dict[str, BreakerView] = {}
    for key, raw in state.breakers.items():
        opened = fmt.epoch(raw.get("at")) if raw.get("state") == "open" else None
        views[key] = BreakerRecord(
            key,
            str(raw.get("state") or "closed"),
            int(raw.get("failures") or 0),
            opened,
            float(raw.get("recovery_timeout") or 0.0),
        )
    return views


# The line the engine logs (stream `interlock`) when it SIGTERMs a node's process group: the
# grace before the SIGKILL starts at that event's timestamp.
_SIGTERM_LINE = re.compile(r"SIGTERM sent to process group \d+; SIGKILL after ([0-9.]+)s")


@dataclass(frozen=True)
class Grace:
    """A node's attempt in its cleanup grace: SIGTERM sent, SIGKILL due at `kill_at`."""

    attempt: int
    kill_at: float
    seconds: float

    def left(self, now: float) -> float:
        """Seconds to the SIGKILL (never more than the grace: a view's clock may lag)."""
        return max(0.0, min(self.kill_at - now, self.seconds))


def note_graces(events: Iterable[Event], graces: dict[str, Grace]) -> None:
    """Record in `graces` the nodes whose process group got SIGTERM in `events`."""
    for event in events:
        if event.event_type != EventType.NODE_LOG or event.node_id is None:
            continue
        data = event.data or {}
        if data.get("stream") != "interlock":
            continue
        found = _SIGTERM_LINE.match(str(data.get("line", "")))
        sent = fmt.epoch(event.timestamp_utc)
        if found and sent is not None:
            seconds = float(found[1])
            graces[event.node_id] = Grace(event.attempt, sent + seconds, seconds)


def lost_at(
    events: list[Event], *, heard: float | None = None, before: float | None = None
) -> float | None:
    """When the owner of an interrupted run was last heard of: the time of the last event
    before the run was marked `interrupted` (`before`: that of the event preceding `events`),
    or the owner's last heartbeat if later but not after the mark; None if `events` hold no
    such mark. (Only the marks' neighbours are parsed: this runs on every batch of events.)"""
    found: float | None = None
    for index, event in enumerate(events):
        if event.event_type != EventType.RUN_STATE_CHANGED:
            continue
        if (event.data or {}).get("to") != RunStatus.INTERRUPTED.value:
            continue
        stamp = fmt.epoch(event.timestamp_utc)
        previous = fmt.epoch(events[index - 1].timestamp_utc) if index else before
        found = previous if previous is not None else stamp
        if heard is not None and stamp is not None and found is not None:
            found = max(found, min(heard, stamp))
    return found


@dataclass
class OwnerHeard:
    """When the owner of a followed run was last heard of: what stops an interrupted run's
    clocks (the run view's and the timeline's alike). `take` each batch of events as it
    comes, with the owner's last heartbeat as the runs list has it."""

    lost_at: float | None = None  # from the `interrupted` mark, when the events have one
    last_event_at: float | None = None

    def take(self, events: list[Event], heard: float | None) -> None:
        if not events:
            return
        lost = lost_at(events, heard=heard, before=self.last_event_at)
        if lost is not None:
            self.lost_at = lost
        self.last_event_at = fmt.epoch(events[-1].timestamp_utc)

    def clock(self, state: RunState, now: float, heard: float | None) -> float:
        """`now`, or for an interrupted run the moment its owner was lost, if earlier."""
        if state.state is not RunStatus.INTERRUPTED:
            return now
        lost = self.lost_at
        if lost is None:
            # Lost by its lease (nothing recorded: reading never writes): the owner was last
            # heard at its last event or its last heartbeat, whichever came later.
            known = [t for t in (self.last_event_at, heard) if t]
            lost = max(known) if known else None
        return min(now, lost) if lost else now


@dataclass(frozen=True)
class NodeRow:
    node_id: str
    state: str
    attempt: str
    duration: str
    left: float | None  # seconds to the current attempt's timeout, while it runs
    total: float | None  # the attempt's timeout
    breaker: str
    breaker_state: str | None
    error: str


def focus_node(state: RunState) -> str | None:
    """The node an operator opening the run wants to see first: one that needs a decision,
    then one at work, then one that failed; else the first."""
    for wanted in (NodeStatus.WAITING, NodeStatus.RUNNING, NodeStatus.RETRYING,
                   NodeStatus.FAILED, NodeStatus.TIMED_OUT):
        found = state.nodes_in(wanted)
        if found:
            return found[0]
    return next(iter(state.nodes), None)


def attempt_deadline(node: NodeState) -> float | None:
    """When the current attempt times out (epoch seconds), while it runs or waits for a
    decision (an approval's timeout still applies); else None."""
    if node.state not in (NodeStatus.RUNNING, NodeStatus.WAITING) or node.timeout is None:
        return None
    started = fmt.epoch(node.attempt_started_at)
    return None if started is None else started + node.timeout


def node_seconds(node: NodeState, now: float) -> float | None:
    """Seconds the node's attempts ran (a running attempt counts up to `now`)."""
    total, seen = 0.0, False
    for record in node.history:
        if record.outcome == "interrupted":
            # Closed by the resume, not when it really stopped (the owner died unseen): the
            # downtime is not time the node ran.
            continue
        span = fmt.elapsed(record.started_at, record.ended_at, now)
        if span is not None:
            total += span
            seen = True
    return total if seen else None


def node_row(
    node: NodeState,
    info: NodeInfo | None,
    breakers: Mapping[str, BreakerView],
    now: float,
    *,
    live: bool = True,
    grace: Grace | None = None,
    orphaned: bool = False,
) -> NodeRow:
    # A resumed run may have given a node more attempts than its policy (each resume adds one).
    max_attempts = max(info.max_attempts if info else 1, node.attempts)
    key = info.breaker_key if info else None
    breaker = breakers.get(key) if key else None
    deadline = attempt_deadline(node) if live and not orphaned else None
    left = fmt.remaining(deadline, now)
    total = node.timeout if deadline is not None else None
    if left is not None and node.timeout is not None:
        # `now` may lag the start (a view's clock ticks once a second): never more than it had.
        left = min(left, node.timeout)
    shown = node.state.value
    active = node.state in (NodeStatus.RUNNING, NodeStatus.WAITING)
    if active and orphaned:
        shown = "orphaned"
    elif (
        live and grace is not None and grace.attempt == node.attempts
        and node.state is NodeStatus.RUNNING
    ):
        # The bar counts down to the SIGKILL now, not to the attempt's timeout.
        shown = "cancelling"
        left = grace.left(now)
        total = grace.seconds
    error = ""
    if node.error_class:
        error = printable(f"{node.error_class}: {node.reason or ''}".rstrip(": "))
    return NodeRow(
        node_id=node.node_id,
        state=shown,
        attempt=f"{node.attempts}/{max_attempts}" if node.attempts else f"-/{max_attempts}",
        duration=fmt.duration(node_seconds(node, now)),
        left=left,
        total=total,
        breaker=breaker_text(breaker, now) if key else "",
        breaker_state=breaker.shown_state(now) if breaker else None,
        error=error,
    )


def node_rows(
    state: RunState,
    infos: Mapping[str, NodeInfo],
    breakers: Mapping[str, BreakerView],
    now: float,
    *,
    live: bool = True,
    graces: Mapping[str, Grace] | None = None,
) -> list[NodeRow]:
    merged = {**breakers_from_run(state), **breakers}
    orphaned = state.state is RunStatus.INTERRUPTED
    graces = graces or {}
    return [
        node_row(
            node, infos.get(node.node_id), merged, now, live=live,
            grace=graces.get(node.node_id), orphaned=orphaned,
        )
        for node in state.nodes.values()
    ]


def in_grace(state: RunState, graces: Mapping[str, Grace]) -> list[Grace]:
    """The graces of the nodes that are still running in them."""
    found = []
    for node_id, grace in graces.items():
        node = state.nodes.get(node_id)
        if node is not None and node.state is NodeStatus.RUNNING and node.attempts == grace.attempt:
            found.append(grace)
    return found


def cancelling(state: RunState, graces: Mapping[str, Grace], stopping_here: bool) -> bool:
    """Whether the run shows `cancelling`: live (not ended, its owner not lost) and its nodes
    in a cancel's grace, or (`stopping_here`) stopped by this process, the SIGTERMs to come."""
    if state.is_terminal or state.state is RunStatus.INTERRUPTED:
        return False
    return stopping_here or bool(in_grace(state, graces))


def run_deadline_left(state: RunState, now: float) -> float | None:
    if state.is_terminal or state.state is RunStatus.INTERRUPTED:
        return None
    return fmt.remaining(fmt.epoch(state.deadline_at), now)


def run_elapsed(state: RunState, now: float) -> float | None:
    return fmt.elapsed(state.started_at or state.created_at, state.ended_at, now)


def node_inputs(state: RunState, node_id: str) -> dict[str, Any]:
    """What the node receives: the run's params and the outputs of its needs, as the engine
    builds them (the log keeps only their hash; the values are the upstream outputs)."""
    node = state.nodes[node_id]
    inputs = {
        need: state.nodes[need].output
        for need in node.needs
        if need in state.nodes and state.nodes[need].state is NodeStatus.SUCCEEDED
    }
    return {"params": dict(state.params), "inputs": inputs}


def waiting_approvals(state: RunState) -> list[str]:
    return state.nodes_in(NodeStatus.WAITING)


def counts(state: RunState) -> dict[str, int]:
    """How many nodes are in each state (only the states present)."""
    out: dict[str, int] = {}
    for node in state.nodes.values():
        out[node.state.value] = out.get(node.state.value, 0) + 1
    return out


def infos_of_state(state: RunState) -> dict[str, NodeInfo]:
    """Node facts from the run's own definition snapshot (what it ran with, not today's file).

    A run whose snapshot no longer loads still shows, with the limits unknown."""
    from engine.manager import pipeline_from_state
    from engine.spec import Pipeline

    try:
        # The snapshot was validated when the run was created: the models alone read it back
        # (a tenth of the time of the loader's cross-node checks, 0.3 s for 10,000 nodes).
        return node_infos(Pipeline.model_validate(state.definition))
    except Exception:  # not as the models expect: the loader says what it makes of it
        pass
    try:
        return node_infos(pipeline_from_state(state))
    except Exception:  # an old or foreign snapshot: degrade to what the events say
        return {
            n.node_id: NodeInfo(n.node_id, n.node_type, n.needs, max(1, n.attempts), 0.0, None,
                                n.node_id)
            for n in state.nodes.values()
        }


def edges_of_state(state: RunState) -> list[tuple[str, str]]:
    return [
        (parent, node.node_id)
        for node in state.nodes.values()
        for parent in node.needs
        if parent in state.nodes
    ]
