"""The attempts' deadlines (`engine.deadlines.Deadlines`): one loop timer for all of a run's
attempts. It wakes the loop a little ahead of a far deadline (a loop that slept for seconds
wakes up late), and must still cancel nothing before its deadline, and everything at it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any

from engine.api import PipelineBuilder
from engine.bus import MemorySink
from engine.deadlines import PREWAKE as _PREWAKE
from engine.deadlines import Deadlines as _Deadlines
from engine.manager import RunManager
from engine.state import RunStatus


class TimerLog:
    """Records the loop times the deadlines' timer was set for, while in its `with` block (on
    this loop instance only)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.times: list[float] = []
        self._loop = loop
        self._call_at = loop.call_at

    def __enter__(self) -> TimerLog:
        self._loop.call_at = self  # type: ignore[assignment, method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        del self._loop.call_at  # the instance attribute: the class method is back

    def __call__(self, when: float, callback: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(callback, "__name__", "") == "_fire":
            self.times.append(when)
        return self._call_at(when, callback, *args, **kwargs)


async def test_a_far_deadline_wakes_the_loop_early_but_cancels_only_at_the_deadline() -> None:
    loop = asyncio.get_running_loop()
    fires: list[tuple[float, bool]] = []  # (loop time, task cancelled by then) at each timer

    class Watched(_Deadlines):
        def _fire(self) -> None:
            super()._fire()
            fires.append((loop.time(), task.cancelling() > 0))

    deadlines = Watched(loop)
    with TimerLog(loop) as timers:
        task = asyncio.create_task(asyncio.sleep(10))
        deadline = loop.time() + 0.2
        deadlines.arm(deadline, task)
        assert timers.times == [deadline - _PREWAKE]  # the early wake, not the deadline

        with contextlib.suppress(asyncio.CancelledError):
            await task
        # However late this loop ran, no timer cancelled the task before its deadline, and
        # the one that did was at or after it.
        assert all(not cancelled for at, cancelled in fires if at < deadline)
        assert [cancelled for _, cancelled in fires][-1] is True
        assert fires[-1][0] >= deadline
    deadlines.close()


async def test_a_near_deadline_is_set_once_and_a_disarmed_one_cancels_nothing() -> None:
    loop = asyncio.get_running_loop()
    deadlines = _Deadlines(loop)
    near = asyncio.create_task(asyncio.sleep(10))
    kept = asyncio.create_task(asyncio.sleep(10))
    deadlines.arm(loop.time() + _PREWAKE, near)
    entry = deadlines.arm(loop.time() + 0.1, kept)

    await asyncio.sleep(_PREWAKE * 1.5)
    assert near.cancelled()
    assert deadlines.disarm(entry) is False  # disarmed in time: its task is left alone
    await asyncio.sleep(0.15)
    assert not kept.done()
    kept.cancel()
    deadlines.close()


async def hangs(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    await asyncio.sleep(30)
    return {}


async def test_the_runs_own_deadline_wakes_the_loop_early_too_and_ends_the_run_at_it() -> None:
    flow = PipelineBuilder("run-deadline", timeout=0.2)
    flow.python("stuck", hangs, timeout=30)
    pipeline = flow.build()
    loop = asyncio.get_running_loop()
    with TimerLog(loop) as timers:
        async with RunManager(sinks=[MemorySink()]) as manager:
            started = loop.time()
            state = await (await manager.start(pipeline))
            ended = loop.time()

    assert state.state is RunStatus.TIMEOUT
    assert ended - started >= 0.2
    # The run's deadline (0.2 s after the run started, so at least that after `started`) had
    # its timer set `_PREWAKE` ahead of it first, then for the deadline itself.
    woken_early = [
        deadline for early, deadline in itertools.pairwise(timers.times)
        if abs(deadline - early - _PREWAKE) < 1e-6
    ]
    assert any(0.2 <= deadline - started < 5 for deadline in woken_early)
