"""Run slots: how many of a manager's runs may be at work at once.

Contract: a run takes a slot before it starts (`take`, waiting in turn while every slot is
held) and gives it back when it ends (`release`). A run that is `waiting` (an approval is
pending) lends its slot while it waits (`lend`, as it records `run.state_changed` to `waiting`): a
run waiting for a person may wait for days, and runs waiting for decisions must not keep a
launch, a replay, a resume or a scheduled run queued forever. When a decision brings it back
to `running` (`back`) it counts again at once, even above the limit: a run that has started
never waits for a slot a second time, so the limit bounds the runs that start, and is
exceeded only by runs coming back from a decision, until enough of them end.
The run's executor tells its slot through `waiting_hook` (`RunLog.waiting_changed`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


class RunSlots:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: set[str] = set()  # runs at work
        self._lent: set[str] = set()  # started runs waiting for a decision
        self._queue: deque[tuple[str, asyncio.Future[None]]] = deque()  # in turn

    def free(self) -> bool:
        return len(self._held) < self.limit

    @property
    def held(self) -> int:
        return len(self._held)

    async def take(self, run_id: str, stopped: Callable[[], Awaitable[object]]) -> bool:
        """Wait for a slot and take it; False (holding none) if `stopped()` completes first."""
        if self.free() and not self._queue:
            self._held.add(run_id)
            return True
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((run_id, turn))
        stop = asyncio.ensure_future(stopped())
        try:
            await asyncio.wait((stop, turn), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            self._give_up(run_id, turn)
            raise
        finally:
            stop.cancel()
        if turn.done() and not stop.done():
            return True  # `_hand_on` put it among the held
        self._give_up(run_id, turn)
        return False

    def _give_up(self, run_id: str, turn: asyncio.Future[None]) -> None:
        if turn.done():
            self.release(run_id)  # handed a slot it will not use: the next in line gets it
        else:
            turn.cancel()
            with contextlib.suppress(ValueError):
                self._queue.remove((run_id, turn))

    def _hand_on(self) -> None:
        while self._queue and self.free():
            run_id, turn = self._queue.popleft()
            if not turn.done():
                self._held.add(run_id)
                turn.set_result(None)

    def lend(self, run_id: str) -> None:
        if run_id in self._held:
            self._held.discard(run_id)
            self._lent.add(run_id)
            self._hand_on()

    def back(self, run_id: str) -> None:
        if run_id in self._lent:
            self._lent.discard(run_id)
            self._held.add(run_id)

    def waiting_hook(self, run_id: str) -> Callable[[bool], None]:
        """What the run's executor calls when it starts (True) or stops waiting."""
        return lambda waiting: self.lend(run_id) if waiting else self.back(run_id)

    def release(self, run_id: str) -> None:
        self._lent.discard(run_id)
        if run_id in self._held:
            self._held.discard(run_id)
            self._hand_on()
