"""Executing runs: scheduling, data flow, node types, branches, failures, gates, timeouts,
cancellation, simulate mode, shell semantics and secrets (DESIGN sections 2-4)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import sys
import threading
import time
from importlib.metadata import EntryPoint
from importlib.metadata import entry_points as installed_entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import pytest

from engine import registry
from engine.api import callable_ref
from engine.bus import MemorySink
from engine.errors import TransientError
from engine.events import EventType, parse_timestamp
from engine.executor import Executor, decide_node
from engine.loader import load_file
from engine.manager import RunManager
from engine.nodes import MAX_LOG_LINES, NodeContext, abandoned_threads
from engine.spec import ParallelNode
from engine.state import NodeState, NodeStatus, RunState, RunStatus, fold

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from conftest import MakePipeline, Recorder, RunPipeline

    from engine.events import Event
    from engine.spec import NodeBase

PY = sys.executable
DATA = Path(__file__).resolve().parents[1] / "data" / "pipelines"


def node_ids(events: Iterable[Event], event_type: str) -> list[str]:
    """The node ids of the events of one type, in order."""
    return [e.node_id for e in events if e.event_type == event_type and e.node_id is not None]


def of_type(events: list[Event], event_type: str, node_id: str | None = None) -> list[Event]:
    return [
        e
        for e in events
        if e.event_type == event_type and (node_id is None or e.node_id == node_id)
    ]


def seconds_between(first: Event, second: Event) -> float:
    return parse_timestamp(second.timestamp_utc) - parse_timestamp(first.timestamp_utc)


def pid_from_logs(events: list[Event], node_id: str) -> int:
    """The pid a shell node printed as its first stdout line."""
    for event in of_type(events, EventType.NODE_LOG, node_id):
        data = event.data or {}
        if data.get("stream") == "stdout":
            return int(data["line"])
    raise AssertionError(f"node {node_id} printed no pid")


async def printed(recorder: Recorder, run_id: str, node_id: str) -> None:
    """Wait for the node's first stdout line (its first `node.log` records where it runs)."""
    while not any(
        (e.data or {}).get("stream") == "stdout"
        for e in of_type(recorder.of(run_id), EventType.NODE_LOG, node_id)
    ):
        await asyncio.sleep(0.01)


def assert_process_gone(pid: int) -> None:
    """Dead: no such process, or a zombie (dead; an orphan waits for init to reap it)."""
    try:
        status = psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return
    assert status == psutil.STATUS_ZOMBIE, f"process {pid} is still there ({status})"


# ---------------------------------------------------------------------------------------------
# callables the pipelines below name (module-level ones are referenced as `test_executor:name`)


