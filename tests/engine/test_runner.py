"""The runner seam (`engine.runner`): every work node's attempts go through the run's runner,
control nodes never do, and what the runner returns is the node's output."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from engine.api import PipelineBuilder
from engine.bus import MemorySink
from engine.executor import Executor
from engine.runner import LocalRunner, Runner
from engine.state import NodeStatus, RunStatus

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from engine.nodes import NodeContext
    from engine.spec import NodeBase


class RecordingRunner:
    """Today's runner, with a record of what it was asked to start."""

    def __init__(self) -> None:
        self.local = LocalRunner()
        self.started: list[tuple[str, int]] = []

    def start(self, node: NodeBase, ctx: NodeContext) -> Awaitable[dict[str, Any]]:
        self.started.append((node.id, ctx.attempt))
        return self.local.start(node, ctx)


async def work(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"n": 1}


async def flaky(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    if ctx.attempt == 1:
        from engine.errors import TransientError

        raise TransientError("once")
    return {"ok": True}


def mixed() -> Any:
    flow = PipelineBuilder("seam")
    flow.python("py", work)
    flow.shell("sh", [sys.executable, "-c", "print('{\"sh\": 1}')"], needs=["py"])
    flow.condition("check", "true", needs=["sh"])
    flow.delay("wait", 0, needs=["check"])
    flow.action("act", message="done", needs=["wait"])
    flow.python("retried", flaky, needs=["act"],
                retry={"max_attempts": 2, "on": ["transient"], "backoff": {"initial": 0}})
    return flow.build()


async def test_every_work_node_goes_through_the_runs_runner_and_control_nodes_do_not() -> None:
    runner = RecordingRunner()
    sink = MemorySink()
    executor = Executor(mixed(), sinks=[sink], runner=runner)
    executor.create()
    state = await executor.execute()
    assert state.state is RunStatus.SUCCEEDED, state.reason
    assert runner.started == [("py", 1), ("sh", 1), ("act", 1), ("retried", 1), ("retried", 2)]
    assert state.nodes["sh"].output == {"sh": 1}


class Remote:
    """A runner whose work happens elsewhere: here, an answer made up from the node's id."""

    def start(self, node: NodeBase, ctx: NodeContext) -> Awaitable[dict[str, Any]]:
        async def result() -> dict[str, Any]:
            return {"ran": node.id, "inputs": sorted(ctx.inputs)}

        return result()


async def test_what_the_runner_returns_is_the_nodes_output() -> None:
    flow = PipelineBuilder("remote")
    flow.python("a", work)
    flow.python("b", work, needs=["a"])
    runner: Runner = Remote()
    executor = Executor(flow.build(), runner=runner)
    executor.create()
    state = await executor.execute()
    assert state.nodes["b"].state is NodeStatus.SUCCEEDED
    assert state.nodes["b"].output == {"ran": "b", "inputs": ["a"]}
