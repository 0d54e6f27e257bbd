"""The scheduler's pure step (`engine.scheduler`), without an event loop: what starts, what is
skipped and why, fail_fast, stops, the concurrency limit, and when the run is over."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.events import EventType, new_event
from engine.loader import load_dict
from engine.scheduler import Decision, Scheduler, Shape
from engine.state import NodeStatus, RunState, RunStatus, apply
from engine.traits import TRAITS, traits_of

OUTCOMES = {
    "ok": EventType.NODE_SUCCEEDED,
    "fail": EventType.NODE_FAILED,
    "timeout": EventType.NODE_TIMED_OUT,
    "cancel": EventType.NODE_CANCELLED,
}


class Sim:
    """A run's state kept by folding the events a driver would emit, and its scheduler."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.pipeline = load_dict({"id": "sim", **raw}, file="<test>")
        self.state = RunState("run")
        self.seq = itertools.count(1)
        definition = self.pipeline.snapshot()
        data = {"pipeline_id": "sim", "definition": definition}
        self.emit(EventType.RUN_CREATED, None, data=data)
        self.scheduler = Scheduler(Shape.of(self.pipeline), self.state)
        self.decisions: list[Decision] = []

    def emit(self, event_type: str, node_id: str | None, **fields: Any) -> None:
        event = new_event(
            f"e{next(self.seq)}", self.state.last_seq + 1, event_type, "run",
            "2026-12-07T00:00:00.000000Z", "engine", fields.get("attempt", 1), node_id,
            fields.get("error_class"), fields.get("reason"), None, None, fields.get("data"),
        )
        apply(self.state, event)

    def act(self, decision: Decision) -> Decision:
        """What the driver does with a decision: skips recorded, starts started."""
        for node_id, reason in decision.skip:
            self.emit(EventType.NODE_SKIPPED, node_id, reason=reason)
        for node_id in decision.start:
            self.emit(EventType.NODE_STARTED, node_id)
        self.decisions.append(decision)
        return decision

    def begin(self) -> Decision:
        return self.act(self.scheduler.step(self.state))

    def record(self, node_id: str, how: str = "ok", output: Any = None) -> None:
        """The events of a node's end, folded into the state (the scheduler not told yet)."""
        data = {"output": output or {}} if how == "ok" else None
        error = "gate" if how == "fail" and node_id in self.scheduler.shape.gates else None
        self.emit(OUTCOMES[how], node_id, data=data, error_class=error, reason=how)
        if error == "gate":
            self.emit(EventType.GATE_FAILED, node_id, error_class="gate", reason=how)

    def end(
        self, node_id: str, how: str = "ok", output: Any = None, *, stopping: bool = False,
        may_start: bool = True,
    ) -> Decision:
        self.record(node_id, how, output)
        decision = self.scheduler.step(
            self.state, [node_id], stopping=stopping, may_start=may_start
        )
        return self.act(decision)


def nodes(*specs: tuple[str, list[str]] | tuple[str, list[str], dict[str, Any]]) -> list[Any]:
    out = []
    for spec in specs:
        node_id, needs, *extra = spec
        out.append({"id": node_id, "type": "python", "call": "m:f", "needs": needs,
                    **(extra[0] if extra else {})})
    return out


# ---------------------------------------------------------------------------------------------
# table: one step after another


def test_sources_start_first_and_a_child_starts_when_its_parent_succeeds() -> None:
    sim = Sim({"nodes": nodes(("a", []), ("b", ["a"]), ("c", ["b"]))})
    assert sim.begin().start == ["a"]
    assert sim.end("a").start == ["b"]
    assert sim.end("b").start == ["c"]
    last = sim.end("c")
    assert last.start == [] and last.over


@pytest.mark.parametrize(
    ("trigger", "outcome", "expected"),
    [
        ("all_success", "ok", None),
        ("all_success", "fail", "upstream_failed"),
        ("all_success", "timeout", "upstream_failed"),
        ("all_done", "fail", None),
        ("one_failed", "fail", None),
        ("one_failed", "ok", "no_upstream_failed"),
        ("none_failed", "ok", None),
        ("none_failed", "fail", "upstream_failed"),
    ],
)
def test_a_trigger_rule_starts_or_skips_with_its_reason(
    trigger: str, outcome: str, expected: str | None
) -> None:
    sim = Sim({"nodes": nodes(("a", []), ("b", ["a"], {"trigger": trigger}))})
    sim.begin()
    decision = sim.end("a", outcome)
    if expected is None:
        assert decision.start == ["b"] and decision.skip == []
    else:
        assert decision.skip == [("b", expected)] and decision.over


