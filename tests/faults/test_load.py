"""Load in one process: many concurrent runs under a run limit and a node limit, durable store.

The limits are measured by the nodes themselves (`faults.work.measured`: counters per run and
in all, kept at their maximum), not by asking the engine. Every run must succeed, the store must
hold all of it, and once everything is closed the process must be back to the file descriptors
and threads it started with. Peak memory (RSS, sampled every 20 ms) is printed and recorded
(`record_property`), for tests/faults/README.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import TYPE_CHECKING, Any

import psutil
import pytest

from engine.loader import load_dict
from engine.manager import RunManager
from engine.state import RunStatus
from engine.store import Store
from faults.helpers import report
from faults.work import GAUGE, Gauge

if TYPE_CHECKING:
    from pathlib import Path

MAX_CONCURRENCY = 8
SETTLE = 3.0  # seconds for closed connections and finished threads to be gone


def layered(nodes: int, pipeline_id: str) -> dict[str, Any]:
    """`nodes` python nodes: one source, then layers 12 wide each needing two of the layer
    before, then a join. Every seventh node is a sync callable (a worker thread)."""
    raw_nodes: list[dict[str, Any]] = [
        {"id": "n0", "type": "python", "call": "faults.work:measured"}
    ]
    previous = ["n0"]
    layer: list[str] = []
    for i in range(1, nodes - 1):
        node_id = f"n{i}"
        call = "faults.work:measured_sync" if i % 7 == 0 else "faults.work:measured"
        needs = sorted({previous[i % len(previous)], previous[(i * 5 + 1) % len(previous)]})
        raw_nodes.append({"id": node_id, "type": "python", "call": call, "needs": needs})
        layer.append(node_id)
        if len(layer) == 12:
            previous, layer = layer, []
    last = layer or previous
    raw_nodes.append(
        {"id": f"n{nodes - 1}", "type": "python", "call": "faults.work:measured", "needs": last}
    )
    return {"id": pipeline_id, "max_concurrency": MAX_CONCURRENCY, "nodes": raw_nodes}


async def _sample_rss(peak: list[int], stop: asyncio.Event) -> None:
    process = psutil.Process()
    while not stop.is_set():
        peak[0] = max(peak[0], process.memory_info().rss)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.02)


def _resources() -> tuple[int, int, int]:
    """Open file descriptors, Python threads, OS threads."""
    process = psutil.Process()
    return process.num_fds(), threading.active_count(), process.num_threads()


async def _settled(baseline: tuple[int, int, int]) -> tuple[int, int, int]:
    deadline = time.monotonic() + SETTLE
    while True:
        now = _resources()
        if now == baseline or time.monotonic() > deadline:
            return now
        await asyncio.sleep(0.05)


async def run_load(
    tmp_path: Path, runs: int, nodes: int, run_limit: int, record: Any
) -> dict[str, Any]:
    GAUGE.__dict__.update(Gauge().__dict__)
    process = psutil.Process()
    baseline = _resources()
    start_rss = process.memory_info().rss
    peak = [start_rss]
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample_rss(peak, stop))
    pipeline = load_dict(layered(nodes, f"load-{runs}x{nodes}"))
    started = time.perf_counter()
    async with Store(tmp_path / "load.db") as store:
        async with RunManager(store=store, max_concurrent_runs=run_limit) as manager:
            handles = [await manager.start(pipeline) for _ in range(runs)]
            states = await asyncio.gather(*(h.wait(300) for h in handles))
        elapsed = time.perf_counter() - started
        stored = [await store.fold_run(h.run_id) for h in handles]
        events = store.events_committed
    stop.set()
    await sampler
    after = await _settled(baseline)

    assert [s.state for s in states] == [RunStatus.SUCCEEDED] * runs
    assert stored == states, "the store's fold differs from the live states"
    assert GAUGE.executed == runs * nodes
    assert GAUGE.active == 0
    assert max(GAUGE.peak_by_run.values()) <= MAX_CONCURRENCY
    assert GAUGE.runs_peak <= run_limit
    assert GAUGE.peak <= run_limit * MAX_CONCURRENCY
    assert max(GAUGE.peak_by_run.values()) == MAX_CONCURRENCY  # the limit was reached
    assert GAUGE.runs_peak > 1, "runs never overlapped"
    assert after == baseline, f"(fds, threads, OS threads) {baseline} before, {after} after"

    numbers = {
        "runs": runs,
        "nodes_per_run": nodes,
        "run_limit": run_limit,
        "max_concurrency": MAX_CONCURRENCY,
        "seconds": round(elapsed, 2),
        "events": events,
        "nodes_per_second": round(runs * nodes / elapsed),
        "peak_nodes_in_a_run": max(GAUGE.peak_by_run.values()),
        "peak_runs_with_a_node_running": GAUGE.runs_peak,
        "peak_nodes_in_all": GAUGE.peak,
        "peak_rss_mb": round(peak[0] / 2**20, 1),
        "rss_growth_mb": round((peak[0] - start_rss) / 2**20, 1),
        "fds_threads_os_threads_before_after": [baseline, after],
    }
    for key, value in numbers.items():
        record(key, value)
    report(f"load: {numbers}")
    return numbers


async def test_ten_runs_of_thirty_nodes_keep_both_limits_and_release_everything(
    tmp_path: Path, record_property: Any
) -> None:
    await run_load(tmp_path, runs=10, nodes=30, run_limit=4, record=record_property)


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_fifty_runs_of_a_hundred_nodes_keep_both_limits_and_release_everything(
    tmp_path: Path, record_property: Any
) -> None:
    await run_load(tmp_path, runs=50, nodes=100, run_limit=10, record=record_property)
