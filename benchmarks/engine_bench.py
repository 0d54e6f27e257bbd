"""W1-W4: the executor against plain asyncio, in this process.

- W1: fan-out 1 -> 1,000 no-op python nodes -> 1; W2: a chain of 200 nodes, each passing a small
  output to the next. Per node = the whole run's wall time / its nodes. The engine's figure is a
  whole run through `RunManager.start` (the run is created, executed and, with the store, its
  last event committed), with the pipeline built once beforehand.
- W3: 200 node timeouts at once (async sleeps, and shell `sleep` processes): how long after its
  deadline each node is reported timed out (for a shell node, with its process gone).
- W4: cancel a run while 20 shell nodes run: time until the run is terminal and every child
  process is gone.

The floors are written here in plain asyncio: a `TaskGroup` of tasks (W1, W2), the same with
`asyncio.timeout` around every node ("asyncio + per-node timeout"), and for W3/W4 the least a
program must do (`asyncio.timeout`, killing the process group, reaping it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
import time
from asyncio.subprocess import PIPE
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from benchmarks.common import FLOOR, TIMEOUT_FLOOR, Row, Target, per_item, percentile, timed
from engine.api import PipelineBuilder
from engine.bus import MemorySink
from engine.manager import RunManager
from engine.state import RunStatus
from engine.store import Store

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from benchmarks.common import Settings
    from engine.events import Event
    from engine.spec import Pipeline

FANOUT = 1000
CHAIN = 200
TIMEOUTS = 200
CANCEL_CHILDREN = 20
NODE_TIMEOUT = 300.0  # the engine's default per-node timeout: the floor uses the same

W1_TITLE = "fan-out 1 -> 1,000 no-op -> 1"
W2_TITLE = "chain of 200, small outputs"
W3_TITLE = "200 timeouts at once: lag past the deadline"
W4_TITLE = "cancel a run with 20 running shell nodes"

TARGET_MEMORY = Target(25.0)
TARGET_DURABLE = Target(50.0, hard=100.0)


# ---------------------------------------------------------------------------------------------
# node bodies (module level, so that pipelines name them as `benchmarks.engine_bench:...`)


async def noop(payload: Mapping[str, Any], ctx: Any = None) -> dict[str, Any]:
    return {}


async def step(payload: Mapping[str, Any], ctx: Any = None) -> dict[str, Any]:
    inputs = payload["inputs"]
    n = next(iter(inputs.values()))["n"] if inputs else 0
    return {"n": n + 1, "note": "small"}


async def sleeper(payload: Mapping[str, Any], ctx: Any = None) -> dict[str, Any]:
    await asyncio.sleep(3600)
    return {}


# ---------------------------------------------------------------------------------------------
# pipelines


def fanout_pipeline(width: int = FANOUT) -> Pipeline:
    flow = PipelineBuilder("bench-fanout", max_concurrency=width)
    flow.python("source", noop)
    for i in range(width):
        flow.python(f"n{i}", noop, needs=["source"])
    flow.python("sink", noop, needs=[f"n{i}" for i in range(width)])
    return flow.build()


def chain_pipeline(length: int = CHAIN) -> Pipeline:
    flow = PipelineBuilder("bench-chain")
    for i in range(length):
        flow.python(f"n{i}", step, needs=[f"n{i - 1}"] if i else [])
    return flow.build()


def timeouts_pipeline(kind: str, count: int, timeout: float) -> Pipeline:
    flow = PipelineBuilder(f"bench-timeouts-{kind}", max_concurrency=count, cleanup_grace=2.0)
    for i in range(count):
        if kind == "shell":
            flow.shell(f"n{i}", ["sleep", "3600"], timeout=timeout)
        else:
            flow.python(f"n{i}", sleeper, timeout=timeout)
    return flow.build()


def cancel_pipeline(command: list[str], count: int, grace: float) -> Pipeline:
    flow = PipelineBuilder("bench-cancel", max_concurrency=count, cleanup_grace=grace)
    for i in range(count):
        flow.shell(f"n{i}", command)
    return flow.build()


# ---------------------------------------------------------------------------------------------
# floors


async def _node(
    payload: Mapping[str, Any], fn: Callable[..., Awaitable[dict[str, Any]]], limit: float | None
) -> dict[str, Any]:
    if limit is None:
        return await fn(payload, None)
    async with asyncio.timeout(limit):
        return await fn(payload, None)


async def raw_fanout(width: int, limit: float | None) -> None:
    source = await asyncio.create_task(_node({"inputs": {}}, noop, limit))
    async with asyncio.TaskGroup() as group:
        tasks = [
            group.create_task(_node({"inputs": {"source": source}}, noop, limit))
            for _ in range(width)
        ]
    outputs = {f"n{i}": task.result() for i, task in enumerate(tasks)}
    await asyncio.create_task(_node({"inputs": outputs}, noop, limit))


async def raw_chain(length: int, limit: float | None) -> None:
    inputs: dict[str, Any] = {}
    async with asyncio.TaskGroup() as group:
        for i in range(length):
            output = await group.create_task(_node({"inputs": inputs}, step, limit))
            inputs = {f"n{i}": output}


# ---------------------------------------------------------------------------------------------
# engine runners


class StampSink:
    """Notes when node events are published (perf_counter), by node: for lags."""

    def __init__(self, *types: str) -> None:
        self.types = frozenset(types)
        self.stamps: dict[tuple[str, str], float] = {}

    def publish(self, event: Event) -> None:
        if event.event_type in self.types and event.node_id is not None:
            self.stamps[event.event_type, event.node_id] = time.perf_counter()

    async def flush(self) -> None:
        return None

    def lags(self, start: str, end: str, allowed: float) -> list[float]:
        """Seconds past `allowed` between each node's `start` and `end` events."""
        out = []
        for (etype, node_id), at in self.stamps.items():
            if etype == end and (start, node_id) in self.stamps:
                out.append(at - self.stamps[start, node_id] - allowed)
        return out


