"""The scheduler: what happens next in a run, decided purely.

Contract (DESIGN section 4): a node is decided once all its parents are terminal; it then
starts when its trigger rule holds and is skipped, with the reason, when it no longer can (a
skip settles it, so its own children are decided in the same step). At most `max_concurrency`
slot-taking nodes run at once (`engine.traits`: an approval takes none). Nothing starts once the
run is stopping; a node that fails (or times out) under `fail_fast`, unless optional, asks for
the run's stop; the descendants of a hard gate that failed are skipped as `gate_failed:<gate>`.
The run is over when nothing runs and, stopping or not, nothing is left to start; its final
status is `final_status`.

Shape: `Scheduler.step(state, finished, stopping=..., may_start=...)` takes the run's state (the
fold of its events, `engine.state.RunState`) and the nodes whose attempts just ended, and
returns a `Decision`: start these, skip those (with reasons), stop the run (fail_fast), or the
run is over. It does no I/O, touches no event loop and emits nothing: the driver
(`engine.executor`) acts on the decision. What it keeps between steps is bookkeeping only (how
many parents each node still waits for, which nodes run), worked out again from the state by a
new scheduler, so a resumed run schedules as a fresh one would.

The pipeline's DAG is `Pipeline.graph`; what the scheduler reads off the pipeline is worked out
once per pipeline object (`Shape.of`) and kept on it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.state import NodeStatus, RunState, RunStatus
from engine.traits import traits_of

if TYPE_CHECKING:
    from engine.spec import NodeBase, Pipeline

__all__ = ["Decision", "Scheduler", "Shape", "Stop", "decide_node", "final_status"]

_FAILED = (NodeStatus.FAILED, NodeStatus.TIMED_OUT, NodeStatus.CANCELLED)
_FAILED_OR_TIMED_OUT = (NodeStatus.FAILED, NodeStatus.TIMED_OUT)
_SUCCEEDED = NodeStatus.SUCCEEDED
_SKIPPED = NodeStatus.SKIPPED
_TERMINAL = frozenset(status for status in NodeStatus if status.is_terminal)
_NO_SKIPS: Mapping[str, str] = {}


@dataclass(frozen=True)
class Stop:
    """A stop asked of the run: its final state (cancelled, timeout or failed), why, by whom."""

    status: RunStatus
    reason: str
    error_class: str
    actor: str = "engine"


class Decision:
    """What the driver is to do now, in this order: stop, skip, start; then, if `over`, end.

    A plain class, not a dataclass with default factories: one is made per step of a chain,
    and that costs a third less."""

    __slots__ = ("over", "skip", "start", "stop")

    def __init__(
        self,
        start: list[str] | None = None,
        skip: list[tuple[str, str]] | None = None,  # (node id, reason), in order
        stop: Stop | None = None,  # fail_fast: the run must stop
        over: bool = False,  # nothing runs and nothing is left to start
    ) -> None:
        self.start = [] if start is None else start
        self.skip = [] if skip is None else skip
        self.stop = stop
        self.over = over

    def __repr__(self) -> str:
        return (
            f"Decision(start={self.start!r}, skip={self.skip!r}, stop={self.stop!r}, "
            f"over={self.over!r})"
        )


def decide_node(
    node: NodeBase,
    parents: Sequence[str],
    state: RunState,
    optional: Mapping[str, bool],
    conditions: frozenset[str],
    skipped: Mapping[str, str] = _NO_SKIPS,
) -> str | None:
    """For a node whose parents are all terminal: None to start it, else why it is skipped.

    `skipped` names parents decided skipped in this step, not yet in `state`."""
    succeeded = failed = skips = 0
    branch_not_taken = False
    for parent_id in parents:
        parent = state.nodes[parent_id]
        status = _SKIPPED if parent_id in skipped else parent.state
        if status is NodeStatus.SUCCEEDED:
            if parent_id in conditions:
                wanted = node.when.get(parent_id, True) if node.when else True
                output = parent.output if isinstance(parent.output, Mapping) else {}
                if bool(output.get("result")) is not wanted:
                    skips += 1
                    branch_not_taken = True
                    continue
            succeeded += 1
        elif status in _FAILED:
            if optional.get(parent_id, False) and status is not NodeStatus.CANCELLED:
                succeeded += 1  # an optional node's failure is recorded; dependents go on
            else:
                failed += 1
        else:
            skips += 1
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
    if skips:  # all_success
        return "branch_not_taken" if branch_not_taken else "upstream_skipped"
    return None


def final_status(
    state: RunState, optional: Mapping[str, bool], stop: Stop | None
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


class Shape:
    """What scheduling reads off a pipeline, worked out once per pipeline object (`of`)."""

    __slots__ = (
        "children", "conditions", "fail_fast", "gates", "graph", "limit", "optional",
        "parents", "plain", "specs", "takes_slot",
    )

    def __init__(self, pipeline: Pipeline) -> None:
        graph = self.graph = pipeline.graph
        self.parents = graph.parents
        self.children = graph.children
        nodes = pipeline.nodes
        self.specs: dict[str, NodeBase] = {n.id: n for n in nodes}
        self.optional: dict[str, bool] = {n.id: n.optional for n in nodes}
        self.conditions = frozenset(n.id for n in nodes if traits_of(n.type).branches)
        self.takes_slot = {n.id: traits_of(n.type).takes_slot for n in nodes}
        self.gates = frozenset(n.id for n in nodes if n.gate == "hard")
        # Trigger `all_success` and no parent is a condition or optional: `decide_node` starts
        # such a node exactly when every parent succeeded (the usual node, decided in short).
        self.plain = {
            n.id: n.trigger == "all_success"
            and not any(p in self.conditions or self.optional[p] for p in self.parents[n.id])
            for n in nodes
        }
        self.limit = pipeline.max_concurrency
        self.fail_fast = pipeline.fail_fast

    @classmethod
    def of(cls, pipeline: Pipeline) -> Shape:
        """The pipeline's shape, kept on the (frozen) pipeline object itself: a copy made with
        `model_copy` carries the entry along, so it is trusted only for its own pipeline."""
        kept = pipeline.__dict__.get("_interlock_shape")
        if kept is not None and kept[0] is pipeline:
            shape: Shape = kept[1]
            return shape
        shape = cls(pipeline)
        pipeline.__dict__["_interlock_shape"] = (pipeline, shape)
        return shape


class Scheduler:
    """The scheduling of one execution of a run (see the module's contract)."""

    def __init__(self, shape: Shape, state: RunState) -> None:
        self.shape = shape
        self._ready: deque[str] = deque()  # every parent terminal, not decided yet
        self._remaining: dict[str, int] = {}  # unfinished parents of each undecided node
        self._running: set[str] = set()
        self._busy = 0  # running nodes that take a slot
        self._blocked: dict[str, str] = {}  # node -> the failed hard gate above it
        nodes = state.nodes
        for node_id, parents in shape.parents.items():
            if nodes[node_id].state in _TERMINAL:
                continue
            count = 0
            for parent in parents:
                if nodes[parent].state not in _TERMINAL:
                    count += 1
            self._remaining[node_id] = count
            if count == 0:
                self._ready.append(node_id)

    def step(
        self,
        state: RunState,
        finished: Iterable[str] = (),
        *,
        stopping: bool = False,
        may_start: bool = True,
    ) -> Decision:
        """The decision after the attempts of `finished` ended (their final events are in
        `state`). `may_start=False` holds back starts and skips (the record lags)."""
        stop = self.finished(state, finished)
        if stopping:
            stop = None
        decision = self.decide(state, stopping=stopping or stop is not None, may_start=may_start)
        decision.stop = stop
        return decision

    def finished(self, state: RunState, node_ids: Iterable[str]) -> Stop | None:
        """The first half of `step`: the nodes' attempts ended (their final events are in
        `state`); their children may become ready. Returns the stop fail_fast asks for."""
        stop = None
        for node_id in node_ids:
            wanted = self._finished(node_id, state)
            if stop is None:
                stop = wanted
        return stop

    def decide(self, state: RunState, *, stopping: bool, may_start: bool = True) -> Decision:
        """The second half of `step`: what starts and what is skipped now."""
        decision = Decision([], [])
        if not stopping and may_start and self._ready:
            self._decide(state, decision)
        decision.over = not self._running and (stopping or not self._ready)
        return decision

    def next_in_chain(self, state: RunState, node_id: str) -> str | None:
        """`step(state, [node_id])` in short for the usual step of a chain: `node_id`
        succeeded, nothing else waits to be decided, and its one child, whose one parent it
        is, starts. Returns that child, the bookkeeping left as `step` would leave it; or None
        with nothing changed, and `step` decides (the driver asks this once per chain node)."""
        shape = self.shape
        children = shape.children[node_id]
        if len(children) != 1 or self._ready or state.nodes[node_id].state is not _SUCCEEDED:
            return None
        child = children[0]
        if (
            self._remaining.get(child) != 1
            or len(shape.parents[child]) != 1
            or not shape.plain[child]
            or child in self._blocked
        ):
            return None
        busy = self._busy - shape.takes_slot[node_id]
        if shape.takes_slot[child]:
            if busy >= shape.limit:
                return None
            busy += 1
        self._busy = busy
        self._running.discard(node_id)
        self._running.add(child)
        del self._remaining[child]
        return child

    @property
    def has_ready(self) -> bool:
        """Whether nodes wait to be decided (the driver asks the record first)."""
        return bool(self._ready)

    def _finished(self, node_id: str, state: RunState) -> Stop | None:
        shape = self.shape
        self._running.discard(node_id)
        if shape.takes_slot[node_id]:
            self._busy -= 1
        stop = None
        status = state.nodes[node_id].state
        if status in _FAILED_OR_TIMED_OUT and not shape.optional[node_id]:
            if node_id in shape.gates and node_id in state.gate_failures:
                for descendant in shape.graph.descendants(node_id):
                    self._blocked.setdefault(descendant, node_id)
            if shape.fail_fast:
                stop = Stop(RunStatus.FAILED, f"fail_fast: node '{node_id}' failed", "error")
        self._release(node_id)
        return stop

    def _release(self, node_id: str) -> None:
        ready, remaining = self._ready, self._remaining
        for child in self.shape.children[node_id]:
            count = remaining.get(child)
            if count is not None:
                remaining[child] = count = count - 1
                if count == 0:
                    ready.append(child)

    def _decide(self, state: RunState, decision: Decision) -> None:
        shape = self.shape
        ready, nodes = self._ready, state.nodes
        skipped: dict[str, str] = {}  # decided skipped in this step, not yet in `state`
        while ready:
            node_id = ready[0]
            skip = None
            if node_id in self._blocked:
                skip = f"gate_failed:{self._blocked[node_id]}"
            elif shape.plain[node_id] and not skipped:
                for parent in shape.parents[node_id]:
                    if nodes[parent].state is not _SUCCEEDED:
                        skip = self._why(node_id, state, skipped)
                        break
            else:
                skip = self._why(node_id, state, skipped)
            if skip is not None:
                ready.popleft()
                del self._remaining[node_id]
                skipped[node_id] = skip
                decision.skip.append((node_id, skip))
                self._release(node_id)
                continue
            takes_slot = shape.takes_slot[node_id]
            if takes_slot and self._busy >= shape.limit:
                break
            ready.popleft()
            del self._remaining[node_id]
            self._running.add(node_id)
            if takes_slot:
                self._busy += 1
            decision.start.append(node_id)

    def _why(self, node_id: str, state: RunState, skipped: Mapping[str, str]) -> str | None:
        shape = self.shape
        return decide_node(
            shape.specs[node_id], shape.parents[node_id], state, shape.optional,
            shape.conditions, skipped,
        )
