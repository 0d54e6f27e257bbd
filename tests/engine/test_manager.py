"""RunManager: starting and queueing runs, controlling them, how a run's end is reported, and
the builder API that feeds it."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import psutil
import pytest

from engine.api import PipelineBuilder, callable_ref
from engine.errors import PipelineTimeoutError, RunCancelledError, RunFailedError
from engine.events import EventType
from engine.manager import RunManager
from engine.state import NodeStatus, RunStatus

if TYPE_CHECKING:
    from conftest import MakePipeline, Recorder

    from engine.nodes import NodeContext
    from engine.spec import Pipeline


async def extract(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    return {"rows": payload["params"]["rows"]}


async def sleep_long(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    await asyncio.sleep(30)
    return {}


async def fail(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    raise ValueError("broken")


class Gate:
    """A python node that holds until released, counting how many runs hold it at once."""

    def __init__(self) -> None:
        self.active = 0
        self.peak = 0
        self.entered = 0
        self.release = asyncio.Event()

    async def __call__(self, payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
        self.entered += 1
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await self.release.wait()
        finally:
            self.active -= 1
        return {}


def single(make_pipeline: MakePipeline, call: str, **settings: Any) -> Pipeline:
    return make_pipeline({**settings, "nodes": [{"id": "work", "type": "python", "call": call}]})


async def test_runs_beyond_max_concurrent_runs_wait_their_turn_and_all_finish(
    make_pipeline: MakePipeline, recorder: Recorder
) -> None:
    gate = Gate()
    pipeline = single(make_pipeline, callable_ref(gate))
    async with RunManager(sinks=[recorder], max_concurrent_runs=2) as manager:
        handles = [await manager.start(pipeline) for _ in range(5)]
        for handle in handles[:2]:
            await recorder.wait_for(EventType.NODE_STARTED, "work", run_id=handle.run_id)
        await asyncio.sleep(0.05)
        assert gate.entered == 2
        # Every run exists at once; the queued ones are pending and listed as active.
        assert sorted(manager.active_runs()) == sorted(h.run_id for h in handles)
        assert all(manager.is_running(h.run_id) for h in handles)
        assert [h.state.state for h in handles[2:]] == [RunStatus.PENDING] * 3
        gate.release.set()
        states = await asyncio.gather(*(h.wait(10) for h in handles))
    assert [s.state for s in states] == [RunStatus.SUCCEEDED] * 5
    assert gate.peak == 2
    assert gate.entered == 5
    assert manager.active_runs() == []
    assert not manager.is_running(handles[0].run_id)
    assert not manager.is_running("no-such-run")


async def test_a_finished_run_is_let_go_of_and_its_id_remembered(
    make_pipeline: MakePipeline, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long-lived manager (the console's) keeps no finished run's executor and state: its
    memory does not grow with every run it ever ran. It still knows which runs were its own."""
    import gc
    import weakref

    from engine import manager as manager_module

    monkeypatch.setattr(manager_module, "ENDED_RUNS_KEPT", 3)
    pipeline = single(make_pipeline, callable_ref(extract), params={"rows": {"default": 1}})
    async with RunManager(sinks=[recorder]) as manager:
        handles = [await manager.start(pipeline) for _ in range(4)]
        assert all(manager.get(h.run_id) is h and manager.ran_here(h.run_id) for h in handles)
        states = [await handle for handle in handles]
        assert [s.state for s in states] == [RunStatus.SUCCEEDED] * 4
        assert [manager.get(h.run_id) for h in handles] == [None] * 4
        # The three runs that ended last are remembered as this manager's; the first to end is
        # not. (The four run at once: they need not end in the order they started.)
        ended = [e.run_id for e in recorder.events if e.event_type == "run.completed"]
        assert sorted(ended) == sorted(h.run_id for h in handles)
        assert [manager.ran_here(run_id) for run_id in ended] == [False, True, True, True]
        assert not manager.ran_here("no-such-run")
        executor = weakref.ref(handles[0].executor)
        del handles, states
        gc.collect()
        assert executor() is None