@contextlib.asynccontextmanager
async def engine(kind: str, *extra_sinks: Any) -> Any:
    """A RunManager with an in-memory sink (`memory`) or a durable store (`FULL`/`NORMAL`)."""
    if kind == "memory":
        async with RunManager(sinks=[MemorySink(), *extra_sinks]) as manager:
            yield manager
        return
    with tempfile.TemporaryDirectory(prefix="interlock-bench-") as tmp:
        async with (
            Store(Path(tmp) / "bench.db", synchronous=kind) as store,
            RunManager(store=store, sinks=list(extra_sinks)) as manager,
        ):
            yield manager


@contextlib.asynccontextmanager
async def engine_for_reps(kind: str) -> Any:
    """`engine(kind)` and what to do before each repetition (untimed): the in-memory sink
    forgets the runs before, as the durable store keeps them on disk, not in this process's
    heap. (Kept, 40 runs of 1,000 nodes made a heap that every full collection walked, a cost
    of the benchmark's own bookkeeping that grew with its repetitions.)"""
    if kind == "memory":
        sink = MemorySink()
        async with RunManager(sinks=[sink]) as manager:
            yield manager, sink.clear
        return
    async with engine(kind) as manager:
        yield manager, None


async def run_once(manager: RunManager, pipeline: Pipeline) -> None:
    handle = await manager.start(pipeline)
    state = await handle
    if state.state is not RunStatus.SUCCEEDED:
        raise RuntimeError(f"benchmark run ended {state.state}: {state.reason}")


ENGINE_VARIANTS: tuple[tuple[str, str, Target | None], ...] = (
    ("memory", "engine, in-memory sink", TARGET_MEMORY),
    ("FULL", "engine, durable store (FULL)", TARGET_DURABLE),
    # The same without an fsync per commit: the difference is what the disk's flushes cost.
    ("NORMAL", "engine, durable store (NORMAL)", None),
)


async def _graph_rows(
    workload: str,
    title: str,
    pipeline: Pipeline,
    nodes: int,
    floor: Callable[[float | None], Awaitable[None]],
    reps: int,
) -> list[Row]:
    """The floors and the engine variants, their repetitions interleaved (floor, floor with
    timeouts, each engine, again...): on a shared machine, a busy spell then weighs on all of
    them alike instead of on whichever ran during it."""
    variants: list[tuple[str, Callable[[], Awaitable[None]], str, Target | None]] = [
        ("asyncio TaskGroup (floor)", lambda: floor(None), FLOOR, None),
        ("asyncio + per-node timeout", lambda: floor(NODE_TIMEOUT), TIMEOUT_FLOOR, None),
    ]
    before: dict[str, Callable[[], None] | None] = {}
    async with contextlib.AsyncExitStack() as stack:
        for kind, name, target in ENGINE_VARIANTS:
            manager, before[name] = await stack.enter_async_context(engine_for_reps(kind))
            variants.append((name, partial(run_once, manager, pipeline), "", target))
        seconds: dict[str, list[float]] = {name: [] for name, *_ in variants}
        for _, make, _, _ in variants:  # warm-up
            await make()
        for _ in range(reps):
            for name, make, _, _ in variants:
                seconds[name].append(await timed(make, before.get(name)))
    return [
        Row(workload, title, name, "per node", "us", per_item(seconds[name], nodes), role=role,
            target=target)
        for name, _, role, target in variants
    ]


