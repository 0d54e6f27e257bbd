"""`python -m benchmarks --baseline REV`: W1 and W2 of this tree and of git revision REV, side by
side in one run, and the ratio of each pair.

Figures from two runs on a shared machine differ by more than the changes worth catching, so
both trees are measured in the same run, their repetitions alternating (this tree then REV, REV
then this tree, ...): a busy spell weighs on both alike. REV is checked out into a temporary
`git worktree` (removed afterwards); each tree is measured in a worker process of its own, with
`PYTHONPATH` pointing at that tree, and each worker reports where it imported `engine` from,
which is checked, so that an installed copy of the package cannot stand in for either tree.

The worker is this file run as a script (`python -P side_by_side.py --serve`): it imports only
`engine`'s public API, never the `benchmarks` package of either tree, so the same workload code
measures both. It runs what `engine_bench` runs for W1 and W2 (the same pipelines, a whole run
through `RunManager.start` per repetition, a full collection before each, the collector frozen
as `interlock run` freezes it), in memory and durable (`synchronous=FULL`); it reads commands
("W1 memory") on stdin and answers each with one JSON line.

Anything more than `SLOWER` (10%) slower than REV is flagged.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ("W1", "W2")
VARIANTS = (("memory", "engine, in-memory sink"), ("FULL", "engine, durable store (FULL)"))
SLOWER = 1.10  # a ratio above this is flagged
FANOUT, CHAIN = 1000, 200  # engine_bench's W1 and W2
QUICK_FANOUT, QUICK_CHAIN = 10, 10
REPS = {"W1": 30, "W2": 50}  # twice engine_bench's: a run takes seconds


class SideBySideError(RuntimeError):
    """The comparison could not be made (an unknown revision, a worker that failed)."""


@dataclass
class Pair:
    """One workload variant measured on both trees: microseconds per node, per repetition."""

    workload: str
    kind: str
    title: str
    current: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    # The same in CPU time (the worker process's, all threads): steadier than the wall clock
    # while other work shares the machine, though not what W1/W2 promise.
    current_cpu: list[float] = field(default_factory=list)
    baseline_cpu: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return _paired_ratio(self.current, self.baseline)

    @property
    def cpu_ratio(self) -> float:
        return _paired_ratio(self.current_cpu, self.baseline_cpu)

    @property
    def slower(self) -> bool:
        return self.ratio > SLOWER


def _paired_ratio(current: Sequence[float], baseline: Sequence[float]) -> float:
    """The median of the ratios of the repetitions made back to back: a spell when the machine
    is busy weighs on both halves of a pair, and drops out of its ratio."""
    pairs = [c / b for c, b in zip(current, baseline, strict=False) if b > 0]
    return statistics.median(pairs) if pairs else float("nan")


# ---------------------------------------------------------------------------------------------
# the parent: a worktree of REV, two workers, alternating repetitions, the table


def main(revision: str, chosen: Sequence[str], *, quick: bool = False) -> int:
    try:
        pairs = compare(revision, chosen, quick=quick)
    except SideBySideError as exc:
        print(f"side by side not measured: {exc}", file=sys.stderr)
        return 1
    print(table(pairs, revision))
    return 0


def compare(revision: str, chosen: Sequence[str], *, quick: bool = False) -> list[Pair]:
    """Measure the `chosen` workloads on this tree and on `revision`, alternating."""
    try:
        sha = _git("rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}").strip()
    except SideBySideError:
        raise SideBySideError(f"no commit '{revision}' in {ROOT}") from None
    pairs = [
        Pair(workload, kind, title)
        for workload in WORKLOADS
        if workload in chosen
        for kind, title in VARIANTS
    ]
    reps = {pair.workload: 2 if quick else REPS[pair.workload] for pair in pairs}
    with _worktree(sha) as baseline_root, _Worker(ROOT, quick) as current, _Worker(
        baseline_root, quick
    ) as baseline:
        for pair in pairs:  # the warm-up repetition, not counted
            current.run(pair.workload, pair.kind)
            baseline.run(pair.workload, pair.kind)
        for rep in range(max(reps.values(), default=0)):
            for pair in pairs:
                if rep >= reps[pair.workload]:
                    continue
                # Who goes first alternates too: neither tree always runs after the other.
                order = [
                    (current, pair.current, pair.current_cpu),
                    (baseline, pair.baseline, pair.baseline_cpu),
                ]
                for worker, wall, cpu in order if rep % 2 == 0 else order[::-1]:
                    wall_us, cpu_us = worker.run(pair.workload, pair.kind)
                    wall.append(wall_us)
                    cpu.append(cpu_us)
    return pairs




def table(pairs: Sequence[Pair], revision: str) -> str:
    head = ("W", "variant", "this tree", "baseline", "ratio", "cpu ratio", "")
    rows = [
        (
            pair.workload,
            pair.title,
            f"{statistics.median(pair.current):.1f} us",
            f"{statistics.median(pair.baseline):.1f} us",
            f"{pair.ratio:.3f}",
            f"{pair.cpu_ratio:.3f}",
            f"SLOWER by {pair.ratio - 1:.0%}" if pair.slower else "",
        )
        for pair in pairs
    ]
    widths = [max(len(row[i]) for row in (head, *rows)) for i in range(len(head))]
    lines = [
        f"Per node (median of the repetitions), this tree against {revision}, measured side by "
        "side; the ratio is the median of the ratios of repetitions made back to back, above 1 "
        "is slower (the cpu ratio: the same in the workers' CPU time).",
        "",
    ]
    lines += [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (head, *rows)
    ]
    flagged = [f"{p.workload} {p.title}" for p in pairs if p.slower]
    lines.append("")
    lines.append(
        f"more than {SLOWER - 1:.0%} slower: {', '.join(flagged)}" if flagged
        else f"nothing more than {SLOWER - 1:.0%} slower"
    )
    return "\n".join(lines)


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SideBySideError(f"git {' '.join(args)}: {done.stderr.strip() or 'failed'}")
    return done.stdout


@contextlib.contextmanager
def _worktree(sha: str) -> Iterator[Path]:
    """A detached checkout of `sha` in a temporary directory, removed afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="interlock-baseline-"))
    tree = tmp / "tree"
    try:
        _git("worktree", "add", "--detach", "--quiet", str(tree), sha)
        yield tree
    finally:
        with contextlib.suppress(SideBySideError):
            _git("worktree", "remove", "--force", str(tree))
        shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(SideBySideError):
            _git("worktree", "prune")


