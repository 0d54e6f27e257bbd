# mypy: disable-error-code="untyped-decorator, import-not-found, unused-ignore"
"""The same workloads on Prefect, Dagster and Apache Hamilton (`python -m benchmarks --peers`).

Install them with `pip install -e '.[bench-peers]'` (best in a virtualenv of its own: they pin
many packages). They are never a runtime dependency. Each peer runs in a process of its own
(`python -m benchmarks.peers PEER W1,W2,...`), which prints its rows as JSON, so that one
framework's imports, logging and event-loop policy cannot touch another's figures; the floors
they are divided by are measured in the parent run.

What is measured, for each peer that installs:

- W1, W2: the fan-out and the chain as that framework's natural in-process form: Prefect 3
  async `@task`s in an async `@flow` (ephemeral API server, as `python flow.py` gets),
  Dagster `@op`s in a `@job` run with `execute_in_process()`, Hamilton's async driver over a
  generated module of async functions. Per node = the run's wall time / nodes.
- W3: Prefect only (`timeout_seconds=0.2` on 200 async tasks at once): from the moment each
  task body starts to the moment the flow sees its TimeoutError, past 0.2 s. Dagster and
  Hamilton have no per-node timeout to measure.
- W4 is not measured on peers: none of them offers an in-process way to cancel a running run
  that also stops the processes its nodes started, so there is no like-for-like figure.
- Cold import of each framework, whole process (with W7).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import sys
import tempfile
import time
import types
from typing import TYPE_CHECKING, Any

from benchmarks.common import Row, Settings, per_item, percentile, read_result, write_result

if TYPE_CHECKING:
    from collections.abc import Callable

PEERS = {
    "prefect": "Prefect 3",
    "dagster": "Dagster",
    "hamilton": "Apache Hamilton",
}
MODULES = {"prefect": "prefect", "dagster": "dagster", "hamilton": "hamilton.async_driver"}
PEER_LIMIT = 900.0  # seconds one peer may take in all


def installed(peer: str) -> bool:
    return importlib.util.find_spec(MODULES[peer].split(".")[0]) is not None


def _titles(settings: Settings) -> dict[str, tuple[str, int, int]]:
    """Workload -> (title, width, nodes), the same titles the parent run uses."""
    from benchmarks.engine_bench import CHAIN, FANOUT, W1_TITLE, W2_TITLE

    width = 200 if settings.quick else FANOUT
    w1_title = W1_TITLE if width == FANOUT else f"fan-out 1 -> {width} no-op -> 1"
    return {"W1": (w1_title, width, width + 2), "W2": (W2_TITLE, CHAIN, CHAIN)}


# ---------------------------------------------------------------------------------------------
# Prefect


def _prefect_rows(workloads: list[str], settings: Settings) -> list[Row]:
    from prefect import flow, task

    @task
    async def noop(_: Any = None) -> dict[str, Any]:
        return {}

    @task
    async def step(prev: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"n": (prev or {}).get("n", 0) + 1, "note": "small"}

    @flow
    async def fanout(width: int) -> None:
        source = await noop()
        outs = await asyncio.gather(*(noop(source) for _ in range(width)))
        await noop(outs)

    @flow
    async def chain(length: int) -> None:
        prev: dict[str, Any] | None = None
        for _ in range(length):
            prev = await step(prev)

    rows: list[Row] = []
    titles = _titles(settings)
    reps = settings.reps(3, 1)
    for name, make in (("W1", fanout), ("W2", chain)):
        if name not in workloads:
            continue
        title, size, nodes = titles[name]
        asyncio.run(make(size))  # warm-up (the first run also starts the API server)
        seconds = []
        for _ in range(reps):
            start = time.perf_counter()
            asyncio.run(make(size))
            seconds.append(time.perf_counter() - start)
        rows.append(Row(name, title, "Prefect 3 (async tasks, in process)", "per node", "us",
                        per_item(seconds, nodes)))
    if "W3" in workloads:
        rows += _prefect_timeouts(settings)
    return rows


def _prefect_timeouts(settings: Settings) -> list[Row]:
    from prefect import flow, task

    count = 50 if settings.quick else 200
    limit = 0.2
    started: dict[int, float] = {}
    lags: list[float] = []

    @task(timeout_seconds=limit)
    async def sleeper(i: int) -> None:
        started[i] = time.perf_counter()
        await asyncio.sleep(3600)

    @flow
    async def timeouts() -> None:
        async def one(i: int) -> None:
            try:
                await sleeper(i)
            except TimeoutError:
                lags.append(time.perf_counter() - started[i] - limit)

        await asyncio.gather(*(one(i) for i in range(count)))

    p50s, p99s, maxes = [], [], []
    for _ in range(settings.reps(3, 1)):
        lags.clear()
        started.clear()
        asyncio.run(timeouts())
        ms = [lag * 1e3 for lag in lags]
        if len(ms) != count:
            raise RuntimeError(f"prefect: {len(ms)} of {count} tasks timed out")
        p50s.append(percentile(ms, 50))
        p99s.append(percentile(ms, 99))
        maxes.append(max(ms))
    title = f"{count} timeouts at once (async sleep, {limit:g}s): lag past the deadline"
    variant = "Prefect 3 (task timeout_seconds)"
    return [
        Row("W3", title, variant, "lag p50", "ms", p50s),
        Row("W3", title, variant, "lag p99", "ms", p99s),
        Row("W3", title, variant, "lag max", "ms", maxes),
    ]


# ---------------------------------------------------------------------------------------------
# Dagster


def _dagster_rows(workloads: list[str], settings: Settings) -> list[Row]:
    from dagster import In, job, op

    def fanout_job(width: int) -> Any:
        @op
        def source() -> dict[str, Any]:
            return {}

        def make(i: int) -> Any:
            @op(name=f"n{i}")
            def node(x: dict[str, Any]) -> dict[str, Any]:
                return {}

            return node

        nodes = [make(i) for i in range(width)]

        @op(ins={"xs": In(list)})
        def sink(xs: list[Any]) -> dict[str, Any]:
            return {}

        @job(name=f"fanout_{width}")
        def fanout() -> None:
            s = source()
            sink([node(s) for node in nodes])

        return fanout

    def chain_job(length: int) -> Any:
        @op(name="n0")
        def first() -> dict[str, Any]:
            return {"n": 1}

        def make(i: int) -> Any:
            @op(name=f"n{i}")
            def node(prev: dict[str, Any]) -> dict[str, Any]:
                return {"n": prev["n"] + 1, "note": "small"}

            return node

        steps = [make(i) for i in range(1, length)]

        @job(name=f"chain_{length}")
        def chain() -> None:
            x = first()
            for node in steps:
                x = node(x)

        return chain

    rows: list[Row] = []
    titles = _titles(settings)
    reps = settings.reps(3, 1)
    for name, build in (("W1", fanout_job), ("W2", chain_job)):
        if name not in workloads:
            continue
        title, size, nodes = titles[name]
        definition = build(size)
        definition.execute_in_process()  # warm-up
        seconds = []
        for _ in range(reps):
            start = time.perf_counter()
            result = definition.execute_in_process()
            seconds.append(time.perf_counter() - start)
            if not result.success:
                raise RuntimeError(f"dagster {name} failed")
        rows.append(Row(name, title, "Dagster (execute_in_process)", "per node", "us",
                        per_item(seconds, nodes)))
    return rows


# ---------------------------------------------------------------------------------------------
# Hamilton


def _hamilton_module(name: str, source: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)  # the generated DAG module
    sys.modules[name] = module
    return module


def _hamilton_rows(workloads: list[str], settings: Settings) -> list[Row]:
    from hamilton import async_driver

    def fanout_module(width: int) -> types.ModuleType:
        lines = ["async def source() -> dict:\n    return {}\n"]
        lines += [f"async def n{i}(source: dict) -> dict:\n    return {{}}\n" for i in range(width)]
        params = ", ".join(f"n{i}: dict" for i in range(width))
        lines.append(f"async def sink({params}) -> dict:\n    return {{}}\n")
        return _hamilton_module(f"bench_hamilton_fanout_{width}", "\n".join(lines))

    def chain_module(length: int) -> types.ModuleType:
        lines = ["async def n0() -> dict:\n    return {'n': 1}\n"]
        lines += [
            f"async def n{i}(n{i - 1}: dict) -> dict:\n"
            f"    return {{'n': n{i - 1}['n'] + 1, 'note': 'small'}}\n"
            for i in range(1, length)
        ]
        return _hamilton_module(f"bench_hamilton_chain_{length}", "\n".join(lines))

    async def run(module: types.ModuleType, final: str, reps: int) -> list[float]:
        driver = await async_driver.Builder().with_modules(module).build()
        await driver.execute([final])  # warm-up
        seconds = []
        for _ in range(reps):
            start = time.perf_counter()
            await driver.execute([final])
            seconds.append(time.perf_counter() - start)
        return seconds

    rows: list[Row] = []
    titles = _titles(settings)
    reps = settings.reps(5, 1)
    for name in ("W1", "W2"):
        if name not in workloads:
            continue
        title, size, nodes = titles[name]
        if name == "W1":
            module, final = fanout_module(size), "sink"
        else:
            module, final = chain_module(size), f"n{size - 1}"
        seconds = asyncio.run(run(module, final, reps))
        rows.append(Row(name, title, "Apache Hamilton (async driver)", "per node", "us",
                        per_item(seconds, nodes)))
    return rows


RUNNERS: dict[str, Callable[[list[str], Settings], list[Row]]] = {
    "prefect": _prefect_rows,
    "dagster": _dagster_rows,
    "hamilton": _hamilton_rows,
}


# ---------------------------------------------------------------------------------------------
# the parent side


def _peer_env(home: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "PREFECT_HOME": os.path.join(home, "prefect"),
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "DAGSTER_HOME": os.path.join(home, "dagster"),
    })
    os.makedirs(env["DAGSTER_HOME"], exist_ok=True)
    return env


def cold_imports(peers: list[str], settings: Settings) -> list[Row]:
    from benchmarks.cold_start import TITLE, wall

    rows = []
    for peer in peers:
        argv = [sys.executable, "-c", f"import {MODULES[peer]}"]
        rows.append(Row("W7", TITLE, f"python -c 'import {MODULES[peer]}' ({PEERS[peer]})",
                        "wall", "ms", wall(argv, settings.reps(5, 1))))
    return rows


async def measure(chosen: list[str], settings: Settings) -> list[Row]:
    """Rows of every installed peer for the chosen workloads (run in subprocesses)."""
    workloads = [w for w in chosen if w in ("W1", "W2", "W3")]
    peers = [p for p in PEERS if installed(p)]
    missing = [PEERS[p] for p in PEERS if p not in peers]
    if missing:
        print(f"peers not installed (pip install -e '.[bench-peers]'): {', '.join(missing)}",
              file=sys.stderr)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="interlock-peers-") as home:
        for peer in peers:
            if not workloads:
                break
            print(f"peers: {PEERS[peer]} ...", file=sys.stderr, flush=True)
            argv = [sys.executable, "-m", "benchmarks.peers", peer, ",".join(workloads)]
            if settings.quick:
                argv.append("--quick")
            proc = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env=_peer_env(home),
            )
            try:
                async with asyncio.timeout(PEER_LIMIT):
                    out, err = await proc.communicate()
            except TimeoutError:
                proc.kill()
                await proc.wait()
                print(f"peers: {PEERS[peer]} took over {PEER_LIMIT:g}s; skipped", file=sys.stderr)
                continue
            if proc.returncode != 0:
                tail = err.decode(errors="replace").strip().splitlines()[-5:]
                print(f"peers: {PEERS[peer]} failed:\n  " + "\n  ".join(tail), file=sys.stderr)
                continue
            result = read_result(out)
            if not isinstance(result, list):
                print(f"peers: {PEERS[peer]} printed no results", file=sys.stderr)
                continue
            rows += [Row.from_dict(raw) for raw in result]
    if "W7" in chosen:
        rows += cold_imports(peers, settings)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers")
    parser.add_argument("peer", choices=sorted(PEERS))
    parser.add_argument("workloads", help="W1,W2,W3")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    settings = Settings(quick=args.quick)
    rows = RUNNERS[args.peer](args.workloads.split(","), settings)
    # The frameworks may print their own lines before the rows.
    write_result([row.to_dict() for row in rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())
