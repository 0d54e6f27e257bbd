"""kill -9 at random moments, then `interlock resume`, again and again: nothing committed is
redone, nothing is lost, and every run still completes.

The pipeline (`data/crash/crash.yaml`) mixes shell nodes and python nodes whose callables live
in a module beside it (`crash_steps.py`, imported from the pipeline's folder, also by the
resuming process). Every node appends its id to an executions file when it starts. At each kill
the test notes which nodes' `node.succeeded` were committed and which nodes had started work in
that incarnation without a committed success (in flight). Then:

- a node whose success was committed at a kill never runs again after it;
- every node ran at least once and at most 1 + the number of kills it was in flight for;
- every run ends `succeeded`, its seq gap-free, each node succeeded exactly once;
- a resume that is not killed exits 0.
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from faults.helpers import INTERLOCK, crash, report, stored_events

PIPELINE = Path(__file__).resolve().parent / "data" / "crash" / "crash.yaml"
NODES = 18
SEED = 5_0519


@dataclass
class Kill:
    position: int  # lines in the executions file at the kill
    committed: frozenset[str]  # nodes whose node.succeeded was in the store
    in_flight: frozenset[str]  # started work in this incarnation, success not committed


@dataclass
class CrashedRun:
    run_id: str
    executions: Path
    kills: list[Kill] = field(default_factory=list)
    clean_exits: int = 0


class CrashLoop:
    def __init__(self, tmp_path: Path, rng: random.Random) -> None:
        self.tmp_path = tmp_path
        self.db = tmp_path / "interlock.db"
        self.rng = rng
        self.kills = 0
        self.runs: list[CrashedRun] = []
        self.resume_seconds: list[float] = []

    def _spawn(self, executions: Path, *args: str) -> subprocess.Popen[str]:
        env = {**os.environ, "FAULTS_EXECUTIONS": str(executions), "NO_COLOR": "1"}
        env.pop("INTERLOCK_DEBUG", None)
        log = (self.tmp_path / "stderr.txt").open("a")
        try:
            return subprocess.Popen(
                [INTERLOCK, *args, "--db", str(self.db)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=env,
                cwd=self.tmp_path,
            )
        finally:
            log.close()

    def lines(self, run: CrashedRun) -> list[str]:
        return run.executions.read_text().split() if run.executions.exists() else []

    def run(self, target_kills: int) -> None:
        while self.kills < target_kills:
            self.crash_one_run(target_kills)

    def crash_one_run(self, target_kills: int) -> None:
        executions = self.tmp_path / f"executions-{len(self.runs)}.txt"
        proc = self._spawn(executions, "run", str(PIPELINE))
        assert proc.stdout is not None
        run = CrashedRun(proc.stdout.readline().strip(), executions)
        assert run.run_id, (self.tmp_path / "stderr.txt").read_text()
        self.runs.append(run)
        incarnation_start = 0
        while True:
            if self.kills < target_kills:
                time.sleep(self.rng.uniform(0.0, 1.5))
            if self.kills >= target_kills or proc.poll() is not None:
                started = time.monotonic()
                code = proc.wait(120)
                self.resume_seconds.append(time.monotonic() - started)
                assert code == 0, (self.tmp_path / "stderr.txt").read_text()[-3000:]
                run.clean_exits += 1
                self.close(proc)
                break
            crash(proc)
            self.close(proc)
            self.kills += 1
            lines = self.lines(run)
            events = stored_events(self.db, run.run_id)
            committed = frozenset(
                str(e["node_id"]) for e in events if e["event_type"] == "node.succeeded"
            )
            in_flight = frozenset(lines[incarnation_start:]) - committed
            run.kills.append(Kill(len(lines), committed, in_flight))
            incarnation_start = len(lines)
            if events and events[-1]["event_type"] == "run.completed":
                break  # killed after its last event: nothing left to resume
            proc = self._spawn(executions, "resume", run.run_id)
        self.check(run)

    @staticmethod
    def close(proc: subprocess.Popen[str]) -> None:
        if proc.stdout is not None:
            proc.stdout.close()

    def check(self, run: CrashedRun) -> None:
        lines = self.lines(run)
        for number, kill in enumerate(run.kills, start=1):
            again = kill.committed & set(lines[kill.position :])
            assert not again, f"kill {number}: committed nodes ran again: {sorted(again)}"
        counts = Counter(lines)
        for node in set(counts) | self.node_ids():
            bound = 1 + sum(node in kill.in_flight for kill in run.kills)
            assert 1 <= counts[node] <= bound, f"{node} ran {counts[node]} times (at most {bound})"
        events = stored_events(self.db, run.run_id)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        succeeded = Counter(e["node_id"] for e in events if e["event_type"] == "node.succeeded")
        assert succeeded == Counter(self.node_ids()), succeeded
        completed = [e for e in events if e["event_type"] == "run.completed"]
        assert [e["data"]["state"] for e in completed] == ["succeeded"]

    @staticmethod
    def node_ids() -> set[str]:
        ids = {"s0", "p1", "p2", "y3", "s4", "j5", "a6", "s7", "y8", "p9", "j10", "p11", "s12"}
        return ids | {"y13", "a14", "j15", "s16", "end"}


def _crash_loop(tmp_path: Path, kills: int) -> CrashLoop:
    loop = CrashLoop(tmp_path, random.Random(SEED + kills))
    loop.run(kills)
    assert loop.kills == kills
    assert len(loop.node_ids()) == NODES
    re_executions = sum(
        max(0, n - 1) for run in loop.runs for n in Counter(loop.lines(run)).values()
    )
    summary = (
        f"crash loop: {kills} kills over {len(loop.runs)} runs, {re_executions} node "
        f"re-executions, every resume completed"
    )
    report(summary)
    return loop


def test_five_kills_at_random_moments_never_rerun_committed_nodes(tmp_path: Path) -> None:
    _crash_loop(tmp_path, kills=5)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_thirty_kills_at_random_moments_never_rerun_committed_nodes(tmp_path: Path) -> None:
    _crash_loop(tmp_path, kills=30)
