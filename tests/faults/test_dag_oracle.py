"""Random valid DAGs always terminate, and every node ends where the rules say it must.

The expected end of every node is worked out by `oracle`, written from DESIGN section 4 alone
(it does not import the executor's `decide_node`): from the parents' final states, the trigger
rules, condition results and `when`, `optional`, and hard-gate ancestry; and, for a node that
runs, from its planned attempt outcomes and its retry policy. The run itself goes through the
real `RunManager`, with a no-wait `sleep` injected so backoff and delays cost nothing.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.bus import MemorySink
from engine.events import EventType
from engine.loader import load_dict
from engine.manager import RunManager
from engine.state import NodeStatus, RunState, RunStatus, fold
from faults.helpers import FAULT_SETTINGS, no_wait, report, seqs_are_gap_free
from faults.work import PLANS, Plan

MAX_NODES = 60
MAX_SHELL = 3
TINY_TIMEOUT = 0.01  # only on async nodes whose "ok" attempts never suspend, so never flaky
RULES = ("all_success", "none_failed", "all_done", "one_failed")
KINDS = ("python",) * 12 + ("python_sync",) * 2 + ("shell",) + ("delay",) * 2 + ("condition",) * 3
CLASS_OF = {"transient": "transient", "error": "error", "timeout": "timeout"}
EXIT_CODE = {"transient": 75, "error": 1}
_ids = itertools.count()


@dataclass(frozen=True)
class NodeSpec:
    id: str
    kind: str  # python, python_sync, shell, delay, condition
    needs: tuple[str, ...]
    trigger: str = "all_success"
    optional: bool = False
    gate: bool = False
    when: dict[str, bool] = field(default_factory=dict)
    max_attempts: int = 1
    retry_on: tuple[str, ...] = ("transient", "timeout")
    outcomes: tuple[str, ...] = ("ok",)
    value: int = 0
    reads: str | None = None  # condition: `<reads>.v >= threshold`; None: a constant
    threshold: int = 0
    constant: bool = True

    def raw(self) -> dict[str, Any]:
        node: dict[str, Any] = {"id": self.id, "needs": list(self.needs), "trigger": self.trigger}
        if self.optional:
            node["optional"] = True
        if self.gate:
            node["gate"] = "hard"
        if self.when:
            node["when"] = dict(self.when)
        node["retry"] = {"max_attempts": self.max_attempts, "on": list(self.retry_on)}
        if self.kind in ("python", "python_sync"):
            node["type"] = "python"
            node["call"] = "faults.work:planned" + ("_sync" if self.kind == "python_sync" else "")
            if "timeout" in self.outcomes:
                node["timeout"] = TINY_TIMEOUT
        elif self.kind == "shell":
            node["type"] = "shell"
            node["command"] = ["sh", "-c", self.script()]
        elif self.kind == "delay":
            node["type"] = "delay"
            node["duration"] = "5ms"
        else:
            node["type"] = "condition"
            node["expr"] = (
                f"{self.reads}.v >= {self.threshold}"
                if self.reads
                else ("true" if self.constant else "false")
            )
        return node

    def script(self) -> str:
        def step(outcome: str) -> str:
            if outcome == "ok":
                return f"echo '{{\"v\": {self.value}}}'; exit 0"
            return f"exit {EXIT_CODE[outcome]}"

        cases = [f"{n}) {step(o)};;" for n, o in enumerate(self.outcomes[:-1], start=1)]
        return f'case "$INTERLOCK_ATTEMPT" in {" ".join(cases)} *) {step(self.outcomes[-1])};; esac'


# ---------------------------------------------------------------------------------------------
# the oracle


@dataclass(frozen=True)
class Expected:
    status: NodeStatus
    attempts: int = 0
    error_class: str | None = None
    skip_reasons: frozenset[str] = frozenset()
    result: bool | None = None  # a condition's branch
    value: int | None = None


def oracle(specs: list[NodeSpec]) -> tuple[dict[str, Expected], RunStatus]:
    """Each node's expected end, in file order (parents always come first here)."""
    by_id = {s.id: s for s in specs}
    ancestors: dict[str, set[str]] = {}
    out: dict[str, Expected] = {}
    failed_gates: set[str] = set()
    for spec in specs:
        ancestors[spec.id] = set(spec.needs).union(*(ancestors[p] for p in spec.needs))
        blocking = ancestors[spec.id] & failed_gates
        if blocking:
            reasons = frozenset(f"gate_failed:{g}" for g in blocking)
            out[spec.id] = Expected(NodeStatus.SKIPPED, skip_reasons=reasons)
            continue
        skip = _trigger_verdict(spec, by_id, out)
        if skip is not None:
            out[spec.id] = Expected(NodeStatus.SKIPPED, skip_reasons=frozenset({skip}))
            continue
        result = _run(spec, out)
        if spec.gate and result.status is not NodeStatus.SUCCEEDED:
            failed_gates.add(spec.id)
            result = Expected(NodeStatus.FAILED, result.attempts, "gate")
        out[spec.id] = result
    failed = failed_gates or any(
        e.status in (NodeStatus.FAILED, NodeStatus.TIMED_OUT) and not by_id[n].optional
        for n, e in out.items()
    )
    return out, RunStatus.FAILED if failed else RunStatus.SUCCEEDED