async def test_a_run_exists_as_soon_as_it_is_started(
    make_pipeline: MakePipeline, recorder: Recorder
) -> None:
    async with RunManager(sinks=[recorder]) as manager:
        handle = await manager.start(
            single(make_pipeline, callable_ref(extract), params={"rows": {"default": 1}})
        )
        assert [e.event_type for e in recorder.of(handle.run_id)] == [EventType.RUN_CREATED]
        assert manager.get(handle.run_id) is handle
        state = await handle
    assert state.nodes["work"].output == {"rows": 1}


async def test_unknown_params_are_refused_before_a_run_is_created(
    make_pipeline: MakePipeline, recorder: Recorder
) -> None:
    async with RunManager(sinks=[recorder]) as manager:
        with pytest.raises(ValueError, match="unknown param nope"):
            await manager.start(single(make_pipeline, callable_ref(extract)), params={"nope": 1})
    assert recorder.events == []


async def test_cancelling_a_queued_run_ends_it_cancelled_at_once_without_running_it(
    make_pipeline: MakePipeline, recorder: Recorder
) -> None:
    gate = Gate()
    pipeline = single(make_pipeline, callable_ref(gate))
    async with RunManager(sinks=[recorder], max_concurrent_runs=1) as manager:
        first = await manager.start(pipeline)
        queued = await manager.start(pipeline)
        await recorder.wait_for(EventType.NODE_STARTED, "work", run_id=first.run_id)
        assert manager.cancel(queued.run_id, "not needed", actor="operator:dan")
        began = time.monotonic()
        state = await queued.wait(5)
        assert time.monotonic() - began < 1
        assert not first.done()  # the slot holder is untouched
        gate.release.set()
        assert (await first.wait(5)).state is RunStatus.SUCCEEDED
    assert state.state is RunStatus.CANCELLED
    assert state.reason == "not needed"
    assert state.nodes["work"].state is NodeStatus.CANCELLED
    events = recorder.of(queued.run_id)
    assert [e.event_type for e in events] == [
        EventType.RUN_CREATED,
        EventType.NODE_CANCELLED,
        EventType.RUN_COMPLETED,
    ]
    assert events[-1].actor == "operator:dan"
    assert gate.entered == 1


async def test_a_cancelled_queued_run_does_not_keep_its_place_in_the_queue(
    make_pipeline: MakePipeline, recorder: Recorder
) -> None:
    gate = Gate()
    pipeline = single(make_pipeline, callable_ref(gate))
    async with RunManager(sinks=[recorder], max_concurrent_runs=1) as manager:
        first = await manager.start(pipeline)
        queued = await manager.start(pipeline)
        third = await manager.start(pipeline)
        await recorder.wait_for(EventType.NODE_STARTED, "work", run_id=first.run_id)
        manager.cancel(queued.run_id)
        await queued.wait(5)
        gate.release.set()
        states = await asyncio.gather(first.wait(5), third.wait(5))
    assert [s.state for s in states] == [RunStatus.SUCCEEDED, RunStatus.SUCCEEDED]
    assert gate.peak == 1


async def test_cancel_all_cancels_running_and_queued_runs_and_leaves_nothing_behind(
    make_pipeline: MakePipeline, recorder: Recorder
) -> None:
    pipeline = make_pipeline(
        {
            "cleanup_grace": 0.2,
            "nodes": [
                {"id": "slow", "type": "python", "call": callable_ref(sleep_long)},
                {"id": "shell", "type": "shell", "command": "sleep 30"},
            ],
        }
    )
    before = asyncio.all_tasks()
    async with RunManager(sinks=[recorder], max_concurrent_runs=2) as manager:
        handles = [await manager.start(pipeline) for _ in range(3)]
        for handle in handles[:2]:
            await recorder.wait_for(EventType.NODE_STARTED, "shell", run_id=handle.run_id)
        began = time.monotonic()
        states = await manager.cancel_all("shutting down")
        assert time.monotonic() - began < 3
        assert manager.active_runs() == []
    assert len(states) == 3
    assert {s.state for s in states} == {RunStatus.CANCELLED}
    assert {s.reason for s in states} == {"shutting down"}
    assert psutil.Process().children(recursive=True) == []
    assert asyncio.all_tasks() - before == set()


