"""Fires the `schedule:` entries of the pipelines folder.

Contract: the folder is read again whenever its files change (looked at every `rescan`
seconds). An entry seen for the first time plans from now: fire times before the service saw
it are never made up. When a fire time comes, the service claims it in the store
(`Store.claim_fire`, one INSERT that only one process can win, with a fresh run id) and only
the winner starts the run, with the entry's params and actor `schedule`; so any number of
services on one database start each fire once. A fire found more than `grace` seconds late
(the process was suspended, the loop was blocked) is skipped as missed, as are the fire times
before it. A failure to claim or start is reported on stderr and the schedule goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from engine.events import new_id
from engine.schedule import due_fire, fire_time_text, next_fire, schedule_key, seconds_until

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from engine.manager import RunManager
    from engine.spec import Pipeline, ScheduleEntry
    from engine.store import Owner, Store

ACTOR = "schedule"


@dataclass
class _Planned:
    pipeline: Pipeline
    entry: ScheduleEntry
    folder: str
    last: datetime  # fire times up to here are done (fired, claimed elsewhere, or missed)


class Scheduler:
    def __init__(
        self,
        store: Store,
        manager: RunManager,
        owner: Owner,
        pipelines_dir: Path,
        *,
        rescan: float = 2.0,
        grace: float = 60.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.manager = manager
        self.owner = owner
        self.pipelines_dir = pipelines_dir
        self.rescan = rescan
        self.grace = grace
        self.clock = clock
        self.fired: list[tuple[str, str, str]] = []  # (pipeline, fire time, run id) won here
        self._planned: dict[tuple[str, str], _Planned] = {}
        self._stamp: object = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="interlock-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_scan = 0.0
        while True:
            if loop.time() >= next_scan:
                try:
                    await self._reload()
                except Exception as exc:  # a folder that cannot be read now may be later
                    _warn(f"cannot read the pipelines folder {self.pipelines_dir}: {exc}")
                next_scan = loop.time() + self.rescan
            now = self.clock()
            for planned in list(self._planned.values()):
                await self._tick(planned, now)
            wait = self.rescan
            now = self.clock()
            for planned in self._planned.values():
                wait = min(wait, seconds_until(next_fire(planned.entry, planned.last), now))
            await asyncio.sleep(max(wait, 0.001))

    async def _reload(self) -> None:
        from tui.pipeline_folder import scan_pipelines
        from tui.settings import pipeline_files

        paths = pipeline_files(self.pipelines_dir)
        stamp = tuple((p.name, p.stat().st_mtime_ns) for p in paths)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        found = await asyncio.to_thread(scan_pipelines, self.pipelines_dir)
        now = self.clock()
        planned: dict[tuple[str, str], _Planned] = {}
        for item in found:
            if item.pipeline is None:
                continue
            for entry in item.pipeline.schedule:
                key = (item.pipeline.id, schedule_key(entry))
                old = self._planned.get(key)
                folder = str(item.path.parent.resolve())
                planned[key] = _Planned(item.pipeline, entry, folder, old.last if old else now)
        self._planned = planned

    async def _tick(self, planned: _Planned, now: datetime) -> None:
        due = due_fire(planned.entry, planned.last, now)
        if due is None:
            return
        planned.last = due
        if (now - due).total_seconds() > self.grace:
            return  # missed: skipped, not made up
        pipeline = planned.pipeline
        key = schedule_key(planned.entry)
        fire = fire_time_text(due)
        run_id = new_id()
        try:
            won = await self.store.claim_fire(pipeline.id, key, fire, run_id, self.owner)
            if not won:
                return  # another service claimed this fire
            await self.manager.start(
                pipeline, params=planned.entry.params, search_path=planned.folder,
                run_id=run_id, actor=ACTOR,
            )
        except Exception as exc:
            _warn(f"schedule of {pipeline.id} at {fire}: could not start the run: {exc}")
            return
        self.fired.append((pipeline.id, fire, run_id))

    def next_fires(self) -> dict[tuple[str, str], datetime]:
        return {k: next_fire(p.entry, p.last) for k, p in self._planned.items()}


def _warn(text: str) -> None:
    sys.stderr.write(f"interlock serve: {text}\n")
    sys.stderr.flush()