def _trigger_verdict(
    spec: NodeSpec, by_id: dict[str, NodeSpec], done: dict[str, Expected]
) -> str | None:
    """None if the node's trigger rule holds over its parents' ends, else the skip reason."""
    succeeded = failed = skipped = 0
    off_branch = False
    for parent in spec.needs:
        end = done[parent]
        if end.status is NodeStatus.SUCCEEDED:
            if end.result is not None and end.result is not spec.when.get(parent, True):
                skipped += 1  # the condition chose the other branch
                off_branch = True
            else:
                succeeded += 1
        elif end.status in (NodeStatus.FAILED, NodeStatus.TIMED_OUT):
            if by_id[parent].optional:
                succeeded += 1  # an optional failure is recorded; dependents treat it as done
            else:
                failed += 1
        else:
            skipped += 1
    not_taken = "branch_not_taken" if off_branch else "upstream_skipped"
    if spec.trigger == "all_done":
        return None
    if spec.trigger == "one_failed":
        return None if failed else "no_upstream_failed"
    if failed:
        return "upstream_failed"
    if spec.trigger == "none_failed":
        return None if succeeded or not spec.needs else not_taken
    return not_taken if skipped else None


def _run(spec: NodeSpec, done: dict[str, Expected]) -> Expected:
    """The end of a node that starts: its attempts under its retry policy."""
    if spec.kind == "delay":
        return Expected(NodeStatus.SUCCEEDED, 1)
    if spec.kind == "condition":
        if spec.reads is None:
            return Expected(NodeStatus.SUCCEEDED, 1, result=spec.constant)
        parent = done[spec.reads]
        if parent.status is NodeStatus.SUCCEEDED:
            assert parent.value is not None
            return Expected(NodeStatus.SUCCEEDED, 1, result=parent.value >= spec.threshold)
        outcomes: tuple[str, ...] = ("error",)  # the name it reads is not there: every attempt
    else:
        outcomes = spec.outcomes
    plan = Plan(outcomes)
    limit = 1 if spec.gate else spec.max_attempts
    for attempt in range(1, limit + 1):
        outcome = plan.outcome(attempt)
        if outcome == "ok":
            return Expected(NodeStatus.SUCCEEDED, attempt, value=spec.value)
        if attempt == limit or CLASS_OF[outcome] not in spec.retry_on:
            status = NodeStatus.TIMED_OUT if outcome == "timeout" else NodeStatus.FAILED
            return Expected(status, attempt, CLASS_OF[outcome])
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------------
# random DAGs


