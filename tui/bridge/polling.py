"""The bridge's polling half: what other processes do reaches the console through the store.

Every `poll_interval` it lists the runs, reads the new events of the runs on screen
(`events(after_seq=last)`), and merges the breakers of the store with this process's. A run
whose lease is lost shows as `interrupted` (worked out from the lease by `run_views.summary`;
the console never writes to a run it only reads).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from tui import runs as run_views
from tui.messages import BreakersChanged, RunsListed

if TYPE_CHECKING:
    from collections.abc import Callable

    from textual.message import Message

    from engine.events import Event
    from engine.manager import RunManager
    from engine.store import RunRow, Store
    from tui.messages import RunSummary
    from tui.view import BreakerView

log = logging.getLogger("interlock.console")


class Polling:
    """Mixed into `Bridge`, which provides what is declared here."""

    poll_interval: float
    _listed: list[RunSummary]
    _listed_once: bool
    _breakers: dict[str, BreakerView]
    _watched: dict[str, int]

    _runs_total: int | None

    def _read(self) -> Store:
        raise NotImplementedError

    if TYPE_CHECKING:  # `History`'s, after this class in `Bridge`'s bases: no stub here

        async def _list_rows(self, reader: Store) -> list[RunRow]: ...

    @property
    def manager(self) -> RunManager:
        raise NotImplementedError

    @property
    def store(self) -> Store:
        raise NotImplementedError

    def _post(self, make: Callable[[], Message]) -> None:
        raise NotImplementedError

    def _last_seq(self, run_id: str) -> int | None:
        raise NotImplementedError

    def is_own(self, run_id: str) -> bool:
        raise NotImplementedError

    def is_running_here(self, run_id: str) -> bool:
        raise NotImplementedError

    async def _take(self, run_id: str, events: list[Event], *, own: bool) -> None:
        raise NotImplementedError

    def _show_lease(self, run_id: str, interrupted: bool) -> None:
        raise NotImplementedError

    async def _poll_loop(self) -> None:
        while True:
            try:
                await self.poll()
            except Exception:  # a busy or locked database: try again next time
                log.debug("poll failed", exc_info=True)
            await asyncio.sleep(self.poll_interval)

    async def poll(self) -> None:
        """One look at the store: runs, followed runs' new events, breakers."""
        reader = self._read()
        total_before = self._runs_total
        rows = await self._list_rows(reader)
        listed = [run_views.summary(row, own=self.is_own(row.run_id)) for row in rows]
        total = self._runs_total
        if listed != self._listed or total != total_before or not self._listed_once:
            # The first look is told even when it finds nothing: "no runs" is news too.
            self._listed_once = True
            self._listed = listed
            self._post(lambda: RunsListed(list(listed), total))
        for run_id in list(self._watched):
            last = self._last_seq(run_id)
            if last is None or self.is_running_here(run_id):
                continue
            events = await reader.events(run_id, after_seq=last)
            if events:
                await self._take(run_id, events, own=False)
            shown = next((run for run in listed if run.run_id == run_id), None)
            if shown is not None:
                self._show_lease(run_id, shown.state == "interrupted")
        breakers = run_views.merge_breakers(
            await reader.load_breakers(), self.manager.breakers.snapshots()
        )
        if breakers != self._breakers:
            self._breakers = breakers
            self._post(lambda: BreakersChanged(dict(breakers)))
