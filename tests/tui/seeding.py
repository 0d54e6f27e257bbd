"""Deterministic console data for the snapshot tests and `screenshots/make_screenshots.py`.

Real runs of real pipelines, made repeatable: fixed run ids, a fake clock for event timestamps
and breakers (so durations, countdowns and cool-downs come out the same every time), and a
console clock that stands still.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.breaker import BreakerRegistry
from engine.loader import load_file
from engine.manager import RunManager, pipeline_from_state, resolve_params
from engine.state import NodeStatus
from engine.store import Store
from tui.app import InterlockApp
from tui.bridge import Bridge

if TYPE_CHECKING:
    from engine.manager import RunHandle

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "pipelines"
TEST_PIPELINES = Path(__file__).resolve().parent / "data" / "pipelines"
START = datetime(2025, 5, 1, 9, 0, 0, tzinfo=UTC).timestamp()
OPERATOR = "operator:alice"


def run_id(name: str) -> str:
    """A fixed run id per name (32 hex digits, like a real one)."""
    return hashlib.sha256(name.encode()).hexdigest()[:32]


class FakeClock:
    """Event time moves `step` seconds per event; the wall clock reads where it has got to."""

    def __init__(self, start: float = START, step: float = 0.25) -> None:
        self.t = start
        self.step = step

    def iso(self) -> str:
        self.t += self.step
        return datetime.fromtimestamp(self.t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def wall(self) -> float:
        return self.t


def pipelines_dir(dest: Path, *, bundled: tuple[str, ...] = ("approval", "branching",
                  "flaky", "hello", "timeouts"),
                  extra: tuple[str, ...] = ("broken", "gated", "midflight", "slow")) -> Path:
    """A pipelines folder with some bundled pipelines and some test ones."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in bundled:
        shutil.copy(BUNDLED / f"{name}.yaml", dest / f"{name}.yaml")
    for name in extra:
        shutil.copy(TEST_PIPELINES / f"{name}.yaml", dest / f"{name}.yaml")
    return dest


async def _decide_when_waiting(manager: RunManager, handle: RunHandle, approve: bool) -> None:
    for _ in range(1000):
        if handle.state.nodes["publish_gate"].state is NodeStatus.WAITING:
            break
        await asyncio.sleep(0.01)
    decide = manager.approve if approve else manager.reject
    decide(handle.run_id, "publish_gate", actor=OPERATOR, reason=None if approve else "not today")


async def seed(db: Path, pipelines: Path, *, slow: bool = False) -> dict[str, str]:
    """Finished runs of the bundled pipelines, each with a fixed id and fake timestamps.

    `slow` adds the `timeouts` pipeline, which takes its 3 s run deadline to finish.
    """
    clock = FakeClock()
    ids: dict[str, str] = {}
    plan: list[tuple[str, str, dict[str, Any], bool | None]] = [
        ("hello", "hello", {}, None),
        ("branching", "branching", {}, None),
        ("branching-alert", "branching", {"min_rows": 100}, None),
        ("approval-approved", "approval", {}, True),
        ("approval-rejected", "approval", {}, False),
        ("hello-again", "hello", {"who": "operators"}, None),
    ]
    if slow:
        plan.append(("timeouts", "timeouts", {}, None))
    await _seed(db, pipelines, clock, plan, ids)
    return ids


async def _seed(
    db: Path,
    pipelines: Path,
    clock: FakeClock,
    plan: list[tuple[str, str, dict[str, Any], bool | None]],
    ids: dict[str, str],
) -> None:
    async with Store(db) as store:
        breakers = BreakerRegistry(clock=clock.wall)
        async with RunManager(store=store, now=clock.iso, breakers=breakers) as manager:
            for name, pipeline_id, params, decision in plan:
                clock.t += 60.0  # a minute between runs
                pipeline = load_file(pipelines / f"{pipeline_id}.yaml")
                handle = await manager.start(
                    pipeline, params=params, run_id=run_id(name), search_path=str(pipelines),
                    actor="cli",
                )
                if decision is not None:
                    await _decide_when_waiting(manager, handle, decision)
                await handle.wait(30)
                ids[name] = handle.run_id
            clock.t += 60.0
            original = await store.fold_run(ids["hello"])
            replayed = await manager.start(
                pipeline_from_state(original), params=original.params, replay_of=ids["hello"],
                run_id=run_id("hello-replay"), search_path=str(pipelines), actor=OPERATOR,
            )
            await replayed.wait(30)
            ids["hello-replay"] = replayed.run_id