async def emit_rows(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    return {"rows": 3, "who": payload["node_id"]}


async def double_rows(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    return {"rows": sum(i["rows"] for i in payload["inputs"].values()) * 2}


async def echo_payload(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    return {"payload": payload}


def sync_square(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    return {"square": payload["params"]["n"] ** 2, "thread": threading.current_thread().name}


async def sleep_long(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    await asyncio.sleep(30)
    return {}


async def fail_permanently(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    raise ValueError("bad data")


async def leak_token(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    token = os.environ["INTERLOCK_TEST_TOKEN"]
    ctx.log("stdout", f"token is {token}")
    return {"token": token, token: [f"{token}!"], "mode": "fast"}


def leak_token_from_a_thread(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    ctx.log("stderr", "thread token " + os.environ["INTERLOCK_TEST_TOKEN"])
    return {"from_thread": os.environ["INTERLOCK_TEST_TOKEN"]}


async def raise_token(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    raise RuntimeError(f"denied for {os.environ['INTERLOCK_TEST_TOKEN']}")


def leak_token_agent(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    return {"said": f"{payload['config']['word']} {os.environ['INTERLOCK_TEST_TOKEN']}"}


SLEEPS = {"t1": 30.0, "t2": 30.0, "ok": 0.05, "late_ok": 0.5}


async def sleep_as_named(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    await asyncio.sleep(SLEEPS[payload["node_id"]])
    return {"slept": SLEEPS[payload["node_id"]]}


async def swallow_the_cancel(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        return {"swallowed": True}
    return {}


def shout_agent(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    return {"shout": str(payload["config"]["word"]).upper()}


async def double_node(node: NodeBase, ctx: NodeContext) -> dict[str, Any]:
    config = getattr(node, "config", {})
    return {"doubled": config["value"] * 2, "node": ctx.node_id}


def ref(fn: Any) -> str:
    return callable_ref(fn)


# ---------------------------------------------------------------------------------------------
# data flow


async def test_a_linear_run_succeeds_node_by_node_in_order(run_pipeline: RunPipeline) -> None:
    state, events = await run_pipeline(
        {
            "nodes": [
                {"id": "a", "type": "python", "call": ref(emit_rows)},
                {"id": "b", "type": "python", "call": ref(emit_rows), "needs": ["a"]},
                {"id": "c", "type": "python", "call": ref(emit_rows), "needs": ["b"]},
            ]
        }
    )
    assert state.state is RunStatus.SUCCEEDED
    assert all(n.state is NodeStatus.SUCCEEDED and n.attempts == 1 for n in state.nodes.values())
    assert node_ids(events, EventType.NODE_STARTED) == ["a", "b", "c"]
    assert node_ids(events, EventType.NODE_SUCCEEDED) == ["a", "b", "c"]


async def test_outputs_are_passed_downstream_as_inputs(run_pipeline: RunPipeline) -> None:
    state, _ = await run_pipeline(
        {
            "nodes": [
                {"id": "extract", "type": "python", "call": ref(emit_rows)},
                {"id": "double", "type": "python", "call": ref(double_rows), "needs": ["extract"]},
                {"id": "show", "type": "python", "call": ref(echo_payload), "needs": ["double"]},
            ]
        }
    )
    assert state.nodes["double"].output == {"rows": 6}
    assert state.nodes["show"].output["payload"]["inputs"] == {"double": {"rows": 6}}


async def test_params_reach_a_python_node_with_defaults_and_overrides(
    run_pipeline: RunPipeline,
) -> None:
    state, events = await run_pipeline(
        {
            "params": {"env": {"default": "staging"}, "n": {"default": 2}},
            "nodes": [{"id": "show", "type": "python", "call": ref(echo_payload)}],
        },
        params={"n": 7},
    )
    payload = state.nodes["show"].output["payload"]
    assert payload == {
        "params": {"env": "staging", "n": 7},
        "inputs": {},
        "run_id": state.run_id,
        "node_id": "show",
        "attempt": 1,
    }
    assert (events[0].data or {})["params"] == {"env": "staging", "n": 7}


async def test_params_reach_a_shell_node_as_json_on_stdin_and_ids_in_its_environment(
    run_pipeline: RunPipeline,
) -> None:
    script = (
        "import json, os, sys\n"
        "payload = json.load(sys.stdin)\n"
        "env = {k: os.environ[k] for k in "
        "('INTERLOCK_RUN_ID', 'INTERLOCK_NODE_ID', 'INTERLOCK_ATTEMPT')}\n"
        "print(json.dumps({'payload': payload, 'env': env}))\n"
    )
    state, _ = await run_pipeline(
        {
            "params": {"env": {"default": "prod"}},
            "nodes": [
                {"id": "extract", "type": "python", "call": ref(emit_rows)},
                {"id": "sh", "type": "shell", "command": [PY, "-c", script], "needs": ["extract"]},
            ],
        }
    )
    output = state.nodes["sh"].output
    assert output["payload"] == {
        "params": {"env": "prod"},
        "inputs": {"extract": {"rows": 3, "who": "extract"}},
        "run_id": state.run_id,
        "node_id": "sh",
        "attempt": 1,
    }
    assert output["env"] == {
        "INTERLOCK_RUN_ID": state.run_id,
        "INTERLOCK_NODE_ID": "sh",
        "INTERLOCK_ATTEMPT": "1",
    }


# ---------------------------------------------------------------------------------------------
# node types


async def test_every_builtin_node_type_runs_and_gives_its_output(
    run_pipeline: RunPipeline, tmp_path: Path
) -> None:
    artifact = tmp_path / "report.csv"
    artifact.write_bytes(b"id,rows\n1,3\n")
    expected_sha = hashlib.sha256(artifact.read_bytes()).hexdigest()
    state, events = await run_pipeline(
        {
            "params": {"n": {"default": 4}},
            "agents": {"shout": ref(shout_agent)},
            "nodes": [
                {"id": "start", "type": "trigger"},
                {
                    "id": "sh",
                    "type": "shell",
                    "command": [PY, "-c", "print('{\"rows\": 5}')"],
                    "needs": ["start"],
                },
                {"id": "py_async", "type": "python", "call": ref(double_rows), "needs": ["sh"]},
                {"id": "py_sync", "type": "python", "call": ref(sync_square), "needs": ["start"]},
                {
                    "id": "echo",
                    "type": "agent",
                    "agent": "echo",
                    "config": {"greeting": "hi"},
                    "needs": ["py_async"],
                },
                {
                    "id": "loud",
                    "type": "agent",
                    "agent": "shout",
                    "config": {"word": "hey"},
                    "needs": ["start"],
                },
                {"id": "big", "type": "condition", "expr": "sh.rows > 4", "needs": ["sh"]},
                {"id": "pause", "type": "delay", "duration": "10ms", "needs": ["big"]},
                {
                    "id": "publish",
                    "type": "action",
                    "message": "rows={sh.rows} env={params.n}",
                    "artifact": str(artifact),
                    "needs": ["pause"],
                },
                {
                    "id": "join",
                    "type": "parallel",
                    "needs": ["echo", "loud", "py_sync", "publish"],
                },
            ],
        },
        params={"n": 9},
    )
    assert state.state is RunStatus.SUCCEEDED, state.reason
    out = {node_id: node.output for node_id, node in state.nodes.items()}
    assert out["start"] == {"n": 9}
    assert out["sh"] == {"rows": 5}
    assert out["py_async"] == {"rows": 10}
    assert out["py_sync"]["square"] == 81
    assert out["py_sync"]["thread"].startswith("interlock:")  # a worker thread, not the loop
    assert out["echo"] == {"echo": {"greeting": "hi"}, "inputs": ["py_async"]}
    assert out["loud"] == {"shout": "HEY"}
    assert out["big"] == {"result": True}
    assert out["pause"] == {"waited": 0.01}
    assert out["publish"] == {
        "message": "rows=5 env=9",
        "artifact": str(artifact),
        "sha256": expected_sha,
        "size": artifact.stat().st_size,
    }
    assert out["join"] == {}
    [emitted] = of_type(events, EventType.ARTIFACT_EMITTED)
    assert emitted.node_id == "publish"
    assert emitted.data == {"path": str(artifact), "sha256": expected_sha, "size": 12}
    assert state.artifacts == [{"node_id": "publish", **emitted.data}]


async def test_an_action_whose_artifact_is_missing_fails(run_pipeline: RunPipeline) -> None:
    state, events = await run_pipeline(
        {"nodes": [{"id": "publish", "type": "action", "artifact": "/nonexistent/file.txt"}]}
    )
    assert state.nodes["publish"].state is NodeStatus.FAILED
    assert "not found" in (state.nodes["publish"].reason or "")
    assert not of_type(events, EventType.ARTIFACT_EMITTED)


@pytest.fixture
def double_node_type(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Register node type `double` as if an installed distribution declared it."""
    def entry_points(*, group: str) -> list[EntryPoint]:
        found = list(installed_entry_points(group=group))
        if group == registry.NODE_GROUP:
            found.append(EntryPoint("double", f"{__name__}:double_node", group))
        return found

    monkeypatch.setattr(registry, "entry_points", entry_points)
    registry.node_type_entry_points.cache_clear()
    yield
    registry.node_type_entry_points.cache_clear()


@pytest.mark.usefixtures("double_node_type")
async def test_a_plugin_node_type_runs_through_its_entry_point(run_pipeline: RunPipeline) -> None:
    state, _ = await run_pipeline(
        {"nodes": [{"id": "twice", "type": "double", "config": {"value": 21}}]}
    )
    assert state.state is RunStatus.SUCCEEDED
    assert state.nodes["twice"].output == {"doubled": 42, "node": "twice"}


# ---------------------------------------------------------------------------------------------
# branches and trigger rules

BRANCHES = {
    "params": {"rows": {"default": 0}},
    "nodes": [
        {"id": "check", "type": "condition", "expr": "params.rows > 0"},
        {"id": "load", "type": "action", "message": "loading", "needs": ["check"]},
        {"id": "after_load", "type": "parallel", "needs": ["load"]},
        {
            "id": "alert",
            "type": "action",
            "message": "no rows",
            "needs": ["check"],
            "when": {"check": False},
        },
        {"id": "report", "type": "parallel", "needs": ["after_load", "alert"],
         "trigger": "none_failed"},
    ],
}


async def test_a_true_condition_runs_its_true_branch_and_skips_the_false_one(
    run_pipeline: RunPipeline,
) -> None:
    state, events = await run_pipeline(BRANCHES, params={"rows": 5})
    assert state.state is RunStatus.SUCCEEDED
    assert state.nodes["check"].output == {"result": True}
    assert state.nodes["load"].state is NodeStatus.SUCCEEDED
    assert state.nodes["after_load"].state is NodeStatus.SUCCEEDED
    assert state.nodes["alert"].state is NodeStatus.SKIPPED
    assert state.nodes["alert"].reason == "branch_not_taken"
    assert "alert" not in node_ids(events, EventType.NODE_STARTED)


async def test_a_false_condition_runs_its_false_branch_and_skipping_propagates(
    run_pipeline: RunPipeline,
) -> None:
    state, events = await run_pipeline(BRANCHES, params={"rows": 0})
    assert state.state is RunStatus.SUCCEEDED
    assert state.nodes["check"].output == {"result": False}
    assert state.nodes["alert"].state is NodeStatus.SUCCEEDED
    assert state.nodes["alert"].output == {"message": "no rows"}
    assert state.nodes["load"].state is NodeStatus.SKIPPED
    assert state.nodes["load"].reason == "branch_not_taken"
    assert state.nodes["after_load"].state is NodeStatus.SKIPPED
    assert state.nodes["after_load"].reason == "upstream_skipped"
    assert set(node_ids(events, EventType.NODE_SKIPPED)) == {"load", "after_load"}


async def test_a_none_failed_join_runs_after_one_branch_was_skipped(
    run_pipeline: RunPipeline,
) -> None:
    for rows in (0, 5):
        state, _ = await run_pipeline(BRANCHES, params={"rows": rows})
        assert state.nodes["report"].state is NodeStatus.SUCCEEDED


async def test_a_none_failed_join_is_skipped_when_a_branch_failed(
    run_pipeline: RunPipeline,
) -> None:
    state, _ = await run_pipeline(
        {
            "nodes": [
                {"id": "good", "type": "python", "call": ref(emit_rows)},
                {"id": "bad", "type": "python", "call": ref(fail_permanently)},
                {"id": "join", "type": "parallel", "needs": ["good", "bad"],
                 "trigger": "none_failed"},
                {"id": "cleanup", "type": "parallel", "needs": ["good", "bad"],
                 "trigger": "all_done"},
                {"id": "on_error", "type": "parallel", "needs": ["good", "bad"],
                 "trigger": "one_failed"},
            ]
        }
    )
    assert state.nodes["join"].state is NodeStatus.SKIPPED
    assert state.nodes["join"].reason == "upstream_failed"
    assert state.nodes["cleanup"].state is NodeStatus.SUCCEEDED
    assert state.nodes["on_error"].state is NodeStatus.SUCCEEDED


async def test_a_failed_node_skips_its_dependents_while_independent_branches_go_on(
    run_pipeline: RunPipeline,
) -> None:
    state, _ = await run_pipeline(
        {
            "nodes": [
                {"id": "bad", "type": "python", "call": ref(fail_permanently)},
                {"id": "child", "type": "parallel", "needs": ["bad"]},
                {"id": "grandchild", "type": "parallel", "needs": ["child"]},
                {"id": "other", "type": "python", "call": ref(emit_rows)},
                {"id": "other_child", "type": "parallel", "needs": ["other"]},
            ]
        }
    )
    assert state.state is RunStatus.FAILED
    assert state.nodes["bad"].state is NodeStatus.FAILED
    assert state.nodes["bad"].error_class == "error"
    assert state.nodes["bad"].reason == "ValueError: bad data"
    assert state.nodes["child"].reason == "upstream_failed"
    assert state.nodes["grandchild"].state is NodeStatus.SKIPPED
    assert state.nodes["other_child"].state is NodeStatus.SUCCEEDED


@pytest.mark.parametrize(
    ("env", "taken", "not_taken"), [("prod", "load", "alert"), ("staging", "alert", "load")]
)
async def test_the_branching_example_file_takes_the_branch_its_params_choose(
    run_pipeline: RunPipeline, env: str, taken: str, not_taken: str
) -> None:
    pipeline = load_file(DATA / "branching.yaml")
    state, _ = await run_pipeline(pipeline, params={"env": env})
    assert state.state is RunStatus.SUCCEEDED
    assert state.nodes[taken].state is NodeStatus.SUCCEEDED
    assert state.nodes[not_taken].state is NodeStatus.SKIPPED
    assert state.nodes["report"].state is NodeStatus.SUCCEEDED


# ---------------------------------------------------------------------------------------------
# failure policies


async def test_a_hard_gate_failure_skips_downstream_emits_gate_failed_and_is_never_retried(
    run_pipeline: RunPipeline,
) -> None:
    calls: list[int] = []

    async def check_quality(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
        calls.append(payload["attempt"])
        raise TransientError("quality below threshold")

    state, events = await run_pipeline(
        {
            "nodes": [
                {
                    "id": "quality",
                    "type": "python",
                    "call": ref(check_quality),
                    "gate": "hard",
                    "retry": {"max_attempts": 5, "on": ["transient", "error", "gate"]},
                },
                {"id": "load", "type": "parallel", "needs": ["quality"]},
                {"id": "publish", "type": "parallel", "needs": ["load"],
                 "trigger": "all_done"},
                {"id": "independent", "type": "python", "call": ref(emit_rows)},
            ]
        }
    )
    assert calls == [1]
    assert state.state is RunStatus.FAILED
    assert state.error_class == "gate"
    assert state.gate_failures == ["quality"]
    assert state.nodes["quality"].state is NodeStatus.FAILED
    assert state.nodes["quality"].error_class == "gate"
    [gate] = of_type(events, EventType.GATE_FAILED)
    assert gate.node_id == "quality"
    assert not of_type(events, EventType.NODE_RETRIED)
    # Everything downstream is skipped, even a node whose own rule (all_done) would hold.
    for node_id in ("load", "publish"):
        assert state.nodes[node_id].state is NodeStatus.SKIPPED
        assert state.nodes[node_id].reason == "gate_failed:quality"
    assert state.nodes["independent"].state is NodeStatus.SUCCEEDED


async def test_an_optional_nodes_failure_is_recorded_and_the_run_still_succeeds(
    run_pipeline: RunPipeline,
) -> None:
    state, _ = await run_pipeline(
        {
            "nodes": [
                {"id": "lint", "type": "python", "call": ref(fail_permanently),
                 "optional": True},
                {"id": "build", "type": "python", "call": ref(echo_payload), "needs": ["lint"]},
            ]
        }
    )
    assert state.state is RunStatus.SUCCEEDED
    assert state.nodes["lint"].state is NodeStatus.FAILED
    assert state.nodes["lint"].reason == "ValueError: bad data"
    assert state.nodes["build"].state is NodeStatus.SUCCEEDED
    # The failed node has no output to hand on.
    assert state.nodes["build"].output["payload"]["inputs"] == {}


async def test_fail_fast_cancels_the_other_nodes_on_the_first_failure(
    run_pipeline: RunPipeline,
) -> None:
    started = time.monotonic()
    state, events = await run_pipeline(
        {
            "fail_fast": True,
            "cleanup_grace": 0.2,
            "nodes": [
                {"id": "slow", "type": "python", "call": ref(sleep_long)},
                {"id": "slow_shell", "type": "shell", "command": "sleep 30"},
                {"id": "bad", "type": "python", "call": ref(fail_permanently)},
                {"id": "later", "type": "parallel", "needs": ["slow"]},
            ],
        }
    )
    assert time.monotonic() - started < 5
    assert state.state is RunStatus.FAILED
    assert "fail_fast" in (state.reason or "")
    assert state.nodes["bad"].state is NodeStatus.FAILED
    for node_id in ("slow", "slow_shell", "later"):
        assert state.nodes[node_id].state is NodeStatus.CANCELLED, node_id
    [completed] = of_type(events, EventType.RUN_COMPLETED)
    assert (completed.data or {})["state"] == "failed"
    assert len(of_type(events, EventType.NODE_FAILED)) == 1  # the cancelled are not failures


# ---------------------------------------------------------------------------------------------
# timeouts


async def test_an_async_node_times_out_on_its_timeout(run_pipeline: RunPipeline) -> None:
    state, events = await run_pipeline(
        {"nodes": [{"id": "slow", "type": "python", "call": ref(sleep_long), "timeout": 0.2}]}
    )
    node = state.nodes["slow"]
    assert node.state is NodeStatus.TIMED_OUT
    assert node.error_class == "timeout"
    assert node.reason == "node 'slow' timed out after 0.2s"
    assert state.state is RunStatus.FAILED
    started = of_type(events, EventType.NODE_STARTED, "slow")[0]
    timed_out = of_type(events, EventType.NODE_TIMED_OUT, "slow")[0]
    assert 0.19 <= seconds_between(started, timed_out) < 1.0


async def test_concurrent_attempts_each_time_out_on_their_own_timeout(
    run_pipeline: RunPipeline,
) -> None:
    # The attempts of a run share one timer: deadlines reached in any order, attempts that end
    # in time before an earlier deadline, and one that swallows the cancel all behave as with
    # an `asyncio.timeout` per attempt.
    state, events = await run_pipeline(
        {
            "nodes": [
                {"id": "t1", "type": "python", "call": ref(sleep_as_named), "timeout": 0.15},
                {"id": "t2", "type": "python", "call": ref(sleep_as_named), "timeout": 0.3},
                {"id": "ok", "type": "python", "call": ref(sleep_as_named), "timeout": 0.2},
                {"id": "late_ok", "type": "python", "call": ref(sleep_as_named), "timeout": 5},
                {"id": "stubborn", "type": "python", "call": ref(swallow_the_cancel),
                 "timeout": 0.1},
            ]
        }
    )
    nodes = state.nodes
    for node_id, timeout in (("t1", 0.15), ("t2", 0.3)):
        assert nodes[node_id].state is NodeStatus.TIMED_OUT, node_id
        assert nodes[node_id].reason == f"node '{node_id}' timed out after {timeout:g}s"
        started = of_type(events, EventType.NODE_STARTED, node_id)[0]
        ended = of_type(events, EventType.NODE_TIMED_OUT, node_id)[0]
        assert timeout - 0.01 <= seconds_between(started, ended) < timeout + 0.5, node_id
    assert nodes["ok"].output == {"slept": 0.05}
    assert nodes["late_ok"].output == {"slept": 0.5}
    # The attempt returned although its deadline cancelled it: as with asyncio.timeout, what
    # it returned stands.
    assert nodes["stubborn"].state is NodeStatus.SUCCEEDED
    assert nodes["stubborn"].output == {"swallowed": True}


async def test_a_shell_node_that_overruns_its_timeout_is_killed_with_its_process(
    run_pipeline: RunPipeline,
) -> None:
    before = asyncio.all_tasks()
    state, events = await run_pipeline(
        {
            "cleanup_grace": 0.3,
            "nodes": [
                {
                    "id": "slow",
                    "type": "shell",
                    "command": ["sh", "-c", "echo $$; exec sleep 30"],
                    "timeout": 0.3,
                }
            ],
        }
    )
    assert state.nodes["slow"].state is NodeStatus.TIMED_OUT
    started = of_type(events, EventType.NODE_STARTED, "slow")[0]
    timed_out = of_type(events, EventType.NODE_TIMED_OUT, "slow")[0]
    assert 0.29 <= seconds_between(started, timed_out) < 1.5
    assert_process_gone(pid_from_logs(events, "slow"))
    assert psutil.Process().children(recursive=True) == []
    assert asyncio.all_tasks() - before == set()


async def test_a_timed_out_shell_nodes_whole_process_group_is_killed(
    run_pipeline: RunPipeline,
) -> None:
    state, _ = await run_pipeline(
        {
            "cleanup_grace": 0.3,
            "nodes": [
                {
                    "id": "spawner",
                    "type": "shell",
                    "command": ["sh", "-c", "sleep 30 & sleep 30 & echo spawned; wait"],
                    "timeout": 0.3,
                }
            ],
        }
    )
    assert state.nodes["spawner"].state is NodeStatus.TIMED_OUT
    assert psutil.Process().children(recursive=True) == []


async def test_a_sync_python_node_that_overruns_times_out_on_time_and_its_thread_is_abandoned(
    run_pipeline: RunPipeline,
) -> None:
    release = threading.Event()

    def stuck(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
        release.wait(20)
        return {}

    try:
        began = time.monotonic()
        state, events = await run_pipeline(
            {
                "nodes": [
                    {"id": "stuck", "type": "python", "call": ref(stuck), "timeout": 0.2,
                     "optional": True},
                    {"id": "next", "type": "python", "call": ref(emit_rows),
                     "needs": ["stuck"]},
                    {"id": "beside", "type": "python", "call": ref(emit_rows)},
                ]
            }
        )
        elapsed = time.monotonic() - began
        node = state.nodes["stuck"]
        assert node.state is NodeStatus.TIMED_OUT
        assert "abandoned" in (node.reason or "")
        assert elapsed < 3
        started = of_type(events, EventType.NODE_STARTED, "stuck")[0]
        timed_out = of_type(events, EventType.NODE_TIMED_OUT, "stuck")[0]
        assert 0.19 <= seconds_between(started, timed_out) < 1.0
        name = f"interlock:{state.run_id[:8]}:stuck"
        assert name in [t.name for t in abandoned_threads()]
        assert any("abandoned" in line for line in node.logs)
        # The run went on without it.
        assert state.nodes["next"].state is NodeStatus.SUCCEEDED
        assert state.nodes["beside"].state is NodeStatus.SUCCEEDED
        assert state.state is RunStatus.SUCCEEDED
    finally:
        release.set()
    for thread in abandoned_threads():
        thread.join(5)
    assert abandoned_threads() == []


class ThreadNoting(MemorySink):
    """Remembers on which thread each event was published."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[str] = []

    def publish(self, event: Event) -> None:
        super().publish(event)
        self.threads.append(threading.current_thread().name)


async def test_a_sync_nodes_reports_are_emitted_on_the_loop_and_none_after_its_attempt(
    run_pipeline: RunPipeline,
) -> None:
    release = threading.Event()
    finished = threading.Event()

    def chatty(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
        ctx.log("stdout", "working")
        release.wait(20)
        ctx.log("stdout", "too late")
        finished.set()
        return {}

    sink = ThreadNoting()
    try:
        state, _ = await run_pipeline(
            {"nodes": [{"id": "n", "type": "python", "call": ref(chatty), "timeout": 0.1}]},
            sinks=[sink],
        )
    finally:
        release.set()
    assert finished.wait(5)
    await asyncio.sleep(0.05)  # give a late report every chance to arrive
    assert set(sink.threads) == {threading.current_thread().name}
    assert sink.events[-1].event_type == EventType.RUN_COMPLETED
    assert [e.seq for e in sink.events] == list(range(1, len(sink.events) + 1))
    lines = [(e.data or {}).get("line") for e in of_type(sink.events, EventType.NODE_LOG)]
    assert "working" in lines
    assert "too late" not in lines
    assert state.nodes["n"].state is NodeStatus.TIMED_OUT


async def test_the_run_deadline_ends_the_run_as_timeout_and_cancels_running_nodes(
    run_pipeline: RunPipeline,
) -> None:
    before = asyncio.all_tasks()
    state, events = await run_pipeline(
        {
            "timeout": 0.4,
            "cleanup_grace": 0.2,
            "nodes": [
                {"id": "quick", "type": "python", "call": ref(emit_rows)},
                {"id": "slow", "type": "python", "call": ref(sleep_long)},
                {"id": "slow_shell", "type": "shell",
                 "command": ["sh", "-c", "echo $$; exec sleep 30"]},
                {"id": "after", "type": "parallel", "needs": ["slow"]},
            ],
        }
    )
    assert state.state is RunStatus.TIMEOUT
    assert state.reason == "run deadline of 0.4s passed"
    assert state.nodes["quick"].state is NodeStatus.SUCCEEDED
    for node_id in ("slow", "slow_shell", "after"):
        assert state.nodes[node_id].state is NodeStatus.CANCELLED, node_id
    assert "after" not in node_ids(events, EventType.NODE_STARTED)
    running = of_type(events, EventType.RUN_STATE_CHANGED)[0]
    completed = of_type(events, EventType.RUN_COMPLETED)[0]
    assert 0.39 <= seconds_between(running, completed) < 2.0
    assert_process_gone(pid_from_logs(events, "slow_shell"))
    assert psutil.Process().children(recursive=True) == []
    assert asyncio.all_tasks() - before == set()


async def test_a_timed_out_attempt_is_retried_when_timeout_is_retryable(
    run_pipeline: RunPipeline,
) -> None:
    async def slow_then_fast(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
        if payload["attempt"] == 1:
            await asyncio.sleep(30)
        return {"attempt": payload["attempt"]}

    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)

    state, events = await run_pipeline(
        {
            "nodes": [
                {"id": "n", "type": "python", "call": ref(slow_then_fast), "timeout": 0.1,
                 "retry": {"max_attempts": 2, "on": ["timeout"]}},
            ]
        },
        sleep=sleep,
    )
    assert state.nodes["n"].state is NodeStatus.SUCCEEDED
    assert state.nodes["n"].output == {"attempt": 2}
    [retried] = of_type(events, EventType.NODE_RETRIED, "n")
    assert retried.error_class == "timeout"
    assert len(delays) == 1


# ---------------------------------------------------------------------------------------------
# cancellation


async def test_cancelling_a_run_mid_way_cancels_its_nodes_and_leaves_nothing_behind(
    make_pipeline: MakePipeline, recorder: Recorder
) -> None:
    pipeline = make_pipeline(
        {
            "cleanup_grace": 0.2,
            "nodes": [
                {"id": "done_first", "type": "python", "call": ref(emit_rows)},
                {"id": "slow", "type": "python", "call": ref(sleep_long)},
                {"id": "slow_shell", "type": "shell",
                 "command": ["sh", "-c", "echo $$; exec sleep 30"]},
                {"id": "after", "type": "parallel", "needs": ["slow"]},
            ],
        }
    )
    before = asyncio.all_tasks()
    async with RunManager(sinks=[recorder]) as manager:
        handle = await manager.start(pipeline)
        await recorder.wait_for(EventType.NODE_LOG, "slow_shell")
        await printed(recorder, handle.run_id, "slow_shell")
        await recorder.wait_for(EventType.NODE_SUCCEEDED, "done_first")
        assert manager.cancel(handle.run_id, "operator stop", actor="operator:bob")
        began = time.monotonic()
        state = await handle.wait(10)
        assert time.monotonic() - began < 2
    events = recorder.of(handle.run_id)
    assert state.state is RunStatus.CANCELLED
    assert state.reason == "operator stop"
    assert state.nodes["done_first"].state is NodeStatus.SUCCEEDED
    for node_id in ("slow", "slow_shell", "after"):
        node = state.nodes[node_id]
        assert node.state is NodeStatus.CANCELLED, node_id
        assert node.error_class == "cancelled"
    completed = of_type(events, EventType.RUN_COMPLETED)[0]
    assert completed.actor == "operator:bob"
    assert (completed.data or {})["state"] == "cancelled"
    assert not manager.cancel(handle.run_id)  # already over
    assert_process_gone(pid_from_logs(events, "slow_shell"))
    assert psutil.Process().children(recursive=True) == []
    assert asyncio.all_tasks() - before == set()


async def test_a_timed_out_command_may_still_write_while_it_cleans_up_on_sigterm(
    run_pipeline: RunPipeline, tmp_path: Path
) -> None:
    marker = tmp_path / "cleaned"
    # Writing to a pipe nobody holds any more would kill it (SIGPIPE) before the cleanup ends.
    cleanup = f"echo cleaning up; echo done >&2; touch {marker}; exit 0"
    state, _ = await run_pipeline(
        {
            "cleanup_grace": 2,
            "nodes": [{"id": "tidy", "type": "shell", "timeout": 0.3,
                       "command": ["sh", "-c", f"trap '{cleanup}' TERM; sleep 30 & wait"]}],
        }
    )
    assert state.nodes["tidy"].state is NodeStatus.TIMED_OUT
    assert marker.exists()


async def test_a_command_ignoring_sigterm_is_killed_after_the_cleanup_grace(
    make_pipeline: MakePipeline, recorder: Recorder
) -> None:
    pipeline = make_pipeline(
        {
            "cleanup_grace": 0.3,
            "nodes": [
                {"id": "deaf", "type": "shell",
                 "command": ["sh", "-c", "trap '' TERM; echo $$; sleep 30 & wait"]},
            ],
        }
    )
    async with RunManager(sinks=[recorder]) as manager:
        handle = await manager.start(pipeline)
        await printed(recorder, handle.run_id, "deaf")
        manager.cancel(handle.run_id)
        began = time.monotonic()
        state = await handle.wait(10)
        elapsed = time.monotonic() - began
    assert 0.25 <= elapsed < 2
    assert state.nodes["deaf"].state is NodeStatus.CANCELLED
    lines = [(e.data or {})["line"] for e in recorder.of(handle.run_id)
             if e.event_type == EventType.NODE_LOG]
    assert any(line.startswith("SIGKILL sent") for line in lines)
    assert_process_gone(pid_from_logs(recorder.of(handle.run_id), "deaf"))
    assert psutil.Process().children(recursive=True) == []


async def test_a_node_that_ignores_cancellation_is_forced_after_the_grace(
    make_pipeline: MakePipeline, recorder: Recorder
) -> None:
    async def stubborn(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
        for _ in range(2):
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                continue  # swallows the first two cancellations on purpose
        await asyncio.sleep(30)
        return {}

    pipeline = make_pipeline(
        {"cleanup_grace": 0.1, "nodes": [{"id": "n", "type": "python", "call": ref(stubborn)}]}
    )
    before = asyncio.all_tasks()
    async with RunManager(sinks=[recorder]) as manager:
        handle = await manager.start(pipeline)
        await recorder.wait_for(EventType.NODE_STARTED, "n")
        manager.cancel(handle.run_id)
        state = await handle.wait(10)
    assert state.state is RunStatus.CANCELLED
    assert state.nodes["n"].state is NodeStatus.CANCELLED
    assert asyncio.all_tasks() - before == set()


# ---------------------------------------------------------------------------------------------
# approvals

APPROVAL = {
    "nodes": [
        {"id": "build", "type": "python", "call": "test_executor:emit_rows"},
        {"id": "publish", "type": "approval", "needs": ["build"], "message": "ship it?"},
        {"id": "deploy", "type": "python", "call": "test_executor:echo_payload",
         "needs": ["publish"]},
    ]
}


async def test_an_approved_approval_lets_the_run_go_on_and_records_who_approved(
    make_pipeline: MakePipeline, recorder: Recorder
) -> None:
    async with RunManager(sinks=[recorder]) as manager:
        handle = await manager.start(make_pipeline(APPROVAL))
        requested = await recorder.wait_for(EventType.APPROVAL_REQUESTED, "publish")
        assert requested.data == {"message": "ship it?"}
        assert handle.state.state is RunStatus.WAITING
        assert handle.state.nodes["publish"].state is NodeStatus.WAITING
        assert handle.executor.pending_approvals == ["publish"]
        assert not manager.approve(handle.run_id, "build")  # not an approval that waits
        assert manager.approve(
            handle.run_id, "publish", actor="operator:alice", reason="looks good"
        )
        assert not manager.approve(handle.run_id, "publish")  # decided once
        state = await handle.wait(10)
    events = recorder.of(handle.run_id)
    assert state.state is RunStatus.SUCCEEDED
    [granted] = of_type(events, EventType.APPROVAL_GRANTED)
    assert (granted.node_id, granted.actor, granted.reason) == (
        "publish", "operator:alice", "looks good"
    )
    decision = state.nodes["publish"].decision
    assert decision is not None
    assert decision["decision"] == "approved"
    assert decision["actor"] == "operator:alice"
    assert decision["reason"] == "looks good"
    assert state.nodes["publish"].output == {
        "approved": True, "by": "operator:alice", "reason": "looks good"
    }
    assert state.nodes["deploy"].state is NodeStatus.SUCCEEDED
    moves = [(e.data or {}).get("to") for e in of_type(events, EventType.RUN_STATE_CHANGED)]
    assert moves == ["running", "waiting", "running"]


async def test_a_rejected_approval_fails_with_class_rejected_and_skips_downstream(
    make_pipeline: MakePipeline, recorder: Recorder
) -> None:
    async with RunManager(sinks=[recorder]) as manager:
        handle = await manager.start(make_pipeline(APPROVAL))
        await recorder.wait_for(EventType.APPROVAL_REQUESTED, "publish")
        assert manager.reject(handle.run_id, "publish", actor="operator:carol", reason="not today")
        state = await handle.wait(10)
    events = recorder.of(handle.run_id)
    assert state.state is RunStatus.FAILED
    publish = state.nodes["publish"]
    assert publish.state is NodeStatus.FAILED
    assert publish.error_class == "rejected"
    assert publish.reason == "not today"
    [rejected] = of_type(events, EventType.APPROVAL_REJECTED)
    assert (rejected.actor, rejected.reason) == ("operator:carol", "not today")
    assert publish.decision is not None
    assert publish.decision["decision"] == "rejected"
    assert publish.decision["actor"] == "operator:carol"
    assert state.nodes["deploy"].state is NodeStatus.SKIPPED
    assert state.nodes["deploy"].reason == "upstream_failed"


async def test_an_approval_that_nobody_decides_times_out(run_pipeline: RunPipeline) -> None:
    state, _ = await run_pipeline(
        {"nodes": [{"id": "ok", "type": "approval", "timeout": 0.1}]}
    )
    assert state.nodes["ok"].state is NodeStatus.TIMED_OUT
    assert state.state is RunStatus.FAILED


# ---------------------------------------------------------------------------------------------
# the event log


async def test_a_small_run_emits_exactly_this_event_sequence(run_pipeline: RunPipeline) -> None:
    state, events = await run_pipeline(
        {
            "id": "small",
            "nodes": [
                {"id": "a", "type": "python", "call": ref(emit_rows)},
                {"id": "b", "type": "python", "call": ref(double_rows), "needs": ["a"]},
            ],
        }
    )
    assert [(e.event_type, e.node_id) for e in events] == [
        ("run.created", None),
        ("run.state_changed", None),
        ("node.started", "a"),
        ("node.succeeded", "a"),
        ("node.started", "b"),
        ("node.succeeded", "b"),
        ("run.completed", None),
    ]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert {e.run_id for e in events} == {state.run_id}
    assert len({e.event_id for e in events}) == len(events)
    assert all(e.attempt == 1 and e.actor == "engine" for e in events)
    assert all(e.timestamp_utc.endswith("Z") for e in events)
    created, running, _, a_done, b_started, b_done, completed = events
    assert (created.data or {})["pipeline_id"] == "small"
    assert (running.data or {})["to"] == "running"
    assert "deadline_at" in (running.data or {})
    assert a_done.data == {"output": {"rows": 3, "who": "a"}}
    # outputs_hash: sha256 of the output's JSON text, as the event line holds it.
    output_text = json.dumps(json.loads(a_done.to_json())["data"]["output"], separators=(",", ":"))
    assert a_done.outputs_hash == hashlib.sha256(output_text.encode()).hexdigest()
    assert b_started.inputs_hash is not None
    assert b_done.data == {"output": {"rows": 6}}
    assert completed.data is not None
    assert completed.data["state"] == "succeeded"
    assert completed.data["completed_nodes"] == ["a", "b"]
    # Each event is the compact JSON of the contract: null fields omitted.
    assert set(json.loads(created.to_json())) == {
        "event_id", "seq", "event_type", "run_id", "timestamp_utc", "actor", "attempt", "data"
    }


async def test_the_run_deadline_is_stated_on_the_injected_clock(
    make_pipeline: MakePipeline,
) -> None:
    # A console test or a screenshot fixes every timestamp through `now`; the deadline shown
    # for a running run must come from that clock too, not from the machine's.
    stamps = (f"2025-05-01T09:00:{second:02d}.250000Z" for second in range(60))
    memory = MemorySink()
    pipeline = make_pipeline(
        {"timeout": "90s", "nodes": [{"id": "a", "type": "python", "call": ref(emit_rows)}]}
    )
    async with RunManager(sinks=[memory], now=lambda: next(stamps)) as manager:
        handle = await manager.start(pipeline)
        state = await handle.wait(10)
    running = of_type(memory.of(handle.run_id), EventType.RUN_STATE_CHANGED)[0]
    assert running.timestamp_utc == "2025-05-01T09:00:01.250000Z"
    assert (running.data or {})["deadline_at"] == "2025-05-01T09:01:31.250000Z"
    assert state.deadline_at == "2025-05-01T09:01:31.250000Z"


# ---------------------------------------------------------------------------------------------
# simulate mode


async def test_simulate_mode_replaces_the_work_and_causes_no_side_effects(
    run_pipeline: RunPipeline, tmp_path: Path
) -> None:
    marker = tmp_path / "made"
    calls: list[str] = []

    async def effect(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
        calls.append(payload["node_id"])
        return {"rows": 1}

    state, events = await run_pipeline(
        {
            "nodes": [
                {"id": "touch", "type": "shell", "command": ["touch", str(marker)]},
                {"id": "py", "type": "python", "call": ref(effect), "needs": ["touch"]},
                {"id": "check", "type": "condition", "expr": "py.rows > 0", "needs": ["py"]},
                {"id": "done", "type": "parallel", "needs": ["check"]},
            ]
        },
        simulate=True,
    )
    assert state.state is RunStatus.SUCCEEDED
    assert state.simulate
    assert not marker.exists()
    assert calls == []
    for node_id in ("touch", "py"):
        assert state.nodes[node_id].output == {"simulated": True}
        assert state.nodes[node_id].simulated
        [succeeded] = of_type(events, EventType.NODE_SUCCEEDED, node_id)
        assert (succeeded.data or {}).get("simulated") is True
    # Control nodes still run for real (a condition over simulated data takes its true branch).
    assert state.nodes["check"].state is NodeStatus.SUCCEEDED
    assert state.nodes["done"].state is NodeStatus.SUCCEEDED
    assert (events[0].data or {}).get("simulate") is True


# ---------------------------------------------------------------------------------------------
# shell semantics


async def test_a_shell_nodes_last_stdout_line_is_its_output_when_it_is_a_json_object(
    run_pipeline: RunPipeline,
) -> None:
    state, _ = await run_pipeline(
        {
            "nodes": [
                {"id": "json", "type": "shell",
                 "command": [PY, "-c", "print('working'); print('{\"rows\": 3}')"]},
                {"id": "plain", "type": "shell", "command": ["echo", "hello"]},
                {"id": "json_then_text", "type": "shell",
                 "command": [PY, "-c", "print('{\"rows\": 3}'); print('bye')"]},
                {"id": "json_list", "type": "shell", "command": ["echo", "[1, 2]"]},
                {"id": "silent", "type": "shell", "command": ["true"]},
            ]
        }
    )
    out = {node_id: node.output for node_id, node in state.nodes.items()}
    assert out == {
        "json": {"rows": 3},
        "plain": {"exit_code": 0},
        "json_then_text": {"exit_code": 0},
        "json_list": {"exit_code": 0},
        "silent": {"exit_code": 0},
    }


async def test_a_shell_node_ends_when_its_command_exits_and_its_stragglers_are_killed(
    run_pipeline: RunPipeline,
) -> None:
    began = time.monotonic()
    state, events = await run_pipeline(
        {
            "nodes": [
                {
                    "id": "spawner",
                    "type": "shell",
                    # The background sleep keeps stdout open after the command itself exits.
                    "command": ["sh", "-c", "sleep 30 & echo $!; echo '{\"ok\": true}'"],
                    "timeout": 10,
                }
            ]
        }
    )
    assert time.monotonic() - began < 3
    assert state.nodes["spawner"].state is NodeStatus.SUCCEEDED
    assert state.nodes["spawner"].output == {"ok": True}
    straggler = pid_from_logs(events, "spawner")
    deadline = time.monotonic() + 2
    while psutil.pid_exists(straggler) and time.monotonic() < deadline:
        try:
            if psutil.Process(straggler).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        await asyncio.sleep(0.01)
    assert_process_gone(straggler)


async def test_a_shell_node_whose_detached_child_keeps_stdout_open_ends_after_the_grace(
    run_pipeline: RunPipeline,
) -> None:
    detach = "setsid sh -c 'echo $$; exec sleep 30' & sleep 0.2; echo '{\"ok\": 1}'"
    began = time.monotonic()
    state, events = await run_pipeline(
        {
            "cleanup_grace": 0.2,
            "nodes": [{"id": "n", "type": "shell", "command": ["sh", "-c", detach],
                       "timeout": 10}],
        }
    )
    detached = pid_from_logs(events, "n")
    try:
        assert time.monotonic() - began < 3
        assert state.nodes["n"].state is NodeStatus.SUCCEEDED
        assert state.nodes["n"].output == {"ok": 1}
        assert_process_gone(detached)  # it left the group, but not the node (containment)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(detached, signal.SIGKILL)


async def test_an_input_of_many_pipe_buffers_reaches_a_shell_node_whole_or_is_ignored(
    run_pipeline: RunPipeline,
) -> None:
    big = "x" * 300_000  # more than a pipe holds: written as the command reads it
    script = "import json, sys; print(json.dumps({'n': len(json.load(sys.stdin)['params']['b'])}))"
    state, _ = await run_pipeline(
        {
            "params": {"b": {"default": big}},
            "nodes": [
                {"id": "reads", "type": "shell", "command": [PY, "-c", script]},
                {"id": "ignores", "type": "shell", "command": ["true"]},
                {"id": "ignores_a_while", "type": "shell",
                 "command": ["sh", "-c", "sleep 0.2; echo '{\"ok\": 1}'"]},
            ],
        }
    )
    assert state.nodes["reads"].output == {"n": 300_000}
    assert state.nodes["ignores"].output == {"exit_code": 0}
    assert state.nodes["ignores_a_while"].output == {"ok": 1}


async def test_exit_75_is_a_transient_error_and_exit_1_a_permanent_one(
    run_pipeline: RunPipeline,
) -> None:
    state, _ = await run_pipeline(
        {
            "nodes": [
                {"id": "tempfail", "type": "shell",
                 "command": ["sh", "-c", "echo 'try later' >&2; exit 75"]},
                {"id": "broken", "type": "shell",
                 "command": ["sh", "-c", "echo 'disk full' >&2; exit 1"]},
                {"id": "missing", "type": "shell", "command": ["/nonexistent/program"]},
            ]
        }
    )
    assert state.nodes["tempfail"].error_class == "transient"
    assert state.nodes["tempfail"].reason == "exit 75: try later"
    assert state.nodes["broken"].error_class == "error"
    assert state.nodes["broken"].reason == "exit 1: disk full"
    assert state.nodes["missing"].error_class == "config"
    assert all(n.state is NodeStatus.FAILED for n in state.nodes.values())


async def test_shell_output_lines_become_node_log_events_up_to_a_bound(
    run_pipeline: RunPipeline,
) -> None:
    extra = 150
    script = (
        f"import sys\nfor i in range({MAX_LOG_LINES + extra}): print(i)\n"
        "print('oops', file=sys.stderr)\n"
    )
    state, events = await run_pipeline(
        {"nodes": [{"id": "chatty", "type": "shell", "command": [PY, "-c", script]}]}
    )
    logs = [e.data or {} for e in of_type(events, EventType.NODE_LOG, "chatty")]
    stdout = [d["line"] for d in logs if d["stream"] == "stdout"]
    assert stdout == [str(i) for i in range(MAX_LOG_LINES)]
    assert [d["line"] for d in logs if d["stream"] == "stderr"] == ["oops"]
    notes = [d["line"] for d in logs if d["stream"] == "interlock"]
    assert notes == [f"{extra} more stdout lines not kept"]
    assert state.nodes["chatty"].state is NodeStatus.SUCCEEDED
    assert len(state.nodes["chatty"].logs) <= 500


async def test_secrets_never_appear_in_any_event_even_when_the_command_prints_them(
    run_pipeline: RunPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cr3t-T0KEN-value"
    monkeypatch.setenv("INTERLOCK_TEST_TOKEN", secret)
    env = {"T": {"from_env": "INTERLOCK_TEST_TOKEN", "secret": True}, "MODE": "fast"}
    script = (
        "import json, os, sys\n"
        "t = os.environ['T']\n"
        "print('token is', t)\n"
        "print('stderr token', t, file=sys.stderr)\n"
        "print(json.dumps({'token': t, 'nested': [t + '!'], 'mode': os.environ['MODE']}))\n"
    )
    state, events = await run_pipeline(
        {
            "nodes": [
                {"id": "leaky", "type": "shell", "command": [PY, "-c", script], "env": env},
                {"id": "failing", "type": "shell", "env": env,
                 "command": ["sh", "-c", "echo \"denied for $T\" >&2; exit 1"]},
                {"id": "downstream", "type": "python", "call": ref(echo_payload),
                 "needs": ["leaky"]},
            ]
        }
    )
    dumped = "\n".join(e.to_json() for e in events)
    assert secret not in dumped
    assert secret not in repr(state)
    assert state.nodes["leaky"].state is NodeStatus.SUCCEEDED
    assert state.nodes["leaky"].output["mode"] == "fast"
    assert state.nodes["failing"].reason == "exit 1: denied for ***"
    stdout = [
        (e.data or {})["line"] for e in of_type(events, EventType.NODE_LOG, "leaky")
    ]
    assert "token is ***" in stdout
    # The definition snapshot keeps the reference, never the value.
    definition = json.dumps((events[0].data or {})["definition"])
    assert "INTERLOCK_TEST_TOKEN" in definition


async def test_secrets_never_appear_in_what_python_and_agent_nodes_log_return_or_raise(
    run_pipeline: RunPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A callable runs in the engine's process: it reads the environment a shell node inherits,
    # so every secret of the pipeline is masked in what it reports, as in a command's output.
    secret = "s3cr3t-T0KEN-value"
    monkeypatch.setenv("INTERLOCK_TEST_TOKEN", secret)
    state, events = await run_pipeline(
        {
            "agents": {"leaky": ref(leak_token_agent)},
            "nodes": [
                {"id": "holder", "type": "shell", "command": ["true"],
                 "env": {"T": {"from_env": "INTERLOCK_TEST_TOKEN", "secret": True}}},
                {"id": "py", "type": "python", "call": ref(leak_token)},
                {"id": "py_sync", "type": "python", "call": ref(leak_token_from_a_thread)},
                {"id": "py_fails", "type": "python", "call": ref(raise_token)},
                {"id": "agent", "type": "agent", "agent": "leaky", "config": {"word": "hi"}},
                {"id": "downstream", "type": "python", "call": ref(echo_payload),
                 "needs": ["py", "agent"]},
            ],
        }
    )
    dumped = "\n".join(e.to_json() for e in events)
    assert secret not in dumped
    assert secret not in repr(state)
    assert state.nodes["py"].output == {"token": "***", "***": ["***!"], "mode": "fast"}
    assert state.nodes["py_sync"].output == {"from_thread": "***"}
    assert state.nodes["agent"].output == {"said": "hi ***"}
    assert state.nodes["py_fails"].reason == "RuntimeError: denied for ***"
    lines = [(e.data or {})["line"] for e in of_type(events, EventType.NODE_LOG)]
    assert "token is ***" in lines
    assert "thread token ***" in lines
    assert any("denied for ***" in line for line in lines)  # the traceback, logged
    assert state.nodes["downstream"].state is NodeStatus.SUCCEEDED


async def test_a_pipeline_without_secrets_reports_what_its_python_nodes_say_as_is(
    run_pipeline: RunPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INTERLOCK_TEST_TOKEN", "not-a-secret-here")
    state, events = await run_pipeline(
        {"nodes": [{"id": "py", "type": "python", "call": ref(leak_token)}]}
    )
    assert state.nodes["py"].output["token"] == "not-a-secret-here"
    assert "token is not-a-secret-here" in [
        (e.data or {})["line"] for e in of_type(events, EventType.NODE_LOG)
    ]


async def test_a_missing_secret_variable_fails_the_node_with_class_config(
    run_pipeline: RunPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("INTERLOCK_TEST_UNSET", raising=False)
    state, _ = await run_pipeline(
        {
            "nodes": [
                {"id": "n", "type": "shell", "command": ["true"],
                 "env": {"T": {"from_env": "INTERLOCK_TEST_UNSET", "secret": True}}},
            ]
        }
    )
    assert state.nodes["n"].error_class == "config"
    assert "INTERLOCK_TEST_UNSET" in (state.nodes["n"].reason or "")


# ---------------------------------------------------------------------------------------------
# concurrency


async def test_max_concurrency_is_never_exceeded(run_pipeline: RunPipeline) -> None:
    active = 0
    peak = 0

    async def measured(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        try:
            await asyncio.sleep(0.03)
        finally:
            active -= 1
        return {}

    fn = ref(measured)
    nodes: list[dict[str, Any]] = [
        {"id": f"n{i}", "type": "python", "call": fn} for i in range(8)
    ]
    nodes += [{"id": f"m{i}", "type": "python", "call": fn, "needs": ["n0", "n1"]}
              for i in range(4)]
    nodes.append({"id": "gate", "type": "approval", "timeout": 0.05, "optional": True})
    state, _ = await run_pipeline({"max_concurrency": 3, "nodes": nodes})
    assert state.state is RunStatus.SUCCEEDED
    assert peak == 3


# ---------------------------------------------------------------------------------------------
# the pure decision, without an event loop


def decide(
    rule: str,
    parents: dict[str, NodeStatus],
    *,
    when: dict[str, bool] | None = None,
    optional: frozenset[str] = frozenset(),
    results: dict[str, bool] | None = None,
) -> str | None:
    """decide_node for a child with `rule` whose parents ended as given."""
    raw: dict[str, Any] = {"id": "child", "type": "parallel", "trigger": rule,
                           "needs": list(parents)}
    if when:
        raw["when"] = when
    node = ParallelNode.model_validate(raw)
    state = RunState("r")
    for parent_id, status in parents.items():
        state.nodes[parent_id] = NodeState(parent_id, state=status)
        if results and parent_id in results:
            state.nodes[parent_id].output = {"result": results[parent_id]}
    conditions = frozenset(results or ())
    flags = {p: p in optional for p in parents}
    return decide_node(node, list(parents), state, flags, conditions)


OK, BAD, SKIP = NodeStatus.SUCCEEDED, NodeStatus.FAILED, NodeStatus.SKIPPED


@pytest.mark.parametrize(
    ("rule", "parents", "expected"),
    [
        ("all_success", {"a": OK, "b": OK}, None),
        ("all_success", {"a": OK, "b": BAD}, "upstream_failed"),
        ("all_success", {"a": OK, "b": SKIP}, "upstream_skipped"),
        ("all_success", {"a": OK, "b": NodeStatus.TIMED_OUT}, "upstream_failed"),
        ("none_failed", {"a": OK, "b": SKIP}, None),
        ("none_failed", {"a": SKIP, "b": SKIP}, "upstream_skipped"),
        ("none_failed", {"a": OK, "b": BAD}, "upstream_failed"),
        ("all_done", {"a": BAD, "b": SKIP}, None),
        ("one_failed", {"a": OK, "b": BAD}, None),
        ("one_failed", {"a": OK, "b": OK}, "no_upstream_failed"),
    ],
)
def test_a_trigger_rule_decides_from_the_parents_states(
    rule: str, parents: dict[str, NodeStatus], expected: str | None
) -> None:
    assert decide(rule, parents) == expected


def test_an_optional_parents_failure_counts_as_done() -> None:
    assert decide("all_success", {"lint": BAD}, optional=frozenset({"lint"})) is None
    cancelled = {"lint": NodeStatus.CANCELLED}
    assert decide("all_success", cancelled, optional=frozenset({"lint"})) == "upstream_failed"


def test_a_condition_parent_selects_its_branch() -> None:
    assert decide("all_success", {"c": OK}, results={"c": True}) is None
    assert decide("all_success", {"c": OK}, results={"c": False}) == "branch_not_taken"
    assert decide("all_success", {"c": OK}, when={"c": False}, results={"c": False}) is None
    assert decide("none_failed", {"c": OK}, results={"c": False}) == "branch_not_taken"


async def keys_out_of_order(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    return {"who": "a", "rows": 3}  # not in sorted order: its text is not the canonical one


async def test_a_resumed_node_hashes_its_inputs_as_it_would_have_without_the_resume(
    make_pipeline: MakePipeline,
) -> None:
    """A parent that succeeded before the resume has its output hash worked out again from the
    log: the child's inputs_hash must not tell the two apart."""
    pipeline = make_pipeline(
        {
            "nodes": [
                {"id": "a", "type": "python", "call": ref(keys_out_of_order)},
                {"id": "b", "type": "python", "call": ref(double_rows), "needs": ["a"]},
            ],
        }
    )
    whole = MemorySink()
    first = Executor(pipeline, sinks=[whole])
    first.create()
    await first.execute()
    b_started = next(e for e in whole.events if e.event_type == "node.started" and e.node_id == "b")

    # The same run as the log held it once `a` had succeeded (and `b` never started), resumed.
    upto = next(i for i, e in enumerate(whole.events) if e.event_type == "node.succeeded") + 1
    resumed = MemorySink()
    executor = Executor(pipeline, sinks=[resumed], state=fold(whole.events[:upto]))
    executor.prepare_resume()
    await executor.execute()
    again = next(e for e in resumed.events if e.event_type == "node.started" and e.node_id == "b")

    assert again.inputs_hash == b_started.inputs_hash