def test_a_skip_propagates_in_the_same_step_and_an_all_done_node_still_runs() -> None:
    sim = Sim({"nodes": nodes(
        ("a", []), ("b", ["a"]), ("c", ["b"]), ("d", ["c"], {"trigger": "all_done"}),
    )})
    sim.begin()
    decision = sim.end("a", "fail")
    assert decision.skip == [("b", "upstream_failed"), ("c", "upstream_skipped")]
    assert decision.start == ["d"]


def test_a_condition_picks_its_branch_through_when() -> None:
    sim = Sim({"nodes": [
        {"id": "check", "type": "condition", "expr": "true"},
        *nodes(("yes", ["check"]), ("no", ["check"], {"when": {"check": False}})),
    ]})
    sim.begin()
    decision = sim.end("check", output={"result": True})
    assert decision.start == ["yes"]
    assert decision.skip == [("no", "branch_not_taken")]


def test_an_optional_nodes_failure_lets_its_children_run() -> None:
    sim = Sim({"nodes": nodes(("a", [], {"optional": True}), ("b", ["a"]))})
    sim.begin()
    assert sim.end("a", "fail").start == ["b"]


def test_a_failed_hard_gate_skips_every_descendant_as_gate_failed() -> None:
    sim = Sim({"nodes": nodes(
        ("gate", [], {"gate": "hard"}), ("b", ["gate"], {"trigger": "all_done"}), ("c", ["b"]),
    )})
    sim.begin()
    decision = sim.end("gate", "fail")
    assert decision.skip == [("b", "gate_failed:gate"), ("c", "gate_failed:gate")]


def test_fail_fast_asks_for_the_stop_and_nothing_starts_after_it() -> None:
    sim = Sim({"fail_fast": True, "nodes": nodes(("a", []), ("b", []), ("c", ["a"]))})
    assert sim.begin().start == ["a", "b"]
    decision = sim.end("a", "fail")
    assert decision.stop is not None and decision.stop.status is RunStatus.FAILED
    assert "fail_fast: node 'a' failed" in decision.stop.reason
    assert decision.start == [] and decision.skip == [] and not decision.over  # b still runs
    assert sim.end("b", "cancel", stopping=True).over


def test_an_optional_node_failing_does_not_fail_fast() -> None:
    sim = Sim({"fail_fast": True, "nodes": nodes(("a", [], {"optional": True}), ("b", ["a"]))})
    sim.begin()
    decision = sim.end("a", "fail")
    assert decision.stop is None and decision.start == ["b"]


def test_the_concurrency_limit_holds_starts_back_until_a_slot_frees() -> None:
    sim = Sim({"max_concurrency": 2, "nodes": nodes(("a", []), ("b", []), ("c", []))})
    assert sim.begin().start == ["a", "b"]
    assert sim.end("a").start == ["c"]


def test_an_approval_takes_no_slot() -> None:
    sim = Sim({"max_concurrency": 1, "nodes": [
        {"id": "ask", "type": "approval"}, *nodes(("a", []), ("b", [])),
    ]})
    assert sim.begin().start == ["ask", "a"]


def test_a_stopping_run_starts_nothing_and_is_over_when_nothing_runs() -> None:
    sim = Sim({"nodes": nodes(("a", []), ("b", ["a"]))})
    sim.begin()
    decision = sim.end("a", stopping=True)
    assert decision.start == [] and decision.over


def test_held_back_starts_wait_for_the_record_then_go() -> None:
    sim = Sim({"nodes": nodes(("a", []), ("b", ["a"]))})
    sim.begin()
    held = sim.end("a", may_start=False)
    assert held.start == [] and not held.over
    assert sim.act(sim.scheduler.step(sim.state)).start == ["b"]


def test_a_resumed_run_schedules_from_its_state() -> None:
    sim = Sim({"nodes": nodes(("a", []), ("b", ["a"]), ("c", ["b"]))})
    sim.begin()
    sim.end("a")  # b started
    fresh = Scheduler(Shape.of(sim.pipeline), sim.state)  # as after a crash: b still "running"
    assert fresh.step(sim.state).start == ["b"]


def test_the_shape_is_kept_on_the_pipeline_but_not_on_a_copy() -> None:
    pipeline = Sim({"nodes": nodes(("a", []))}).pipeline
    assert Shape.of(pipeline) is Shape.of(pipeline)
    assert Shape.of(pipeline.model_copy()) is not Shape.of(pipeline)


def test_every_built_in_type_has_its_traits_and_plugins_do_work() -> None:
    assert traits_of("approval").takes_slot is False
    assert traits_of("condition").branches and not traits_of("condition").has_breaker
    assert traits_of("some.plugin").does_work and traits_of("some.plugin").has_breaker
    assert {"shell", "python", "agent", "action"} == {t for t, v in TRAITS.items() if v.does_work}


# ---------------------------------------------------------------------------------------------
# property: any DAG, any outcomes, any order of completion


