"""The driver runs the one node a chain starts itself (`Executor._act`, `_drive`): a chain
of quick nodes costs neither a task nor a loop turn per node. What a node can notice must not
change: it sees a fresh copy of the run's context, its task carries its name, its timeout and
cancellation act on it alone (a cancel that lands as it ends is no cancel of the caller's), a
node that ignores its cancellation is cancelled again after the grace, and the loop still gets
its turns."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import pytest

from engine.api import PipelineBuilder
from engine.bus import MemorySink
from engine.manager import RunManager
from engine.state import NodeStatus, RunStatus

MARK: contextvars.ContextVar[str] = contextvars.ContextVar("mark", default="unset")


def chain(name: str, length: int, fn: Any, **settings: Any) -> Any:
    flow = PipelineBuilder(name, **settings)
    for i in range(length):
        flow.python(f"n{i}", fn, needs=[f"n{i - 1}"] if i else [])
    return flow.build()


async def test_each_node_of_a_chain_sees_a_fresh_copy_of_the_runs_context() -> None:
    seen: dict[str, str] = {}

    async def marks(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
        seen[ctx.node_id] = MARK.get()
        MARK.set(ctx.node_id)  # a node that changes the context keeps the change to itself
        return {}

    async with RunManager(sinks=[MemorySink()]) as manager:
        state = await (await manager.start(chain("marks", 50, marks)))
    assert state.state is RunStatus.SUCCEEDED
    assert seen == {f"n{i}": "unset" for i in range(50)}


async def test_a_chain_of_quick_nodes_runs_in_few_tasks_and_the_loop_still_gets_turns() -> None:
    tasks: set[asyncio.Task[Any]] = set()
    names: list[bool] = []

    async def quick(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        names.append(task.get_name() == f"interlock:{ctx.node_id}")
        return {"n": 1}

    turns = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal turns
        while not done.is_set():
            turns += 1
            await asyncio.sleep(0)

    async with RunManager(sinks=[MemorySink()]) as manager:
        handle = await manager.start(chain("quick", 1000, quick))
        ticking = asyncio.create_task(ticker())
        state = await handle
        done.set()
        await ticking
    assert state.state is RunStatus.SUCCEEDED
    assert len(names) == 1000 and all(names)  # each node ran under its own task name
    assert len(tasks) <= 500  # handed on: far fewer tasks than nodes
    # ...but not for ever: a task hands on for about a millisecond, then the loop gets a turn.
    assert turns >= 5


async def test_a_node_run_by_the_driver_times_out_and_is_cancelled_alone() -> None:
    async def quick(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
        return {"ok": True}

    async def stuck(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
        await asyncio.sleep(30)
        return {}

    def pipeline(name: str, timeout: float) -> Any:
        flow = PipelineBuilder(name)
        flow.python("first", quick)
        flow.python("second", stuck, needs=["first"], timeout=timeout)
        flow.python("third", quick, needs=["second"])
        return flow.build()

    sink = MemorySink()
    async with RunManager(sinks=[sink]) as manager:
        timed = await (await manager.start(pipeline("times-out", 0.2)))
        handle = await manager.start(pipeline("cancelled", 30))
        while handle.state.nodes["second"].state is not NodeStatus.RUNNING:
            await asyncio.sleep(0.01)
        manager.cancel(handle.run_id, "enough")
        cancelled = await handle
    states = {node: timed.nodes[node].state for node in ("first", "second", "third")}
    assert states == {
        "first": NodeStatus.SUCCEEDED,
        "second": NodeStatus.TIMED_OUT,
        "third": NodeStatus.SKIPPED,
    }
    assert timed.nodes["second"].reason == "node 'second' timed out after 0.2s"
    assert cancelled.state is RunStatus.CANCELLED
    assert cancelled.nodes["first"].state is NodeStatus.SUCCEEDED
    assert cancelled.nodes["second"].state is NodeStatus.CANCELLED
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("interlock:")]


@pytest.mark.parametrize("hold_over", [False, True], ids=["in-hold", "hold-over"])
async def test_a_node_that_cancels_its_own_run_as_it_ends_leaves_the_caller_uncancelled(
    hold_over: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stop cancels the driver while it runs the node, which ends without reaching an
    await: that cancel is still pending. With the driver's hold over (a slow machine) the
    driver gives the loop a turn at once; the cancel must not land there and end the driver
    before it records `node.cancelled` for what was left."""
    import engine.executor
    from engine.executor import Executor

    if hold_over:
        monkeypatch.setattr(engine.executor, "HOLD_FOR", -1.0)
    executors: list[Executor] = []

    async def cancels(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
        executors[0].cancel("from inside")  # the driver runs this node: it cancels itself
        return {}

    flow = PipelineBuilder("self-cancel")
    flow.python("a", cancels)
    flow.python("b", cancels, needs=["a"])
    executor = Executor(flow.build())
    executors.append(executor)
    executor.create()
    state = await executor.execute()  # returns: no CancelledError for the caller
    assert state.state is RunStatus.CANCELLED
    assert state.nodes["a"].state is NodeStatus.SUCCEEDED
    assert state.nodes["b"].state is NodeStatus.CANCELLED
    current = asyncio.current_task()
    assert current is not None and current.cancelling() == 0


async def test_a_node_run_by_the_driver_that_ignores_its_cancel_is_cancelled_again() -> None:
    from engine.executor import Executor

    cancels = 0

    async def stubborn(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
        nonlocal cancels
        while True:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancels += 1
                if cancels >= 2:
                    raise

    flow = PipelineBuilder("stubborn", cleanup_grace=0.1)
    flow.python("a", stubborn)
    executor = Executor(flow.build())
    executor.create()
    running = asyncio.create_task(executor.execute())
    while executor.state.nodes["a"].state is not NodeStatus.RUNNING:
        await asyncio.sleep(0.01)
    executor.cancel("enough")
    state = await asyncio.wait_for(running, 5)
    assert cancels == 2
    assert state.state is RunStatus.CANCELLED
    assert state.nodes["a"].state is NodeStatus.CANCELLED
