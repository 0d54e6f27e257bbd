"""Profile the engine's hot path with pyinstrument (in the `dev` extra).

    python -m benchmarks.profile w1 memory     # fan-out of 1,000, in-memory sink
    python -m benchmarks.profile w2 FULL       # chain of 200, durable store

Runs the workload once to warm up, then `--runs` more under the profiler, and prints the call
tree (asyncio's own frames folded away).
"""

from __future__ import annotations

import argparse
import asyncio
import sys


async def profile(workload: str, sink: str, runs: int, interval: float) -> str:
    from pyinstrument import Profiler

    from benchmarks.engine_bench import chain_pipeline, engine, fanout_pipeline, run_once

    pipeline = fanout_pipeline() if workload == "w1" else chain_pipeline()
    async with engine(sink) as manager:
        await run_once(manager, pipeline)
        profiler = Profiler(interval=interval, async_mode="disabled")
        profiler.start()
        for _ in range(runs):
            await run_once(manager, pipeline)
        profiler.stop()
    return str(profiler.output_text(unicode=False, color=False))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    parser.add_argument("workload", choices=["w1", "w2"])
    parser.add_argument("sink", choices=["memory", "FULL", "NORMAL"], nargs="?", default="memory")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--interval", type=float, default=0.0002, help="seconds between samples")
    args = parser.parse_args(argv)
    print(asyncio.run(profile(args.workload, args.sink, args.runs, args.interval)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