async def test_closing_the_manager_cancels_what_still_runs(
    make_pipeline: MakePipeline, recorder: Recorder
) -> None:
    before = asyncio.all_tasks()
    async with RunManager(sinks=[recorder]) as manager:
        handle = await manager.start(single(make_pipeline, callable_ref(sleep_long)))
        await recorder.wait_for(EventType.NODE_STARTED, "work")
    assert handle.done()
    assert (await handle).state is RunStatus.CANCELLED
    assert asyncio.all_tasks() - before == set()
    with pytest.raises(RuntimeError, match="closed"):
        await manager.start(single(make_pipeline, callable_ref(sleep_long)))


async def test_raise_for_state_returns_the_state_of_a_run_that_succeeded(
    make_pipeline: MakePipeline,
) -> None:
    async with RunManager() as manager:
        handle = await manager.start(
            single(make_pipeline, callable_ref(extract), params={"rows": {"default": 2}})
        )
        await handle
    assert handle.raise_for_state().state is RunStatus.SUCCEEDED


async def test_raise_for_state_raises_pipeline_timeout_error_for_a_run_past_its_deadline(
    make_pipeline: MakePipeline,
) -> None:
    pipeline = make_pipeline(
        {
            "id": "slowpoke",
            "timeout": 0.2,
            "nodes": [
                {"id": "fast", "type": "python", "call": callable_ref(extract)},
                {"id": "work", "type": "python", "call": callable_ref(sleep_long)},
            ],
            "params": {"rows": {"default": 1}},
        }
    )
    async with RunManager() as manager:
        handle = await manager.start(pipeline)
        await handle
    with pytest.raises(PipelineTimeoutError) as raised:
        handle.raise_for_state()
    assert raised.value.pipeline_id == "slowpoke"
    assert raised.value.timeout == 0.2
    assert raised.value.completed_nodes == ["fast"]


async def test_raise_for_state_raises_run_cancelled_error_for_a_cancelled_run(
    make_pipeline: MakePipeline, recorder: Recorder
) -> None:
    async with RunManager(sinks=[recorder]) as manager:
        handle = await manager.start(single(make_pipeline, callable_ref(sleep_long)))
        await recorder.wait_for(EventType.NODE_STARTED, "work")
        manager.cancel(handle.run_id, "no longer needed")
        await handle
    with pytest.raises(RunCancelledError) as raised:
        handle.raise_for_state()
    assert raised.value.run_id == handle.run_id
    assert raised.value.reason == "no longer needed"


async def test_raise_for_state_raises_run_failed_error_naming_the_failed_nodes(
    make_pipeline: MakePipeline,
) -> None:
    async with RunManager() as manager:
        handle = await manager.start(single(make_pipeline, callable_ref(fail)))
        await handle
    with pytest.raises(RunFailedError) as raised:
        handle.raise_for_state()
    assert raised.value.failed_nodes == ["work"]


async def test_the_builder_api_runs_python_callables_including_a_closure(
    recorder: Recorder,
) -> None:
    factor = 10
    seen: list[int] = []

    def scale(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
        rows = int(payload["inputs"]["extract"]["rows"])
        seen.append(rows)
        return {"rows": rows * factor}

    flow = PipelineBuilder("builder-demo", params={"rows": {"default": 4}})
    flow.python("extract", extract)
    flow.python("scale", scale, needs=["extract"], retry={"max_attempts": 2})
    flow.condition("enough", "scale.rows > 10", needs=["scale"])
    flow.action("report", message="{scale.rows} rows", needs=["enough"])
    flow.delay("pause", "10ms", needs=["enough"], when={"enough": False})
    flow.shell("done", ["echo", "done"], needs=["report", "pause"], trigger="none_failed")
    pipeline = flow.build()

    snapshot_calls = {n["id"]: n.get("call") for n in pipeline.snapshot()["nodes"]}
    assert snapshot_calls["extract"] == "test_manager:extract"  # importable: by its name
    assert str(snapshot_calls["scale"]).startswith("interlock_inline:scale_")  # a closure

    async with RunManager(sinks=[recorder]) as manager:
        handle = await manager.start(pipeline, params={"rows": 3})
        state = await handle.wait(10)
    assert state.state is RunStatus.SUCCEEDED
    assert seen == [3]
    assert state.nodes["scale"].output == {"rows": 30}
    assert state.nodes["report"].output == {"message": "30 rows"}
    assert state.nodes["pause"].state is NodeStatus.SKIPPED
    assert state.nodes["done"].output == {"exit_code": 0}