@st.composite
def runs(draw: st.DrawFn) -> tuple[dict[str, Any], list[str], list[int]]:
    count = draw(st.integers(1, 12))
    specs = []
    for i in range(count):
        needs = sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else []
        extra: dict[str, Any] = {
            "trigger": draw(st.sampled_from(["all_success", "all_done", "one_failed",
                                             "none_failed"])),
        }
        if draw(st.booleans()):
            extra["optional"] = True
        specs.append((f"n{i}", [f"n{j}" for j in needs], extra))
    raw = {
        "max_concurrency": draw(st.integers(1, 4)),
        "fail_fast": draw(st.booleans()),
        "nodes": nodes(*specs),
    }
    outcomes = draw(st.lists(st.sampled_from(["ok", "fail", "timeout"]), min_size=count,
                             max_size=count))
    picks = draw(st.lists(st.integers(0, 1000), min_size=count, max_size=count))
    return raw, outcomes, picks


@settings(max_examples=150, deadline=None)
@given(runs())
def test_every_node_ends_exactly_once_never_before_its_parents(
    case: tuple[dict[str, Any], list[str], list[int]],
) -> None:
    raw, outcomes, picks = case
    sim = Sim(raw)
    limit = raw["max_concurrency"]
    decided: list[str] = []
    running: list[str] = []
    stopping = False
    decision = sim.begin()
    step = 0
    while True:
        for node_id, _ in decision.skip:
            decided.append(node_id)
        for node_id in decision.start:
            parents = sim.pipeline.graph.parents[node_id]
            assert all(sim.state.nodes[p].is_terminal for p in parents)
            decided.append(node_id)
            running.append(node_id)
        assert len(running) <= limit
        stopping = stopping or decision.stop is not None
        if decision.over:
            break
        assert running, "not over, yet nothing runs"
        node_id = running.pop(picks[step % len(picks)] % len(running))
        how = "cancel" if stopping else outcomes[int(node_id[1:])]
        decision = sim.end(node_id, how, stopping=stopping)
        step += 1
    assert sorted(decided) == sorted(set(decided)), "a node was decided twice"
    if not stopping:
        assert set(decided) == set(sim.state.nodes), "a node was never decided"
        assert all(node.is_terminal for node in sim.state.nodes.values())
    else:
        assert not running
        assert all(
            node.state in (NodeStatus.PENDING, NodeStatus.CANCELLED) or node.is_terminal
            for node in sim.state.nodes.values()
        )


def books(scheduler: Scheduler) -> tuple[Any, ...]:
    """What a scheduler keeps between steps."""
    return (
        list(scheduler._ready), dict(scheduler._remaining), set(scheduler._running),
        scheduler._busy, dict(scheduler._blocked),
    )


def test_next_in_chain_starts_a_chains_next_node_and_declines_the_rest() -> None:
    sim = Sim({"nodes": nodes(("a", []), ("b", ["a"]), ("c", ["b"]), ("d", ["b"]),
                              ("e", ["c", "d"]))})
    sim.begin()
    sim.record("a")
    assert sim.scheduler.next_in_chain(sim.state, "a") == "b"  # one child, one parent
    sim.act(Decision(["b"], []))
    sim.record("b")
    assert sim.scheduler.next_in_chain(sim.state, "b") is None  # two children: `step`
    assert sim.act(sim.scheduler.step(sim.state, ["b"])).start == ["c", "d"]
    sim.record("c")
    assert sim.scheduler.next_in_chain(sim.state, "c") is None  # e waits for d too
    sim.record("d", "fail")
    assert sim.scheduler.next_in_chain(sim.state, "d") is None  # failed: `step` skips e


@settings(max_examples=150, deadline=None)
@given(runs())
def test_next_in_chain_is_the_step_in_short_or_changes_nothing(
    case: tuple[dict[str, Any], list[str], list[int]],
) -> None:
    raw, outcomes, picks = case
    sim = Sim(raw)
    running = list(sim.begin().start)
    step = 0
    while running:
        node_id = running.pop(picks[step % len(picks)] % len(running))
        step += 1
        sim.record(node_id, outcomes[int(node_id[1:])])
        shape = sim.scheduler.shape
        twin = copy.deepcopy(sim.scheduler, {id(shape): shape})  # the shape is shared
        before = books(sim.scheduler)
        expected = twin.step(sim.state, [node_id])
        child = sim.scheduler.next_in_chain(sim.state, node_id)
        if child is None:
            assert books(sim.scheduler) == before
        else:
            assert expected.start == [child] and not expected.skip
            assert expected.stop is None and not expected.over
            assert books(sim.scheduler) == books(twin)
        sim.scheduler = twin
        decision = sim.act(expected)
        if decision.stop is not None:
            break
        running += decision.start