def console(
    db: Path,
    pipelines: Path,
    *,
    events: FakeClock | None = None,
    now: float = START + 600.0,
    ascii: bool = False,
    poll_interval: float = 0.25,
) -> InterlockApp:
    """The console on the seeded database, with a clock standing still at `now`; its own runs
    take their timestamps from `events` (by default a fake clock a minute before `now`)."""
    frozen = now
    events = events or FakeClock(now - 60.0)
    bridge = Bridge(
        db,
        search_path=str(pipelines),
        clock=lambda: frozen,
        actor=OPERATOR,
        poll_interval=poll_interval,
        manager_options={"now": events.iso, "breakers": BreakerRegistry(clock=events.wall)},
    )
    return InterlockApp(pipelines_dir=pipelines, db_path=db, ascii=ascii, bridge=bridge)


async def interrupted_run(
    db: Path,
    pipeline_file: Path,
    run: str,
    *,
    ago: float = 0.0,
    at: float | None = None,
    also: tuple[tuple[str, str | None, dict[str, Any]], ...] = (),
) -> str:
    """A run whose process died mid-flight: its first node started, its owner is a dead pid.

    The events are the executor's own (`create`), then the ones a live run writes next; `ago`
    seconds in the past (a process that died that long ago), or from the epoch time `at` on, a
    quarter of a second apart (for pictures that come out the same every time). `also`: more
    events (type, node, data) the run wrote before it died, after its first node started.
    """
    from engine.events import Event, EventType, new_id
    from engine.executor import Executor
    from engine.store import Owner

    pipeline = load_file(pipeline_file)
    first = pipeline.nodes[0].id
    async with Store(db) as store:
        params = resolve_params(pipeline, {})
        fixed = [at - 0.25] if at is not None else None

        def then() -> str:
            if fixed is not None:
                fixed[0] += 0.25
            when = fixed[0] if fixed is not None else time.time() - ago
            return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

        executor = Executor(pipeline, run_id=run, params=params, sinks=[store], now=then)
        executor.create(actor="cli")
        follow: list[tuple[str, str | None, dict[str, Any]]] = [
            (EventType.RUN_STATE_CHANGED, None, {"from": "pending", "to": "running"}),
            (EventType.NODE_STARTED, first, {"timeout": pipeline.timeout_for(pipeline.nodes[0])}),
            *also,
        ]
        events = [
            Event(new_id(), seq, kind, run, then(), node_id=node, data=data)
            for seq, (kind, node, data) in enumerate(follow, start=2)
        ]
        if fixed is not None:
            # Found dead five minutes later, at a fixed time too (not when the picture is made).
            fixed[0] += 300.0
            events.append(Event(
                new_id(), len(events) + 2, EventType.RUN_STATE_CHANGED, run, then(),
                reason="owner process is gone",
                data={"from": "running", "to": "interrupted", "owner_pid": 2**22 + 12345},
            ))
        await store.append(events)
        dead = Owner(Owner.current().host, 2**22 + 12345, 1.0)  # above Linux's default pid_max
        await store.claim_run(run, dead)
    if ago or at is not None:
        # Its last heartbeat too was then (the claim stamps it now). Test data only: the store
        # has no call to back-date a heartbeat, nor should it.
        import sqlite3

        heard = at if at is not None else time.time() - ago
        with contextlib.closing(sqlite3.connect(db)) as conn, conn:
            conn.execute("UPDATE runs SET heartbeat_at = ? WHERE run_id = ?", (heard, run))
    return run
