"""Retry from failure: a new run reuses the old run's succeeded outputs (recorded, no work, no
time) and runs the rest; `nodes` also re-runs those nodes and everything downstream of them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from engine.api import PipelineBuilder
from engine.events import EventType
from engine.manager import RunManager
from engine.retry_from import RetryRefusedError, plan_retry
from engine.state import NodeStatus, RunStatus
from engine.store import Store

if TYPE_CHECKING:
    from pathlib import Path

    from engine.nodes import NodeContext
    from engine.spec import Pipeline
    from engine.state import RunState

LIMIT = 30.0


class Work:
    """Python nodes that count their calls; `broken` names the nodes that fail for now."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.broken: set[str] = set()

    async def __call__(self, payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
        node = payload["node_id"]
        self.calls.append(node)
        if node in self.broken:
            raise ValueError(f"{node} is broken")
        rows = sum(v.get("rows", 0) for v in payload["inputs"].values())
        return {"rows": rows + 1, "seen": self.calls.count(node)}


def chain_with_side(work: Work) -> Pipeline:
    """extract -> load -> report <- side, and notify (one_failed) after load."""
    flow = PipelineBuilder("retry-chain")
    flow.python("extract", work)
    flow.python("side", work)
    flow.python("load", work, needs=["extract"])
    flow.python("report", work, needs=["load", "side"])
    flow.python("notify", work, needs=["load"], trigger="one_failed")
    return flow.build()


def diamond(work: Work) -> Pipeline:
    flow = PipelineBuilder("retry-diamond")
    flow.python("a", work)
    flow.python("b", work, needs=["a"])
    flow.python("c", work, needs=["a"])
    flow.python("d", work, needs=["b", "c"])
    return flow.build()


async def test_a_retry_reuses_what_succeeded_and_runs_the_failed_node_and_what_follows(
    tmp_path: Path,
) -> None:
    work = Work()
    work.broken = {"load"}
    async with Store(tmp_path / "db.sqlite") as store, RunManager(store=store) as manager:
        old = await (await manager.start(chain_with_side(work))).wait(LIMIT)
        assert old.state is RunStatus.FAILED
        work.broken.clear()
        work.calls.clear()

        handle = await manager.retry(old.run_id)
        new = await handle.wait(LIMIT)
        events = await store.events(new.run_id)
        links = await store.linked_runs(old.run_id)
        row = await store.run_row(new.run_id)

    assert new.state is RunStatus.SUCCEEDED
    # notify succeeded only because load failed: load runs again, so notify is decided again.
    assert sorted(work.calls) == ["load", "report"]
    assert new.nodes["notify"].state is NodeStatus.SKIPPED
    reused = [e for e in events if e.data and "reused_from" in e.data]
    assert [(e.event_type, e.node_id, e.attempt) for e in reused] == [
        (EventType.NODE_SUCCEEDED, "extract", 0),
        (EventType.NODE_SUCCEEDED, "side", 0),
    ]
    assert {e.data["reused_from"] for e in reused if e.data} == {old.run_id}
    started = {e.node_id for e in events if e.event_type == EventType.NODE_STARTED}
    assert started == {"load", "report"}
    assert new.nodes["extract"].output == old.nodes["extract"].output
    assert new.nodes["extract"].started_at is None  # no attempt: it took no time
    assert new.nodes["report"].output == {"rows": 4, "seen": 1}  # side 1 + load (extract 1 + 1)
    assert new.retry_of == old.run_id
    assert row is not None and row.retry_of == old.run_id
    assert links == [(new.run_id, "retry")]


async def test_naming_a_node_also_runs_it_again_and_everything_downstream_of_it(
    tmp_path: Path,
) -> None:
    work = Work()
    async with Store(tmp_path / "db.sqlite") as store, RunManager(store=store) as manager:
        old = await (await manager.start(diamond(work))).wait(LIMIT)
        assert old.state is RunStatus.SUCCEEDED
        before = len(work.calls)

        new = await (await manager.retry(old.run_id, nodes=["b"])).wait(LIMIT)

    assert new.state is RunStatus.SUCCEEDED
    assert sorted(work.calls[before:]) == ["b", "d"]
    assert new.nodes["a"].reused_from == old.run_id
    assert new.nodes["c"].reused_from == old.run_id
    assert new.nodes["b"].reused_from is None
    assert new.nodes["b"].output == {"rows": 2, "seen": 2}


async def test_retry_refuses_an_unfinished_run_an_unknown_node_and_a_retry_of_nothing(
    tmp_path: Path,
) -> None:
    work = Work()
    pipeline = diamond(work)
    async with Store(tmp_path / "db.sqlite") as store, RunManager(store=store) as manager:
        done = await (await manager.start(pipeline)).wait(LIMIT)
        with pytest.raises(RetryRefusedError, match="has no node nope"):
            await manager.retry(done.run_id, nodes=["nope"])
        with pytest.raises(RetryRefusedError, match="succeeded: a retry would run nothing"):
            await manager.retry(done.run_id)
        runs = await store.list_runs()
    assert len(runs) == 1  # nothing was created by the refusals

    unfinished = _pending(pipeline)
    with pytest.raises(RetryRefusedError, match="only a finished run can be retried"):
        plan_retry(unfinished, pipeline)


def _pending(pipeline: Pipeline) -> RunState:
    from engine.executor import Executor

    executor = Executor(pipeline)
    executor.create()
    return executor.state


def test_the_plan_lists_what_is_reused_and_what_runs_again_in_graph_order() -> None:
    from engine.executor import Executor

    work = Work()
    pipeline = chain_with_side(work)
    executor = Executor(pipeline, run_id="r1")
    executor.create()
    for node, status in (("extract", "succeeded"), ("side", "succeeded"), ("load", "failed"),
                         ("report", "skipped"), ("notify", "succeeded")):
        node_state = executor.state.nodes[node]
        node_state.state = NodeStatus(status)
    executor.state.state = RunStatus.FAILED

    plan = plan_retry(executor.state, pipeline)

    assert plan.reused == ("extract", "side")
    assert plan.rerun == ("load", "report", "notify")