class _Worker:
    """A worker process measuring the tree at `root`."""

    def __init__(self, root: Path, quick: bool) -> None:
        self.root = root.resolve()
        self.quick = quick
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> _Worker:
        argv = [sys.executable, "-P", str(Path(__file__).resolve()), "--serve"]
        if self.quick:
            argv.append("--quick")
        env = {**os.environ, "PYTHONPATH": str(self.root)}
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
            cwd=tempfile.gettempdir(),
        )
        where = Path(self._answer()["engine"]).resolve()
        if not where.is_relative_to(self.root):
            raise SideBySideError(f"the worker for {self.root} imported engine from {where}")
        return self

    def __exit__(self, *exc: object) -> None:
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.write("quit\n")
            proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def run(self, workload: str, kind: str) -> tuple[float, float]:
        """One repetition: microseconds per node, wall clock and CPU time."""
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(f"{workload} {kind}\n")
        self._proc.stdin.flush()
        answer = self._answer()
        return float(answer["us_per_node"]), float(answer.get("cpu_us_per_node", "nan"))

    def _answer(self) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            code = self._proc.wait()
            raise SideBySideError(f"the worker for {self.root} exited {code}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise SideBySideError(f"the worker for {self.root}: {answer['error']}")
        return answer


# ---------------------------------------------------------------------------------------------
# the worker: this file run as a script, `engine` from PYTHONPATH


async def noop(payload: Any, ctx: Any = None) -> dict[str, Any]:
    return {}


async def step(payload: Any, ctx: Any = None) -> dict[str, Any]:
    inputs = payload["inputs"]
    n = next(iter(inputs.values()))["n"] if inputs else 0
    return {"n": n + 1, "note": "small"}


def _pipelines(quick: bool) -> dict[str, tuple[Any, int]]:
    """engine_bench's W1 and W2 pipelines, and their node counts."""
    from engine.api import PipelineBuilder

    width = QUICK_FANOUT if quick else FANOUT
    fanout = PipelineBuilder("bench-fanout", max_concurrency=width)
    fanout.python("source", noop)
    for i in range(width):
        fanout.python(f"n{i}", noop, needs=["source"])
    fanout.python("sink", noop, needs=[f"n{i}" for i in range(width)])
    length = QUICK_CHAIN if quick else CHAIN
    chain = PipelineBuilder("bench-chain")
    for i in range(length):
        chain.python(f"n{i}", step, needs=[f"n{i - 1}"] if i else [])
    return {"W1": (fanout.build(), width + 2), "W2": (chain.build(), length)}


async def _serve(quick: bool) -> None:
    import asyncio
    import gc
    import time

    import engine
    from engine.bus import MemorySink
    from engine.manager import RunManager
    from engine.state import RunStatus
    from engine.store import Store

    def answer(value: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(value) + "\n")
        sys.stdout.flush()

    answer({"engine": engine.__file__})
    pipelines = _pipelines(quick)
    gc.freeze()  # as `interlock run` does once loaded (and engine_bench's workers)
    loop = asyncio.get_running_loop()
    async with contextlib.AsyncExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="interlock-side-"))
        sink = MemorySink()
        memory = await stack.enter_async_context(RunManager(sinks=[sink]))
        store = await stack.enter_async_context(Store(Path(tmp) / "bench.db", synchronous="FULL"))
        durable = await stack.enter_async_context(RunManager(store=store, sinks=[]))
        managers = {"memory": memory, "FULL": durable}
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
            if not line or line[0] == "quit":
                return
            workload, kind = line
            pipeline, nodes = pipelines[workload]
            # The in-memory sink forgets the runs before, as the store keeps them on disk.
            sink.clear()
            gc.collect()
            start, cpu = time.perf_counter(), time.process_time()
            state = await (await managers[kind].start(pipeline))
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            if state.state is not RunStatus.SUCCEEDED:
                answer({"error": f"{workload} {kind} ended {state.state}: {state.reason}"})
                return
            answer({"us_per_node": seconds / nodes * 1e6, "cpu_us_per_node": cpu / nodes * 1e6})


if __name__ == "__main__" and "--serve" in sys.argv:
    import asyncio

    asyncio.run(_serve("--quick" in sys.argv))
