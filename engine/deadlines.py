"""Deadlines on one loop timer: the attempts' timeouts of one run, and the run's own deadline.

Contract: `Deadlines.arm(deadline, target)` cancels `target` (a task) or calls it (a function)
at `deadline` (loop time) unless `disarm`ed before; `disarm` says whether the deadline had
already cancelled the task, which is how the attempt path (`engine.attempt`, the one place a
node's timeout is decided) tells its own timeout from any other cancellation. The semantics
are `asyncio.timeout`'s, with the same `uncancel` bookkeeping on the attempt's side.

Why not an `asyncio.timeout` per attempt: that is a context manager and a timer handle per
attempt, the handle cancelled again (and left in the loop's heap) when nearly every attempt
ends in time; here an attempt's deadline is an entry in a heap and one `call_at` waits for the
earliest (measured in benchmarks/NOTES.md, "## Executor").
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["PREWAKE", "Deadlines"]

# A deadline counts as reached this close to it, as the loop's own timers do.
_CLOCK_RESOLUTION = time.get_clock_info("monotonic").resolution
_FIRED: Any = object()  # an entry's task slot once its deadline cancelled the task
# A deadline further off than twice this is first woken up for this long before it: see
# `Deadlines.arm`.
PREWAKE = 0.02


class Deadlines:
    """The attempts' timeouts of one run, and the run's own deadline, on one loop timer.

    `asyncio.timeout` costs a context manager and a timer handle per attempt, the handle
    cancelled again (and left in the loop's heap) when nearly every attempt ends in time. Here
    an attempt's deadline is an entry in a heap, and one `call_at` waits for the earliest. The
    semantics are `asyncio.timeout`'s: a deadline reached cancels the attempt's task, and the
    attempt (see `engine.attempt`) turns that cancellation, and only that one, into a
    timeout, with the same `uncancel` bookkeeping.

    An entry is `[deadline, order, target]`, the target an attempt's task (cancelled when the
    deadline is reached) or, for the run's deadline, a function (called); `disarm` clears the
    target, and cleared entries leave the heap when they reach its top (or when they are more
    than half of it).

    The timer for a deadline more than `2 * PREWAKE` away first goes off `PREWAKE` early,
    finds nothing due and is set again for the deadline itself: a loop that slept for seconds
    wakes up late (measured in benchmarks/NOTES.md, "## Executor"). The early turn costs a
    timer callback per deadline cycle, nothing per attempt.
    """

    __slots__ = ("_at", "_count", "_handle", "_heap", "_loop", "_stale")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[list[Any]] = []
        self._handle: asyncio.TimerHandle | None = None
        self._at = math.inf  # the deadline the timer is set for
        self._count = 0
        self._stale = 0

    def arm(self, deadline: float, target: asyncio.Task[Any] | Callable[[], None]) -> list[Any]:
        """Cancel `target` (a task), or call it, at `deadline` (loop time) unless disarmed
        before."""
        self._count += 1
        entry = [deadline, self._count, target]
        heapq.heappush(self._heap, entry)
        if deadline < self._at:
            self._set_timer(deadline)
        return entry

    def _set_timer(self, deadline: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._at = deadline
        at = deadline - PREWAKE if deadline - self._loop.time() > 2 * PREWAKE else deadline
        self._handle = self._loop.call_at(at, self._fire)

    def disarm(self, entry: list[Any]) -> bool:
        """The attempt is over: True if its deadline had already cancelled its task."""
        if entry[2] is _FIRED:
            return True
        entry[2] = None
        heap = self._heap
        if heap[0] is entry:
            heapq.heappop(heap)
            while heap and heap[0][2] is None:
                heapq.heappop(heap)
                self._stale -= 1
        else:
            self._stale += 1
            if self._stale > 64 and self._stale * 2 > len(heap):
                self._heap = [e for e in heap if e[2] is not None]
                heapq.heapify(self._heap)
                self._stale = 0
        return False

    def _fire(self) -> None:
        # The handle may be early (its entry was disarmed, or it woke the loop ahead of the
        # deadline): the next live deadline is re-armed.
        self._handle = None
        self._at = math.inf
        heap = self._heap
        reached = self._loop.time() + _CLOCK_RESOLUTION
        while heap and (heap[0][2] is None or heap[0][0] < reached):
            entry = heapq.heappop(heap)
            target = entry[2]
            if target is None:
                self._stale -= 1
                continue
            entry[2] = _FIRED
            if isinstance(target, asyncio.Task):
                target.cancel()
            else:
                target()
        if heap:
            self._set_timer(heap[0][0])

    def close(self) -> None:
        """No attempt runs any more: drop the timer (it would hold on to the run until then)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._at = math.inf

