"""`python -m benchmarks.history`: the whole run history and a big run, in the store and the
console (issue 20's targets). Prints one line per figure; writes nothing.

    python -m benchmarks.history                 # 100,000 runs, a 10,000-node run
    python -m benchmarks.history --runs 20000 --nodes 2000 --reps 3

- store: the first page (500 runs, newest first) and the count of all runs; a filter by state,
  by pipeline, and by a word of the run id (a page and its count, over every run); a page deep in
  the history (keyset, after 90% of the runs).
- console: home's first paint (the app starts on the database until the runs table shows its
  first page and the title the total), a filter typed into `/` until the title shows the
  filtered count, and the view of a stored 10,000-node run (pushed until its DAG is laid out and
  its node table filled). Target: first paint and the big run's view within 1 s, a filter
  within 300 ms.

`seed_history` writes synthetic finished runs straight through `Store.append` (three events
each, as a real run's `run.created`, `run.state_changed` and `run.completed`); `seed_big_run`
really runs a 10,000-node pipeline of no-op python nodes. Tests reuse both at a small size.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.events import Event, EventType, new_id

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from engine.store import Store

PIPELINES = ("etl", "deploy", "report", "backup", "billing")
# Of every 20 runs: 16 succeed, 3 fail, 1 is cancelled.
STATES = ("succeeded",) * 16 + ("failed",) * 3 + ("cancelled",)
T0 = datetime(2025, 1, 1, tzinfo=UTC).timestamp()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def history_events(index: int) -> list[Event]:
    """The three events of synthetic finished run number `index` (a minute after the last)."""
    run_id = new_id()
    pipeline = PIPELINES[index % len(PIPELINES)]
    state = STATES[index % len(STATES)]
    start = T0 + index * 60.0
    definition = {"id": pipeline, "nodes": [{"id": "work", "type": "shell", "command": "true"}]}
    return [
        Event(new_id(), 1, EventType.RUN_CREATED, run_id, _iso(start), "cli", 1,
              data={"pipeline_id": pipeline, "definition": definition, "params": {}}),
        Event(new_id(), 2, EventType.RUN_STATE_CHANGED, run_id, _iso(start + 0.01), "engine", 1,
              data={"from": "pending", "to": "running"}),
        Event(new_id(), 3, EventType.RUN_COMPLETED, run_id, _iso(start + 30.0), "engine", 1,
              data={"state": state, "from": "running"}),
    ]


async def seed_history(store: Store, runs: int, *, first: int = 0) -> None:
    """Append `runs` synthetic finished runs (runs `first`...), a thousand per commit."""
    for chunk in range(first, first + runs, 1000):
        stop = min(chunk + 1000, first + runs)
        events = [event for i in range(chunk, stop) for event in history_events(i)]
        await store.append(events)


async def _noop(payload: Any, ctx: Any) -> dict[str, Any]:
    return {}


async def seed_big_run(store: Store, nodes: int) -> str:
    """Run a `nodes`-node pipeline (layers of 100, each node needing one of the layer above)
    through a manager on `store`; its run id."""
    from engine.api import PipelineBuilder
    from engine.manager import RunManager

    flow = PipelineBuilder("big", max_concurrency=64)
    width = 100
    for i in range(nodes):
        needs = [f"n{i - width - (i % 3)}"] if i >= width + 2 else []
        flow.python(f"n{i}", _noop, needs=needs)
    async with RunManager(store=store) as manager:
        handle = await manager.start(flow.build())
        await handle.wait(600)
    return handle.run_id


async def _timed(action: Callable[[], Awaitable[Any]], reps: int) -> float:
    """The median seconds of `reps` runs of `action`."""
    samples = []
    for _ in range(reps):
        started = time.perf_counter()
        await action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def _say(label: str, seconds: float, target: float | None = None) -> None:
    verdict = "" if target is None else ("  ok" if seconds <= target else f"  OVER {target:g} s")
    sys.stdout.write(f"{label:58} {seconds * 1e3:9.1f} ms{verdict}\n")
    sys.stdout.flush()


async def store_figures(db: Path, runs: int, reps: int) -> None:
    from engine.run_filter import RunFilter
    from engine.store import Store

    async with Store(db, readonly=True) as store:
        async def page(query: RunFilter | None = None) -> None:
            await store.list_runs_page(limit=500, query=query)
            await store.count_runs(query)

        word = (await store.list_runs_page(limit=1, after=None)).rows[0].run_id[:6]
        _say(f"store: first page of 500 + count of {runs:,} runs", await _timed(page, reps), 0.3)
        for label, query in (
            ("state:failed", RunFilter(states=("failed",))),
            ("pipeline:billing", RunFilter(pipeline="billing")),
            (f"a word of a run id ({word})", RunFilter(words=(word,))),
            ("state:failed,cancelled pipeline:etl", RunFilter(("failed", "cancelled"), "etl")),
        ):
            seconds = await _timed(functools.partial(page, query), reps)
            _say(f"store: filter {label}: page + count", seconds, 0.3)
        deep = await store.list_runs_page(limit=1, after=None)
        after = deep.after
        skipped = 0
        while after is not None and skipped < runs * 9 // 10:
            chunk = await store.list_runs_page(limit=min(5000, runs * 9 // 10 - skipped),
                                               after=after)
            after, skipped = chunk.after, skipped + len(chunk.rows)

        async def deep_page() -> None:
            await store.list_runs_page(limit=500, after=after)

        _say(f"store: a page after {skipped:,} runs (keyset)", await _timed(deep_page, reps), 0.3)


async def console_figures(db: Path, runs: int, big_run: str | None) -> None:
    from tui.app import InterlockApp
    from tui.screens.home import HomeScreen
    from tui.screens.run import RunScreen

    with tempfile.TemporaryDirectory(prefix="interlock-history-") as tmp:
        pipelines = Path(tmp) / "pipelines"
        pipelines.mkdir()
        started = time.perf_counter()
        app = InterlockApp(pipelines_dir=pipelines, db_path=db)
        async with app.run_test(size=(120, 36)) as pilot:
            async def painted() -> bool:
                screen = app.screen
                return (
                    isinstance(screen, HomeScreen)
                    and screen.runs_table.row_count >= min(500, runs)
                    and f"of {runs}" in str(screen.query_one("#runs-title").render())
                )

            await _until(painted, pilot)
            _say(f"console: home first paint, {runs:,} runs stored", time.perf_counter() - started,
                 1.0)
            home = app.screen
            assert isinstance(home, HomeScreen)
            await pilot.press("slash")
            started = time.perf_counter()
            home.filter_input.value = "state:failed"

            async def filtered() -> bool:
                return "filter: state:failed" in str(home.query_one("#runs-title").render())

            await _until(filtered, pilot)
            _say("console: filter state:failed typed until the title shows it",
                 time.perf_counter() - started, 0.3)
            if big_run is None:
                return
            await pilot.press("escape")
            started = time.perf_counter()
            screen = RunScreen(app.ctx, big_run)
            await app.push_screen(screen)

            async def shown() -> bool:
                return (
                    screen.state is not None
                    and screen.dag.current_layout is not None
                    and screen.table.row_count > 0
                )

            await _until(shown, pilot, limit=60)
            nodes = len(screen.state.nodes) if screen.state is not None else 0
            _say(f"console: the view of a stored {nodes:,}-node run opens",
                 time.perf_counter() - started, 1.0)


async def _until(check: Callable[[], Awaitable[bool]], pilot: Any, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError("the console did not get there in time")
        await pilot.pause(0.01)


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.history", description=__doc__)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--nodes", type=int, default=10_000, help="the big run's nodes (0: none)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--db", type=Path, help="reuse (or make) this database")
    args = parser.parse_args(argv)
    from engine.store import Store

    with contextlib.ExitStack() as stack:
        db = args.db or Path(stack.enter_context(tempfile.TemporaryDirectory())) / "history.db"
        fresh = not db.exists()
        async with Store(db, synchronous="NORMAL") as store:
            big = None
            if fresh:
                started = time.perf_counter()
                await seed_history(store, args.runs)
                took = time.perf_counter() - started
                sys.stdout.write(f"seeded {args.runs:,} runs in {took:.1f} s\n")
            if not fresh and args.nodes:
                from engine.run_filter import RunFilter

                found = await store.list_runs_page(limit=1, query=RunFilter(pipeline="big"))
                big = found.rows[0].run_id if found.rows else None
            if args.nodes and big is None:
                started = time.perf_counter()
                big = await seed_big_run(store, args.nodes)
                sys.stdout.write(f"ran the {args.nodes:,}-node run in "
                                 f"{time.perf_counter() - started:.1f} s\n")
            total = await store.count_runs()
        await store_figures(db, total, args.reps)
        await console_figures(db, total, big)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
