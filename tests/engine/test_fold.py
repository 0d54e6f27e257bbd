"""`fold(events)` is the one view of a run: it equals the executor's live state, survives the
JSON round trip the store makes, and is pure."""

from __future__ import annotations

import asyncio
import copy
from typing import TYPE_CHECKING, Any

import pytest

from engine.api import callable_ref
from engine.breaker import BreakerRegistry
from engine.errors import TransientError
from engine.events import Event, EventType
from engine.manager import RunManager
from engine.state import NodeStatus, RunStatus, apply, fold, state_to_dict

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import MakePipeline, Recorder

    from engine.nodes import NodeContext


async def instant(delay: float) -> None:
    return None


async def stuck(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    await asyncio.sleep(30)
    return {}


def busy_pipeline(tmp_path: Path) -> dict[str, Any]:
    """A run touching most event types: retries, logs, branches, skips, an approval, a
    breaker, an artifact, a timeout."""
    attempts: list[int] = []

    async def flaky(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
        attempts.append(payload["attempt"])
        if len(attempts) < 3:
            raise TransientError("not yet")
        return {"rows": 7}

    async def broken(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
        raise ValueError("always")

    artifact = tmp_path / "out.txt"
    artifact.write_text("hello\n")
    return {
        "id": "busy",
        "nodes": [
            {"id": "fetch", "type": "python", "call": callable_ref(flaky),
             "retry": {"max_attempts": 3}},
            {"id": "talk", "type": "shell",
             "command": ["sh", "-c", "echo one; echo two >&2; echo '{\"n\": 2}'"]},
            {"id": "many", "type": "condition", "expr": "fetch.rows > 5",
             "needs": ["fetch"]},
            {"id": "few", "type": "action", "message": "few", "needs": ["many"],
             "when": {"many": False}},
            {"id": "ok", "type": "approval", "needs": ["many"]},
            {"id": "save", "type": "action", "artifact": str(artifact), "needs": ["ok"]},
            {"id": "fragile", "type": "python", "call": callable_ref(broken),
             "optional": True, "breaker": {"failure_threshold": 1}},
            {"id": "slow", "type": "python", "call": callable_ref(stuck), "timeout": 0.05,
             "optional": True},
        ],
    }


async def test_folding_the_emitted_events_gives_the_live_state(
    make_pipeline: MakePipeline, recorder: Recorder, tmp_path: Path
) -> None:
    pipeline = make_pipeline(busy_pipeline(tmp_path))
    async with RunManager(sinks=[recorder], sleep=instant) as manager:
        handle = await manager.start(pipeline)
        await recorder.wait_for(EventType.APPROVAL_REQUESTED, "ok")
        # Mid-run too, the fold of what was emitted so far is the live state.
        assert fold(recorder.of(handle.run_id)) == handle.state
        manager.approve(handle.run_id, "ok", actor="operator:eve", reason="fine")
        state = await handle.wait(10)
    events = recorder.of(handle.run_id)
    kinds = {e.event_type for e in events}
    assert kinds >= {
        "node.retried", "node.log", "node.skipped", "approval.granted",
        "breaker.state_changed", "artifact.emitted", "node.timed_out",
    }
    assert fold(events) == handle.state == state
    assert state.state is RunStatus.SUCCEEDED
    assert state.nodes["fetch"].attempts == 3
    assert state.nodes["few"].state is NodeStatus.SKIPPED
    assert state.nodes["ok"].decision is not None
    assert state.nodes["ok"].decision["actor"] == "operator:eve"


async def test_folding_events_read_back_from_json_gives_the_same_state(
    make_pipeline: MakePipeline, recorder: Recorder, tmp_path: Path
) -> None:
    pipeline = make_pipeline(busy_pipeline(tmp_path))
    async with RunManager(
        sinks=[recorder], sleep=instant, breakers=BreakerRegistry()
    ) as manager:
        handle = await manager.start(pipeline)
        await recorder.wait_for(EventType.APPROVAL_REQUESTED, "ok")
        manager.reject(handle.run_id, "ok", actor="cli", reason="no")
        state = await handle.wait(10)
    stored = [Event.from_json(e.to_json()) for e in recorder.of(handle.run_id)]
    assert fold(stored) == state
    assert state_to_dict(fold(stored)) == state_to_dict(state)


async def test_fold_is_pure_and_leaves_the_events_as_they_were(
    make_pipeline: MakePipeline, recorder: Recorder, tmp_path: Path
) -> None:
    pipeline = make_pipeline(busy_pipeline(tmp_path))
    async with RunManager(sinks=[recorder], sleep=instant) as manager:
        handle = await manager.start(pipeline)
        await recorder.wait_for(EventType.APPROVAL_REQUESTED, "ok")
        manager.approve(handle.run_id, "ok")
        await handle.wait(10)
    events = recorder.of(handle.run_id)
    before = copy.deepcopy([e.to_dict() for e in events])
    first = fold(events)
    second = fold(events)
    assert first == second
    assert first is not second
    assert [e.to_dict() for e in events] == before


def event(seq: int, event_type: str, node_id: str | None = None, **fields: Any) -> Event:
    return Event(
        event_id=f"e{seq}",
        seq=seq,
        event_type=event_type,
        run_id="r1",
        timestamp_utc=f"2024-01-01T00:00:{seq:02d}.000000Z",
        node_id=node_id,
        **fields,
    )


def test_fold_follows_a_node_through_its_attempts() -> None:
    definition = {"id": "p", "nodes": [{"id": "a", "type": "shell", "command": "x"}]}
    events = [
        event(1, "run.created", data={"pipeline_id": "p", "definition": definition,
                                      "params": {"k": 1}}),
        event(2, "run.state_changed", data={"from": "pending", "to": "running"}),
        event(3, "node.started", "a", data={"timeout": 5}),
        event(4, "node.log", "a", data={"stream": "stdout", "line": "hi"}),
        event(5, "node.retried", "a", error_class="transient", reason="later",
              data={"delay": 0.5}),
        event(6, "node.started", "a", attempt=2, data={"timeout": 5}),
        event(7, "node.succeeded", "a", attempt=2, data={"output": {"x": 1}}),
        event(8, "run.completed", data={"state": "succeeded"}),
    ]
    partial = fold(events[:5])
    assert partial.state is RunStatus.RUNNING
    assert partial.nodes["a"].state is NodeStatus.RETRYING
    assert partial.nodes["a"].retry_delay == 0.5
    assert partial.nodes["a"].logs == ["hi"]
    state = fold(events)
    node = state.nodes["a"]
    assert state.state is RunStatus.SUCCEEDED
    assert state.params == {"k": 1}
    assert state.last_seq == 8
    assert node.state is NodeStatus.SUCCEEDED
    assert node.attempts == 2
    assert node.output == {"x": 1}
    assert [(r.attempt, r.outcome, r.error_class) for r in node.history] == [
        (1, "retrying", "transient"),
        (2, "succeeded", None),
    ]
    # apply, one event at a time, is what fold does.
    stepwise = fold(events[:1])
    for e in events[1:]:
        apply(stepwise, e)
    assert stepwise == state


def test_an_approval_decision_is_folded_with_its_actor_and_reason() -> None:
    definition = {"id": "p", "nodes": [{"id": "ok", "type": "approval"}]}
    state = fold(
        [
            event(1, "run.created", data={"pipeline_id": "p", "definition": definition}),
            event(2, "node.started", "ok"),
            event(3, "approval.requested", "ok"),
            event(4, "approval.rejected", "ok", actor="operator:ann", reason="too risky"),
            event(5, "node.failed", "ok", error_class="rejected", reason="too risky"),
        ]
    )
    assert state.nodes["ok"].decision == {
        "decision": "rejected",
        "actor": "operator:ann",
        "at": "2024-01-01T00:00:04.000000Z",
        "reason": "too risky",
    }
    assert state.nodes["ok"].error_class == "rejected"


def test_folding_no_events_needs_a_run_id() -> None:
    assert fold([], run_id="r9").state is RunStatus.PENDING
    with pytest.raises(ValueError, match="run id"):
        fold([])


def test_a_runs_nodes_need_their_needs_and_edges_as_the_runs_graph_says() -> None:
    definition = {
        "id": "p",
        "nodes": [
            {"id": "a", "type": "shell", "command": "x"},
            {"id": "b", "type": "python", "call": "m:f", "needs": ["a"]},
            {"id": "c", "type": "approval"},
        ],
        "edges": [{"from": "b", "to": "c"}, {"from": "a", "to": "c"}],
    }
    state = fold([event(1, "run.created", data={"pipeline_id": "p", "definition": definition})])
    assert [(n.node_id, n.node_type, n.needs) for n in state.nodes.values()] == [
        ("a", "shell", ()),
        ("b", "python", ("a",)),
        ("c", "approval", ("b", "a")),
    ]
    assert state.graph is not None
    assert state.graph.order == ["a", "b", "c"]
    assert dict(state.graph.parents) == {n.node_id: n.needs for n in state.nodes.values()}
    # The same definition object read again: the same graph; an equal one: an equal state.
    again = fold([event(1, "run.created", data={"pipeline_id": "p", "definition": definition})])
    assert again.graph is state.graph
    copied = copy.deepcopy(definition)
    assert fold([event(1, "run.created", data={"definition": copied, "pipeline_id": "p"})]) == state


def test_a_definition_with_a_cycle_is_folded_without_its_edges() -> None:
    # Never written by the engine, but a log imported from elsewhere may say anything.
    definition = {
        "id": "p",
        "nodes": [{"id": "a", "type": "shell", "needs": ["b"]}, {"id": "b", "type": "shell"}],
        "edges": [{"from": "a", "to": "b"}],
    }
    state = fold(
        [
            event(1, "run.created", data={"pipeline_id": "p", "definition": definition}),
            event(2, "node.started", "a"),
        ]
    )
    assert state.graph is None
    assert [(n.node_id, n.needs) for n in state.nodes.values()] == [("a", ()), ("b", ())]
    assert state.nodes["a"].state is NodeStatus.RUNNING