async def w1(settings: Settings) -> list[Row]:
    width = 200 if settings.quick else FANOUT
    title = W1_TITLE if width == FANOUT else f"fan-out 1 -> {width} no-op -> 1"
    rows = await _graph_rows(
        "W1", title, fanout_pipeline(width), width + 2,
        lambda t: raw_fanout(width, t), settings.reps(15, 3),
    )
    return rows + await _console_rows("W1", settings)


async def w2(settings: Settings) -> list[Row]:
    rows = await _graph_rows(
        "W2", W2_TITLE, chain_pipeline(CHAIN), CHAIN,
        lambda t: raw_chain(CHAIN, t), settings.reps(25, 3),
    )
    return rows + await _console_rows("W2", settings)


async def _console_rows(workload: str, settings: Settings) -> list[Row]:
    """The same run launched from the console, with its run screen showing."""
    from benchmarks.console_bench import CONSOLE_ATTACHED

    return [await CONSOLE_ATTACHED[workload](settings)]


# ---------------------------------------------------------------------------------------------
# W3: timeouts


async def _raw_timeout_lags(kind: str, count: int, limit: float) -> list[float]:
    lags: list[float] = []

    async def one() -> None:
        start = time.perf_counter()
        proc: asyncio.subprocess.Process | None = None
        try:
            async with asyncio.timeout(limit):
                if kind == "shell":
                    # Output captured, as a shell node's is.
                    proc = await asyncio.create_subprocess_exec(
                        "sleep", "3600", stdout=PIPE, stderr=PIPE, start_new_session=True
                    )
                    await proc.communicate()
                else:
                    await asyncio.sleep(3600)
        except TimeoutError:
            if proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                await proc.wait()
            lags.append(time.perf_counter() - start - limit)

    async with asyncio.TaskGroup() as group:
        for _ in range(count):
            group.create_task(one())
    return lags


async def _engine_timeout_lags(pipeline: Pipeline, limit: float, kind: str) -> list[float]:
    stamps = StampSink("node.started", "node.timed_out")
    async with engine(kind, stamps) as manager:
        state = await (await manager.start(pipeline))
    if state.state is not RunStatus.FAILED:
        raise RuntimeError(f"timeout benchmark run ended {state.state}")
    return stamps.lags("node.started", "node.timed_out", limit)


async def w3(settings: Settings) -> list[Row]:
    reps = settings.reps(5, 1)
    count = 50 if settings.quick else TIMEOUTS
    rows: list[Row] = []
    # Starting 200 processes through asyncio takes about a second here (fork/exec runs on the
    # loop's thread, and Python 3.11's default child watcher starts a thread per process): the
    # shell nodes get a deadline that comes after the last one has started, so that what is
    # measured is the lag of the timeout, not the cost of spawning.
    for kind, timeout in (("async", 0.2), ("shell", 3.0)):
        what = "async sleep" if kind == "async" else "shell `sleep`"
        title = f"{count} timeouts at once ({what}, {timeout:g}s): lag past the deadline"
        variants: list[tuple[str, Callable[[], Awaitable[list[float]]], str]] = [
            ("asyncio.timeout (floor)", partial(_raw_timeout_lags, kind, count, timeout), FLOOR),
        ]
        pipeline = timeouts_pipeline(kind, count, timeout)
        for sink, name in (("memory", "engine, in-memory sink"), ("FULL", "engine, durable store")):
            variants.append((name, partial(_engine_timeout_lags, pipeline, timeout, sink), ""))
        for variant, measure, role in variants:
            p50s, p99s, maxes = [], [], []
            for _ in range(reps):
                lags = [lag * 1e3 for lag in await measure()]
                if len(lags) != count:
                    raise RuntimeError(f"{variant}: {len(lags)} of {count} nodes timed out")
                p50s.append(percentile(lags, 50))
                p99s.append(percentile(lags, 99))
                maxes.append(max(lags))
            engine_row = role != FLOOR
            rows += [
                Row("W3", title, variant, "lag p50", "ms", p50s, role=role),
                Row("W3", title, variant, "lag p99", "ms", p99s, role=role,
                    target=Target(5.0) if engine_row else None),
                Row("W3", title, variant, "lag max", "ms", maxes, role=role),
            ]
    return rows