@st.composite
def dags(draw: st.DrawFn) -> list[NodeSpec]:
    count = draw(st.integers(1, MAX_NODES))
    specs: list[NodeSpec] = []
    shells = 0
    for i in range(count):
        node_id = f"n{i}"
        needs: tuple[str, ...] = ()
        if i:
            picks = draw(st.lists(st.integers(max(0, i - 12), i - 1), max_size=3, unique=True))
            needs = tuple(f"n{p}" for p in sorted(picks))
        kind = draw(st.sampled_from(KINDS))
        if kind == "shell":
            shells += 1
            kind = "shell" if shells <= MAX_SHELL else "python"
        parents = [s for s in specs if s.id in needs]
        conditions = [p.id for p in parents if p.kind == "condition"]
        when = {c: draw(st.booleans()) for c in conditions if draw(st.booleans())}
        possible: tuple[str, ...] = ("ok",) * 6 + ("transient", "error")
        if kind == "python":
            possible += ("timeout",)
        outcomes = tuple(draw(st.lists(st.sampled_from(possible), min_size=1, max_size=4)))
        gate = draw(st.integers(0, 24)) == 0
        reads: str | None = None
        if kind == "condition":
            readable = [p.id for p in parents if p.kind in ("python", "python_sync", "shell")]
            if draw(st.booleans()) and readable:
                reads = draw(st.sampled_from(readable))
        specs.append(
            NodeSpec(
                id=node_id,
                kind=kind,
                needs=needs,
                trigger=draw(st.sampled_from(RULES)) if draw(st.booleans()) else "all_success",
                optional=not gate and draw(st.integers(0, 5)) == 0,
                gate=gate,
                when=when,
                max_attempts=draw(st.integers(1, 4)),
                retry_on=tuple(
                    draw(st.lists(st.sampled_from(("transient", "timeout", "error")), unique=True))
                ),
                outcomes=outcomes,
                value=draw(st.integers(0, 9)),
                reads=reads,
                threshold=draw(st.integers(0, 9)),
                constant=draw(st.booleans()),
            )
        )
    return specs


async def _execute(raw: dict[str, Any]) -> tuple[RunState, RunState, list[Any]]:
    pipeline = load_dict(raw, file="<random dag>")
    memory = MemorySink()
    async with RunManager(sinks=[memory], sleep=no_wait) as manager:
        handle = await manager.start(pipeline)
        live = await handle.wait(30)
        assert handle.state is live
    return live, fold(memory.of(handle.run_id)), memory.of(handle.run_id)


@settings(FAULT_SETTINGS, max_examples=100)
@given(specs=dags(), max_concurrency=st.integers(1, 8))
def random_dags_end_where_the_rules_put_them(specs: list[NodeSpec], max_concurrency: int) -> None:
    pipeline_id = f"dag-{next(_ids)}"
    PLANS[pipeline_id] = {s.id: Plan(s.outcomes, s.value) for s in specs}
    raw = {
        "id": pipeline_id,
        "max_concurrency": max_concurrency,
        "cleanup_grace": "50ms",
        "nodes": [s.raw() for s in specs],
    }
    try:
        live, folded, events = asyncio.run(_execute(raw))
    finally:
        del PLANS[pipeline_id]

    expected, run_status = oracle(specs)
    assert folded == live, "the fold of the events differs from the live state"
    assert seqs_are_gap_free(events)
    assert [e.event_type for e in events].count(EventType.RUN_COMPLETED) == 1
    assert events[-1].event_type == EventType.RUN_COMPLETED
    assert set(live.nodes) == set(expected)
    for node_id, want in expected.items():
        got = live.nodes[node_id]
        where = f"node {node_id} ({got.state.value}, reason {got.reason!r})"
        assert got.is_terminal, where
        assert got.state is want.status, f"{where}: expected {want.status.value}"
        starts = [e for e in events if e.event_type == "node.started" and e.node_id == node_id]
        if want.status is NodeStatus.SKIPPED:
            assert got.reason in want.skip_reasons, f"{where}: expected one of {want.skip_reasons}"
            assert starts == [], where
            continue
        assert got.attempts == want.attempts == len(starts), f"{where}: attempts {got.attempts}"
        if want.status is NodeStatus.SUCCEEDED:
            if want.result is not None:
                assert got.output == {"result": want.result}, where
            elif want.value is not None:
                assert got.output == {"v": want.value}, where
        else:
            assert got.error_class == want.error_class, f"{where}: class {got.error_class}"
    assert live.state is run_status, f"run ended {live.state.value}: {live.reason}"
    seen["runs"] += 1
    seen["nodes"] += len(specs)
    seen.update(n.state.value for n in live.nodes.values())


seen: Counter[str] = Counter()


def test_random_dags_terminate_with_every_node_where_the_rules_put_it() -> None:
    seen.clear()
    random_dags_end_where_the_rules_put_them()
    report(f"random DAGs: {dict(seen)}")
