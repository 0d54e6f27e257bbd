"""One node alone, in the engine: its inputs worked out from a run or given, the seed events a
run of only that node starts from, and the run itself (nothing else starts)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from engine.bus import MemorySink
from engine.single_node import SingleNodeError, inputs_for, run_alone, seed_events
from engine.state import NodeStatus, RunStatus, fold

if TYPE_CHECKING:
    from conftest import MakePipeline

CHAIN: dict[str, Any] = {
    "nodes": [
        {"id": "a", "type": "shell", "command": ["sh", "-c", "echo '{\"n\": 1}'"]},
        {"id": "b", "type": "shell", "command": ["sh", "-c", "echo '{\"n\": 2}'"]},
        {"id": "c", "type": "shell", "needs": ["a", "b"], "command": [
            "python3", "-c",
            "import json,sys; i=json.load(sys.stdin)['inputs']; "
            "print(json.dumps({'sum': i['a']['n'] + i['b']['n']}))",
        ]},
        {"id": "d", "type": "shell", "needs": ["c"], "command": "true"},
    ],
}


def test_given_inputs_win_and_a_missing_need_is_named(make_pipeline: MakePipeline) -> None:
    pipeline = make_pipeline(CHAIN)

    with pytest.raises(SingleNodeError, match="node 'c' needs the output of 'b'"):
        inputs_for(pipeline, "c", given={"a": {"n": 5}})
    assert inputs_for(pipeline, "c", given={"a": {"n": 5}, "b": {"n": 6}}) == {
        "a": {"n": 5}, "b": {"n": 6},
    }
    assert inputs_for(pipeline, "a") == {}


def test_seed_events_settle_the_needs_and_skip_the_rest(make_pipeline: MakePipeline) -> None:
    pipeline = make_pipeline(CHAIN)

    seed = seed_events(
        pipeline, "c", params={}, inputs={"a": {"n": 1}, "b": {"n": 2}}, source_run="src",
        run_id="r1",
    )
    state = fold(seed)

    assert [e.seq for e in seed] == [1, 2, 3, 4]
    assert seed[0].data is not None and seed[0].data["test_of"] == {"run": "src", "node": "c"}
    assert {n: s.state for n, s in state.nodes.items()} == {
        "a": NodeStatus.SUCCEEDED, "b": NodeStatus.SUCCEEDED,
        "c": NodeStatus.PENDING, "d": NodeStatus.SKIPPED,
    }
    assert state.nodes["a"].attempts == 0  # no work was done for it
    assert seed[1].data == {"output": {"n": 1}, "reused_from": "src"}


async def test_running_alone_runs_only_the_node_under_test(make_pipeline: MakePipeline) -> None:
    pipeline = make_pipeline(CHAIN)
    sink = MemorySink()

    state = await run_alone(
        pipeline, "c", params={}, inputs={"a": {"n": 20}, "b": {"n": 22}}, sinks=[sink]
    )

    assert state.state is RunStatus.SUCCEEDED
    assert state.nodes["c"].output == {"sum": 42}
    started = [e.node_id for e in sink.events if e.event_type == "node.started"]
    assert started == ["c"]
    assert fold(sink.events) == state  # the events published are the whole story
