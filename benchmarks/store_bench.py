"""W5-W6: the durable store.

- W5: events appended per second (publish a stream of `node.log` events, then `flush`), with
  `synchronous=FULL` and `NORMAL`, against plain `sqlite3` writing the same rows in one
  transaction; one commit per event (`append` of a single event) for scale; and how long after
  an event is published a second process following the run (`interlock events RUN --follow`)
  prints it.
- W6: a run of 100,000 events (1,000 nodes, half of them done, each with 198 log lines): the
  pure fold, reading and folding it from the store, and resuming it (until it runs again, and
  until it has finished the other 500 nodes).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.common import FLOOR, BenchmarkError, Row, Target, percentile, repeat
from engine.api import PipelineBuilder
from engine.events import Event, EventType, new_id, utc_now_iso
from engine.manager import RunManager
from engine.state import RunStatus, fold
from engine.store import SQL_INSERT_EVENT, Store, _event_row

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from benchmarks.common import Settings
    from engine.spec import Pipeline

W5_TITLE = "store: events appended per second"
W5_COMMIT_TITLE = "store: one commit per event"
W5_FOLLOW_TITLE = "store: a second process sees an event (interlock events --follow)"
W6_TITLE = "fold and resume a 100,000-event run"
LINE = "2024-06-01 12:00:00 INFO processed batch 17 of 40 (1,024 rows, 3.2 MB)"


def interlock_command() -> list[str]:
    """The installed `interlock` script beside this Python (not a version-manager shim)."""
    script = Path(sys.executable).with_name("interlock")
    if script.exists():
        return [str(script)]
    found = shutil.which("interlock")
    return [found] if found else [sys.executable, "-m", "tui.cli"]


def _event(run_id: str, seq: int, event_type: str, **fields: Any) -> Event:
    return Event(new_id(), seq, event_type, run_id, utc_now_iso(), "engine", 1, **fields)


def run_start(run_id: str, pipeline_id: str = "bench-store",
              definition: dict[str, Any] | None = None) -> list[Event]:
    data: dict[str, Any] = {"pipeline_id": pipeline_id, "params": {}}
    if definition is not None:
        data["definition"] = definition
    return [
        _event(run_id, 1, EventType.RUN_CREATED, data=data),
        _event(run_id, 2, EventType.RUN_STATE_CHANGED, data={"from": "pending", "to": "running"}),
    ]


def log_events(run_id: str, first_seq: int, count: int, node_id: str = "n0") -> list[Event]:
    return [
        _event(run_id, first_seq + i, EventType.NODE_LOG, node_id=node_id,
               data={"stream": "stdout", "line": LINE})
        for i in range(count)
    ]


# ---------------------------------------------------------------------------------------------
# W5


async def _store_throughput(path: Path, synchronous: str, count: int) -> float:
    """Seconds to publish `count` events and flush them (a fresh run in a fresh database)."""
    run_id = new_id()
    events = log_events(run_id, 3, count)
    async with Store(path, synchronous=synchronous) as store:
        await store.append(run_start(run_id))
        start = time.perf_counter()
        for event in events:
            store.publish(event)
        await store.flush()
        return time.perf_counter() - start


def _sqlite_throughput(path: Path, count: int) -> float:
    """The floor: the same events serialised and written through plain sqlite3, in one
    executemany and one transaction."""
    events = log_events(new_id(), 1, count)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, event_id TEXT NOT NULL "
            "UNIQUE, run_id TEXT NOT NULL, seq INTEGER NOT NULL, event_type TEXT NOT NULL, "
            "node_id TEXT, timestamp_utc TEXT NOT NULL, body TEXT NOT NULL, UNIQUE (run_id, seq))"
        )
        start = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(SQL_INSERT_EVENT, [_event_row(e) for e in events])
        conn.execute("COMMIT")
        return time.perf_counter() - start
    finally:
        conn.close()


async def _one_commit_each(path: Path, count: int) -> float:
    """Seconds per event when each is committed on its own (`append` of one event)."""
    run_id = new_id()
    events = log_events(run_id, 3, count)
    async with Store(path, synchronous="FULL") as store:
        await store.append(run_start(run_id))
        start = time.perf_counter()
        for event in events:
            await store.append([event])
        return (time.perf_counter() - start) / count


def _sqlite_one_commit_each(path: Path, count: int) -> float:
    run_id = new_id()
    rows = [_event_row(e) for e in log_events(run_id, 1, count)]
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, event_id TEXT NOT NULL "
            "UNIQUE, run_id TEXT NOT NULL, seq INTEGER NOT NULL, event_type TEXT NOT NULL, "
            "node_id TEXT, timestamp_utc TEXT NOT NULL, body TEXT NOT NULL, UNIQUE (run_id, seq))"
        )
        start = time.perf_counter()
        for row in rows:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(SQL_INSERT_EVENT, row)
            conn.execute("COMMIT")
        return (time.perf_counter() - start) / count
    finally:
        conn.close()


async def _follow_latencies(path: Path, count: int) -> list[float]:
    """Seconds from publishing an event to a follower process printing it."""
    run_id = new_id()
    published: dict[int, float] = {}
    seen: dict[int, float] = {}
    rng = random.Random(7)
    async with Store(path, synchronous="FULL") as store:
        await store.append(run_start(run_id))
        command = [*interlock_command(), "events", run_id, "--follow", "--db", str(path)]
        # Its stderr is read only if it fails (it writes nothing there otherwise).
        proc = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        assert proc.stdout is not None
        stdout = proc.stdout
        ready = asyncio.Event()

        async def read() -> None:
            import json

            while line := await stdout.readline():
                seq = json.loads(line)["seq"]
                seen[seq] = time.perf_counter()
                if seq == 2:
                    ready.set()

        reader = asyncio.create_task(read())
        try:
            # The follower is up once it has printed what was there; if it ends first, or
            # takes 30 s, it is not going to.
            up = asyncio.create_task(ready.wait())
            await asyncio.wait([up, reader], timeout=30, return_when=asyncio.FIRST_COMPLETED)
            up.cancel()
            if not ready.is_set():
                await _follower_failed(command, proc)
            seq = 2
            for _ in range(count):
                seq += 1
                store.publish(log_events(run_id, seq, 1)[0])
                published[seq] = time.perf_counter()
                await store.flush()
                # Events at random moments, so they land anywhere in the follower's poll cycle.
                await asyncio.sleep(rng.uniform(0.02, 0.15))
            seq += 1
            store.publish(_event(run_id, seq, EventType.RUN_COMPLETED,
                                 data={"state": "succeeded", "from": "running"}))
            await store.flush()
            async with asyncio.timeout(30):
                await reader
                await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    return [seen[s] - published[s] for s in published if s in seen]


async def _follower_failed(command: list[str], proc: asyncio.subprocess.Process) -> None:
    # Its output may have ended a moment before its exit is known.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), 1.0)
    if proc.returncode is None:
        proc.kill()
        await proc.wait()
        what = "did not print the run's events within 30 s"
    else:
        what = f"exited {proc.returncode}"
    assert proc.stderr is not None
    tail = (await proc.stderr.read()).decode(errors="replace").strip().splitlines()[-3:]
    said = f": {' / '.join(tail)}" if tail else ""
    raise BenchmarkError(f"the follower ({' '.join(command)}) {what}{said}")


async def w5(settings: Settings) -> list[Row]:
    count = 5_000 if settings.quick else 50_000
    reps = settings.reps(5, 1)
    rows: list[Row] = []
    title = f"{W5_TITLE} ({count:,} events)"
    with tempfile.TemporaryDirectory(prefix="interlock-bench-") as tmp:
        base = Path(tmp)
        n = 0

        def fresh() -> Path:
            nonlocal n
            n += 1
            return base / f"w5-{n}.db"

        floor = [count / _sqlite_throughput(fresh(), count) for _ in range(reps)]
        rows.append(Row("W5", title, "sqlite3, one transaction (floor)", "appended", "events/s",
                        floor, role=FLOOR))
        for sync, target in (("FULL", Target(50_000, higher=True)), ("NORMAL", None)):
            seconds = [await _store_throughput(fresh(), sync, count) for _ in range(reps)]
            rows.append(Row("W5", title, f"Store, synchronous={sync}", "appended", "events/s",
                            [count / s for s in seconds], target=target))

        each = 20 if settings.quick else 200
        rows.append(Row("W5", W5_COMMIT_TITLE, "sqlite3, a commit per event (floor)", "per event",
                        "us", [_sqlite_one_commit_each(fresh(), each) * 1e6 for _ in range(reps)],
                        role=FLOOR))
        rows.append(Row("W5", W5_COMMIT_TITLE, "Store.append of one event (FULL)", "per event",
                        "us", [await _one_commit_each(fresh(), each) * 1e6 for _ in range(reps)]))

        lags = [s * 1e3 for s in await _follow_latencies(fresh(), 8 if settings.quick else 60)]
        rows += [
            Row("W5", W5_FOLLOW_TITLE, "follower process (polls every 0.1 s)", "latency p50", "ms",
                [percentile(lags, 50)], note=f"{len(lags)} events"),
            Row("W5", W5_FOLLOW_TITLE, "follower process (polls every 0.1 s)", "latency p99", "ms",
                [percentile(lags, 99)], target=Target(300.0)),
        ]
    return rows


# ---------------------------------------------------------------------------------------------
# W6


def resume_pipeline(width: int = 1000) -> Pipeline:
    from benchmarks.engine_bench import noop

    flow = PipelineBuilder("bench-resume", max_concurrency=64)
    for i in range(width):
        flow.python(f"n{i}", noop)
    return flow.build()


def big_run(pipeline: Pipeline, done: int = 500, logs: int = 198) -> list[Event]:
    """A run interrupted half way: `done` nodes succeeded, each with `logs` log lines."""
    run_id = new_id()
    events = run_start(run_id, pipeline.id, pipeline.snapshot())
    seq = len(events)
    for node in pipeline.nodes[:done]:
        seq += 1
        events.append(_event(run_id, seq, EventType.NODE_STARTED, node_id=node.id,
                             data={"timeout": 300.0}))
        events += log_events(run_id, seq + 1, logs, node.id)
        seq += logs + 1
        events.append(_event(run_id, seq, EventType.NODE_SUCCEEDED, node_id=node.id,
                             data={"output": {}}))
    return events


async def _resume_once(source: Path, target: Path, run_id: str) -> tuple[float, float]:
    shutil.copyfile(source, target)
    async with Store(target) as store, RunManager(store=store) as manager:
        start = time.perf_counter()
        handle = await manager.resume(run_id)
        running = time.perf_counter() - start
        state = await handle
        finished = time.perf_counter() - start
    if state.state is not RunStatus.SUCCEEDED:
        raise RuntimeError(f"resumed run ended {state.state}: {state.reason}")
    return running, finished


async def w6(settings: Settings) -> list[Row]:
    reps = settings.reps(5, 1)
    pipeline = resume_pipeline()
    events = big_run(pipeline, done=500, logs=18 if settings.quick else 198)
    run_id = events[0].run_id
    title = W6_TITLE if len(events) >= 100_000 else f"fold and resume a {len(events):,}-event run"
    rows: list[Row] = []
    pure = await repeat(_async(lambda: fold(events)), reps)
    with tempfile.TemporaryDirectory(prefix="interlock-bench-") as tmp:
        source = Path(tmp) / "w6.db"
        async with Store(source) as store:
            for i in range(0, len(events), 10_000):
                await store.append(events[i : i + 10_000])

        def read_bodies() -> None:
            conn = sqlite3.connect(source)
            try:
                conn.execute("SELECT body FROM events WHERE run_id = ? ORDER BY seq",
                             (run_id,)).fetchall()
            finally:
                conn.close()

        bodies = await repeat(_async(read_bodies), reps)
        async with Store(source, readonly=True) as reader:
            stored = await repeat(lambda: reader.fold_run(run_id), reps)
        resumes = [await _resume_once(source, Path(tmp) / f"resume-{i}.db", run_id)
                   for i in range(reps)]
    target = Target(500.0)
    rows += [
        Row("W6", title, "SELECT the bodies (sqlite3, no parsing)", "time", "ms",
            [s * 1e3 for s in bodies], role=FLOOR),
        Row("W6", title, "fold, in memory (pure)", "time", "ms", [s * 1e3 for s in pure],
            target=target),
        Row("W6", title, "Store.fold_run: read, parse, fold", "time", "ms",
            [s * 1e3 for s in stored], target=target),
        Row("W6", title, "RunManager.resume: running again", "time", "ms",
            [r * 1e3 for r, _ in resumes]),
        Row("W6", title, "RunManager.resume: the other 500 nodes done", "time", "ms",
            [f * 1e3 for _, f in resumes]),
    ]
    return rows


def _async(fn: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    async def call() -> Any:
        return fn()

    return call


WORKLOADS: dict[str, Callable[[Settings], Awaitable[list[Row]]]] = {"W5": w5, "W6": w6}
