"""Run slots: a run waiting for an approval lends its slot; coming back it counts again."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from engine.api import callable_ref
from engine.events import EventType
from engine.manager import RunManager
from engine.run_slots import RunSlots
from engine.state import RunStatus

if TYPE_CHECKING:
    from conftest import MakePipeline, Recorder

    from engine.nodes import NodeContext


async def quick(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    return {"done": True}


async def test_runs_waiting_for_approvals_hold_no_slot(
    make_pipeline: MakePipeline, recorder: Recorder
) -> None:
    gated = make_pipeline({"nodes": [{"id": "gate", "type": "approval"}]})
    work = make_pipeline({"nodes": [{"id": "work", "type": "python", "call": callable_ref(quick)}]})
    async with RunManager(sinks=[recorder], max_concurrent_runs=1) as manager:
        waiting = [await manager.start(gated) for _ in range(3)]
        for handle in waiting:
            await recorder.wait_for(EventType.APPROVAL_REQUESTED, "gate", run_id=handle.run_id)
        state = await (await manager.start(work)).wait(5)
        assert state.state is RunStatus.SUCCEEDED
        for handle in waiting:
            assert manager.approve(handle.run_id, "gate")
        finals = await asyncio.gather(*(h.wait(5) for h in waiting))
    assert [s.state for s in finals] == [RunStatus.SUCCEEDED] * 3


async def test_a_run_back_from_waiting_counts_again_and_the_queue_waits_for_it() -> None:
    slots = RunSlots(1)
    never: asyncio.Event = asyncio.Event()
    assert await slots.take("a", never.wait)
    slots.lend("a")  # a waits for a decision
    assert await slots.take("b", never.wait)
    slots.back("a")  # decided: a is at work again, above the limit
    assert slots.held == 2
    queued = asyncio.ensure_future(slots.take("c", never.wait))
    await asyncio.sleep(0)
    slots.release("a")
    await asyncio.sleep(0)
    assert not queued.done()  # b still holds the only slot
    slots.release("b")
    assert await asyncio.wait_for(queued, 1)
    assert slots.held == 1


async def test_a_run_stopped_while_queued_takes_no_slot_and_passes_its_turn_on() -> None:
    slots = RunSlots(1)
    never: asyncio.Event = asyncio.Event()
    stop = asyncio.Event()
    assert await slots.take("a", never.wait)
    first = asyncio.ensure_future(slots.take("b", stop.wait))
    second = asyncio.ensure_future(slots.take("c", never.wait))
    await asyncio.sleep(0)
    stop.set()
    assert await asyncio.wait_for(first, 1) is False
    slots.release("a")
    assert await asyncio.wait_for(second, 1) is True
    assert slots.held == 1
