"""The run diff is a pure function over two folded states: definitions, params, per node state,
attempts, durations and outputs, and the first node where the runs went apart."""

from __future__ import annotations

from typing import Any

from engine.diff import diff_runs, diff_text
from engine.state import NodeState, NodeStatus, RunState, RunStatus

DEFINITION: dict[str, Any] = {
    "id": "etl",
    "timeout": 60,
    "nodes": [
        {"id": "extract", "type": "shell", "command": "echo 1"},
        {"id": "transform", "type": "shell", "command": "echo 2", "needs": ["extract"]},
        {"id": "load", "type": "shell", "command": "echo 3", "needs": ["transform"]},
    ],
}


def _node(node_id: str, state: str, output: Any = None, *, attempts: int = 1,
          seconds: float = 1.0) -> NodeState:
    node = NodeState(node_id, "shell", state=NodeStatus(state), attempts=attempts, output=output)
    node.started_at = "2026-12-07T10:00:00.000000Z"
    node.ended_at = f"2026-12-07T10:00:{seconds:09.6f}Z"
    return node


def _run(run_id: str, nodes: list[NodeState], *, state: str = "succeeded",
         params: dict[str, Any] | None = None, definition: dict[str, Any] | None = None
         ) -> RunState:
    return RunState(
        run_id,
        pipeline_id="etl",
        state=RunStatus(state),
        params=params or {"env": "staging"},
        definition=definition or DEFINITION,
        nodes={n.node_id: n for n in nodes},
    )


def _good(run_id: str = "a") -> RunState:
    return _run(run_id, [
        _node("extract", "succeeded", {"rows": 3}),
        _node("transform", "succeeded", {"rows": 6}),
        _node("load", "succeeded", {"ok": True}),
    ])


def test_two_runs_with_the_same_definition_params_and_outcomes_are_identical() -> None:
    diff = diff_runs(_good("a"), _good("b"))

    assert diff.identical
    assert diff.first_divergence is None
    assert diff.to_dict()["nodes"]["load"]["differs"] == []
    assert "the runs match" in diff_text(diff)


def test_the_first_divergence_is_the_earliest_node_whose_outcome_differs() -> None:
    bad = _run("b", [
        _node("extract", "succeeded", {"rows": 3}),
        _node("transform", "succeeded", {"rows": 0}),
        _node("load", "failed", attempts=3),
    ], state="failed")

    diff = diff_runs(_good(), bad).to_dict()

    assert diff["first_divergence"] == {
        "node_id": "transform", "differs": ["output"],
        "state": {"a": "succeeded", "b": "succeeded"},
    }
    assert diff["nodes"]["load"]["state"] == {"a": "succeeded", "b": "failed"}
    assert diff["nodes"]["load"]["attempts"] == {"a": 1, "b": 3}
    assert diff["nodes"]["extract"]["differs"] == []
    assert diff["state"] == {"a": "succeeded", "b": "failed"}
    assert not diff["identical"]


def test_definition_changes_name_added_removed_and_changed_nodes_and_fields() -> None:
    changed = {
        "id": "etl",
        "timeout": 120,
        "nodes": [
            {"id": "extract", "type": "shell", "command": "echo 1"},
            {"id": "transform", "type": "shell", "command": "echo 22", "needs": ["extract"]},
            {"id": "publish", "type": "shell", "command": "echo 4", "needs": ["transform"]},
        ],
    }
    b = _run("b", [
        _node("extract", "succeeded", {"rows": 3}),
        _node("transform", "succeeded", {"rows": 6}),
        _node("publish", "succeeded", {"ok": True}),
    ], definition=changed)

    diff = diff_runs(_good(), b).to_dict()["definition"]

    assert diff == {
        "changed": True,
        "nodes_added": ["publish"],
        "nodes_removed": ["load"],
        "nodes_changed": {"transform": ["command"]},
        "pipeline_fields_changed": ["timeout"],
    }


def test_params_added_removed_and_changed_are_listed_with_both_values() -> None:
    b = _good("b")
    b.params = {"env": "prod", "rows": 9}
    a = _good("a")
    a.params = {"env": "staging", "old": True}

    params = diff_runs(a, b).to_dict()["params"]

    assert params == {
        "added": {"rows": 9},
        "removed": {"old": True},
        "changed": {"env": {"a": "staging", "b": "prod"}},
    }


def test_a_duration_differs_only_when_it_moved_well_beyond_noise() -> None:
    slow = _run("b", [
        _node("extract", "succeeded", {"rows": 3}, seconds=1.05),
        _node("transform", "succeeded", {"rows": 6}, seconds=9.0),
        _node("load", "succeeded", {"ok": True}),
    ])

    diff = diff_runs(_good(), slow)

    assert diff.nodes["extract"].differs == ()
    assert diff.nodes["transform"].differs == ("duration",)
    assert diff.nodes["transform"].duration == (1.0, 9.0)
    assert diff.identical  # a slower node alone is not a different outcome
    assert diff.first_divergence is None


def test_a_node_that_never_ran_has_no_duration_and_no_output_hash() -> None:
    b = _run("b", [
        _node("extract", "failed"),
        NodeState("transform", "shell", state=NodeStatus.SKIPPED),
        NodeState("load", "shell", state=NodeStatus.SKIPPED),
    ], state="failed")

    node = diff_runs(_good(), b).to_dict()["nodes"]["transform"]

    assert node["duration"]["b"] is None
    assert node["output_hash"]["b"] is None
    assert node["output_hash"]["a"] is not None
    assert diff_runs(_good(), b).first_divergence == "extract"
