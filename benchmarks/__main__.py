"""`python -m benchmarks`: measure Interlock against its floors, print the table, write RESULTS.md.

    python -m benchmarks                  # every workload, in about five minutes
    python -m benchmarks --quick          # a smoke run: fewer and smaller repetitions
    python -m benchmarks --only W1,W3     # some workloads (RESULTS.md only with --out)
    python -m benchmarks --peers          # also Prefect, Dagster and Apache Hamilton (if installed)
    python -m benchmarks --baseline REV   # W1 and W2 of this tree and of git revision REV, side
                                          # by side in one run, with their ratios
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks import report
from benchmarks.common import BenchmarkError, Row, Settings, read_result, write_result

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

ALL = ("W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "W10")
DEFAULT_OUT = Path(__file__).resolve().parent / "RESULTS.md"


def workloads() -> dict[str, Callable[[Settings], Awaitable[list[Row]]]]:
    from benchmarks import cli_run, cold_start, console_bench, engine_bench, store_bench

    return {
        **engine_bench.WORKLOADS,
        **store_bench.WORKLOADS,
        **cold_start.WORKLOADS,
        **console_bench.WORKLOADS,
        **cli_run.WORKLOADS,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure Interlock and its asyncio floors in one run and print the ratios.",
    )
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: fewer, smaller repetitions (figures are rough)")
    parser.add_argument("--only", metavar="W1,W3",
                        help=f"run only these workloads (of {','.join(ALL)})")
    parser.add_argument("--peers", action="store_true",
                        help="also run W1-W4 and the cold import on Prefect, Dagster and Apache "
                        "Hamilton, whichever is installed (pip install -e '.[bench-peers]')")
    parser.add_argument("--out", type=Path,
                        help="where to write the Markdown results ('-' for nowhere; default "
                        "benchmarks/RESULTS.md for a whole run, nowhere for --quick or --only)")
    parser.add_argument("--readme", type=Path, metavar="README.md",
                        help="also replace the table between the benchmark markers of this file")
    parser.add_argument("--baseline", metavar="REV",
                        help="measure W1 and W2 (in memory and durable) of this tree and of git "
                        "revision REV side by side, alternating, and print the ratios "
                        "(flagging anything more than 10%% slower)")
    # One workload in this process, its rows as JSON on stdout: what `measure` runs each
    # workload in.
    parser.add_argument("--worker", metavar="WN", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        if args.worker not in ALL:
            parser.error(f"unknown workload {args.worker}")
        return args
    chosen = [w.strip().upper() for w in args.only.split(",")] if args.only else list(ALL)
    unknown = [w for w in chosen if w not in ALL]
    if unknown:
        parser.error(f"unknown workload {', '.join(unknown)} (choose from {', '.join(ALL)})")
    args.chosen = chosen
    if args.baseline is not None:
        from benchmarks.side_by_side import WORKLOADS

        if not args.only:
            args.chosen = list(WORKLOADS)
        elif not set(chosen) <= set(WORKLOADS):
            parser.error(f"--baseline measures {' and '.join(WORKLOADS)} only")
    return args


async def measure(chosen: list[str], settings: Settings, failed: list[str]) -> list[Row]:
    """The rows of the `chosen` workloads; those that cannot be measured go in `failed`."""
    rows: list[Row] = []
    for name in chosen:
        started = time.perf_counter()
        print(f"{name} ...", file=sys.stderr, flush=True)
        try:
            rows += await run_workload(name, settings)
        except BenchmarkError as exc:
            failed.append(f"{name} not measured: {exc}")
            print(failed[-1], file=sys.stderr, flush=True)
            continue
        print(f"{name} done in {time.perf_counter() - started:.1f}s", file=sys.stderr, flush=True)
    if settings.peers:
        from benchmarks import peers

        rows += await peers.measure(chosen, settings)
    return rows


async def in_worker(name: str, settings: Settings) -> list[Row]:
    """Workload `name` measured in a process of its own (`--worker`), as a user's process would
    run it: not after other workloads in the same heap. (Run after W1 and its console, which
    loads Textual and leaves a heap of 100,000 more objects, W2 measured 1-3 us a node slower in
    memory and 2-7 us durable, in repeated pairs.) Its variants still share that process."""
    argv = [sys.executable, "-m", "benchmarks", "--worker", name]
    if settings.quick:
        argv.append("--quick")
    # The worker's progress and any traceback go straight to this process's stderr.
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    result = read_result(out)
    if not isinstance(result, dict):
        result = {}
    if "error" in result:
        raise BenchmarkError(result["error"])
    if proc.returncode != 0 or "rows" not in result:
        raise BenchmarkError(f"its process exited {proc.returncode} without results")
    return [Row.from_dict(raw) for raw in result["rows"]]


# How `measure` gets a workload's rows (a test puts its own here).
run_workload: Callable[[str, Settings], Awaitable[list[Row]]] = in_worker


async def worker(name: str, settings: Settings) -> dict[str, Any]:
    """`--worker`: measure one workload here; its rows, or why it cannot be measured."""
    # As `interlock run` and the console do once they are loaded: what lives as long as the
    # process (the interpreter, the modules) is kept out of the collector's sight.
    gc.freeze()
    try:
        rows = await workloads()[name](settings)
    except BenchmarkError as exc:
        return {"error": str(exc)}
    return {"rows": [row.to_dict() for row in rows]}


def results_path(args: argparse.Namespace) -> Path | None:
    """Where the results go: `--out`, else RESULTS.md for a whole run. A smoke run or some of
    the workloads would otherwise replace the committed table with a rough or partial one."""
    if args.out is not None:
        return Path(args.out)
    if args.quick or set(args.chosen) != set(ALL):
        return None
    return DEFAULT_OUT


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings(quick=args.quick, peers=args.peers)
    if args.worker is not None:
        write_result(asyncio.run(worker(args.worker, settings)))
        return 0
    if args.baseline is not None:
        from benchmarks import side_by_side

        return side_by_side.main(args.baseline, args.chosen, quick=args.quick)
    started = time.perf_counter()
    failed: list[str] = []
    rows = asyncio.run(measure(args.chosen, settings, failed))
    elapsed = time.perf_counter() - started
    command = "python -m benchmarks" + (" " + " ".join(argv if argv is not None else sys.argv[1:])
                                        if (argv if argv is not None else sys.argv[1:]) else "")
    print(report.text_table(rows))
    print()
    print("\n".join(report.verdicts(rows)))
    if failed:
        # A partial table would read as the whole: the results files are left as they were.
        print("\n" + "\n".join(failed), file=sys.stderr)
        print("results not written: some workloads could not be measured", file=sys.stderr)
        return 1
    out = results_path(args)
    if out is None:
        print(f"\n{DEFAULT_OUT.name} not written: a --quick or --only run is not the whole "
              "table (--out FILE writes it)", file=sys.stderr)
    elif str(out) != "-":
        text = report.results_markdown(rows, command=command, elapsed=elapsed)
        report.write_results(out, text)
        print(f"\nwrote {out}", file=sys.stderr)
    if args.readme is not None and not report.update_readme(args.readme, rows, command):
        print(f"{args.readme} has no benchmark markers; left alone", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