# ---------------------------------------------------------------------------------------------
# W4: cancellation


def _descendants() -> list[psutil.Process]:
    return psutil.Process().children(recursive=True)


def _alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    left = []
    for proc in processes:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                left.append(proc)
        except psutil.NoSuchProcess:
            continue
    return left


async def _wait_for_children(count: int, name: str, limit: float = 20.0) -> list[psutil.Process]:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        found = [p for p in _descendants() if _name(p) == name]
        if len(found) >= count:
            return _descendants()
        await asyncio.sleep(0.01)
    raise RuntimeError(f"only {len(found)} of {count} '{name}' processes started")


def _name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except psutil.Error:
        return ""


async def _until_gone(children: list[psutil.Process], start: float, limit: float = 10.0) -> float:
    while _alive(children):
        if time.perf_counter() - start > limit:
            raise RuntimeError(f"{len(_alive(children))} child processes outlived the cancel")
        await asyncio.sleep(0.001)
    return time.perf_counter() - start


async def _raw_cancel(
    command: list[str], name: str, count: int, grace: float
) -> tuple[float, float]:
    async def one() -> None:
        proc = await asyncio.create_subprocess_exec(*command, start_new_session=True)
        try:
            await proc.wait()
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(grace):
                    await proc.wait()
            except TimeoutError:
                pass
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            raise

    async def group() -> None:
        async with asyncio.TaskGroup() as tg:
            for _ in range(count):
                tg.create_task(one())

    task = asyncio.create_task(group())
    children = await _wait_for_children(count, name)
    start = time.perf_counter()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    terminal = time.perf_counter() - start
    return terminal, await _until_gone(children, start)


async def _engine_cancel(
    pipeline: Pipeline, name: str, count: int, kind: str
) -> tuple[float, float]:
    async with engine(kind) as manager:
        handle = await manager.start(pipeline)
        children = await _wait_for_children(count, name)
        start = time.perf_counter()
        manager.cancel(handle.run_id, "benchmark")
        state = await handle
        terminal = time.perf_counter() - start
        gone = await _until_gone(children, start)
    if state.state is not RunStatus.CANCELLED:
        raise RuntimeError(f"cancel benchmark run ended {state.state}")
    return terminal, gone


async def w4(settings: Settings) -> list[Row]:
    reps = settings.reps(5, 1)
    count = CANCEL_CHILDREN
    rows: list[Row] = []
    cases = [
        ("`sleep` (stops on SIGTERM)", ["sleep", "3600"], "sleep", 2.0),
        # `trap '' TERM` is inherited by the sleep it starts: the whole group ignores SIGTERM
        # and only SIGKILL, after the grace, ends it.
        ("sh ignoring SIGTERM", ["sh", "-c", "trap '' TERM; sleep 3600; :"], "sh", 0.5),
    ]
    for label, command, name, grace in cases:
        title = f"cancel 20 running shell nodes: {label}, cleanup_grace {grace:g}s"
        pipeline = cancel_pipeline(command, count, grace)
        runners: list[tuple[str, Callable[[], Awaitable[tuple[float, float]]], str]] = [
            ("asyncio: cancel, killpg, reap (floor)",
             partial(_raw_cancel, command, name, count, grace), FLOOR),
            ("engine, in-memory sink",
             partial(_engine_cancel, pipeline, name, count, "memory"), ""),
            ("engine, durable store", partial(_engine_cancel, pipeline, name, count, "FULL"), ""),
        ]
        for variant, measure, role in runners:
            terminals, gones = [], []
            for _ in range(reps):
                terminal, gone = await measure()
                terminals.append(terminal * 1e3)
                gones.append(gone * 1e3)
            target = None if role == FLOOR else Target(grace * 1e3 + 100)
            rows += [
                Row("W4", title, variant, "run terminal", "ms", terminals, role=role),
                Row("W4", title, variant, "terminal, no child left", "ms", gones, role=role,
                    target=target),
            ]
    return rows


WORKLOADS: dict[str, Callable[[Settings], Awaitable[list[Row]]]] = {
    "W1": w1,
    "W2": w2,
    "W3": w3,
    "W4": w4,
}
