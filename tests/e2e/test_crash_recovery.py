"""Crash recovery, end to end: `kill -9` of the process running a run, then `interlock resume`.

"Acknowledged" is defined observably: an event is acknowledged once another process can read it
(`interlock events RUN`). Every event acknowledged before a kill must survive it, unchanged and
in order; the database must stay intact (`PRAGMA integrity_check`), seq gap-free, and `resume`
must always bring the run to `succeeded`, never running a succeeded node again.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections import Counter
from typing import TYPE_CHECKING

from e2e.conftest import (
    PIPELINES,
    assert_clean_error,
    assert_gap_free,
    data_pipeline,
    integrity_check,
    stored_seqs,
    wait_until,
)

if TYPE_CHECKING:
    from pathlib import Path

    from e2e.conftest import Cli, RunProcess, StartRun

TWENTY_NODES = 20
SEED = 20_240_601


def _succeeded_twice(events: list[dict[str, object]]) -> list[str]:
    counts = Counter(e.get("node_id") for e in events if e["event_type"] == "node.succeeded")
    return sorted(str(node) for node, n in counts.items() if n > 1)


def test_a_run_killed_while_its_last_node_runs_is_interrupted_and_resumes_without_rerunning(
    cli: Cli, start_run: StartRun, tmp_path: Path, db: Path
) -> None:
    log = tmp_path / "invocations.txt"
    run = start_run(data_pipeline("chain"), "--param", f"log={log}")
    wait_until(
        lambda: log.exists() and "C" in log.read_text().split(),
        what="node C to start",
    )
    run.crash()

    assert cli.status(run.run_id)["state"] == "interrupted"
    assert log.read_text().split() == ["A", "B", "C"]

    resumed = cli.start("resume", run.run_id)
    assert resumed.run_id == run.run_id
    assert resumed.wait() == 0, resumed.stderr()

    status = cli.status(run.run_id)
    assert status["state"] == "succeeded"
    assert {n: s["state"] for n, s in status["nodes"].items()} == dict.fromkeys("ABC", "succeeded")
    # A and B were not invoked again; C (running at the crash) ran again: at-least-once.
    assert log.read_text().split() == ["A", "B", "C", "C"]
    events = cli.events(run.run_id)
    assert_gap_free([int(str(e["seq"])) for e in events])
    assert _succeeded_twice(events) == []
    assert [e["event_type"] for e in events].count("run.resumed") == 1
    assert integrity_check(db) == "ok"


def test_two_resumes_of_one_crashed_run_at_once_finish_it_once_and_refuse_the_other(
    cli: Cli, start_run: StartRun, tmp_path: Path
) -> None:
    log = tmp_path / "invocations.txt"
    run = start_run(data_pipeline("chain"), "--param", f"log={log}")
    wait_until(lambda: log.exists() and "C" in log.read_text().split(), what="node C to start")
    run.crash()

    first = cli.spawn("resume", run.run_id)
    second = cli.spawn("resume", run.run_id)
    codes = sorted([first.wait(), second.wait()])

    assert codes == [0, 2], first.stderr() + second.stderr()
    loser = first if second.proc.returncode == 0 else second
    assert_clean_error(
        subprocess.CompletedProcess(loser.args, 2, loser.stdout(), loser.stderr())
    )
    assert cli.status(run.run_id)["state"] == "succeeded"
    assert log.read_text().split() == ["A", "B", "C", "C"]
    events = cli.events(run.run_id)
    assert_gap_free([int(str(e["seq"])) for e in events])
    assert _succeeded_twice(events) == []
    assert [e["event_type"] for e in events].count("run.resumed") == 1


def test_a_run_killed_while_waiting_for_approval_is_decided_only_after_resume(
    cli: Cli, start_run: StartRun
) -> None:
    run = start_run(PIPELINES / "approval.yaml")
    cli.wait_for_node(run.run_id, "publish_gate", "waiting")
    follower = cli.spawn("events", run.run_id, "--follow")
    run.crash()

    # A follower of a run whose owner died does not wait for it forever.
    assert follower.wait(10) == 0, follower.stderr()
    refused = cli("approve", run.run_id, "publish_gate")
    assert_clean_error(refused, expect="resume")
    assert cli.status(run.run_id)["state"] == "interrupted"

    resumed = cli.start("resume", run.run_id)
    cli.wait_for_node(run.run_id, "publish_gate", "waiting")
    cli.ok("approve", run.run_id, "publish_gate")
    assert resumed.wait() == 0, resumed.stderr()
    status = cli.status(run.run_id)
    assert status["state"] == "succeeded"
    assert status["nodes"]["build"]["attempts"] == 1, "a succeeded node ran again"
    requested = cli.events(run.run_id, "--type", "approval.requested")
    assert [e["attempt"] for e in requested] == [1, 2]


def test_a_crashed_run_can_be_cancelled_from_another_process_and_then_cannot_be_resumed(
    cli: Cli, start_run: StartRun, tmp_path: Path
) -> None:
    log = tmp_path / "invocations.txt"
    run = start_run(data_pipeline("chain"), "--param", f"log={log}")
    wait_until(lambda: log.exists() and "C" in log.read_text().split(), what="node C to start")
    run.crash()

    cancel = cli("cancel", run.run_id, "--reason", "abandoned after the crash")

    assert cancel.returncode == 0, cancel.stderr
    status = cli.status(run.run_id)
    assert status["state"] == "cancelled"
    assert status["nodes"]["C"]["state"] == "cancelled"
    assert status["nodes"]["A"]["state"] == "succeeded"
    assert_clean_error(cli("resume", run.run_id), expect="cancelled")
    assert_gap_free(stored_seqs(cli.db, run.run_id))


STEPS_MODULE = """
import time


def record(payload, ctx):
    with open(payload["params"]["log"], "a") as f:
        f.write(payload["node_id"] + "\\n")
    if payload["node_id"] == "slow":
        time.sleep(2)
    return {"node": payload["node_id"]}
"""

PYTHON_PIPELINE = """
id: e2e-python-steps
params:
  log: {default: /dev/null}
nodes:
  - {id: quick, type: python, call: "e2e_steps:record"}
  - {id: slow, type: python, call: "e2e_steps:record", needs: [quick]}
"""


def test_python_nodes_from_a_module_beside_the_pipeline_resume_and_replay_from_elsewhere(
    cli: Cli, start_run: StartRun, tmp_path: Path
) -> None:
    folder = tmp_path / "flow"
    folder.mkdir()
    (folder / "e2e_steps.py").write_text(STEPS_MODULE)
    (folder / "steps.yaml").write_text(PYTHON_PIPELINE)
    log = tmp_path / "invocations.txt"
    run = start_run(folder / "steps.yaml", "--param", f"log={log}")
    wait_until(lambda: log.exists() and "slow" in log.read_text().split(), what="node slow")
    run.crash()

    # This process's working directory is not the pipeline's folder.
    resumed = cli.start("resume", run.run_id)
    assert resumed.wait() == 0, resumed.stderr()
    assert log.read_text().split() == ["quick", "slow", "slow"]

    replay = cli("replay", run.run_id)
    assert replay.returncode == 0, replay.stderr
    assert cli.status(replay.stdout.splitlines()[0])["state"] == "succeeded"
    assert log.read_text().split() == ["quick", "slow", "slow", "quick", "slow"]


class CrashLoop:
    """Kills the runs of the twenty-node pipeline at random moments and resumes them."""

    def __init__(self, cli: Cli, db: Path, log: Path, rng: random.Random) -> None:
        self.cli = cli
        self.db = db
        self.log = log
        self.rng = rng
        self.kills = 0
        self.run_ids: list[str] = []

    def start(self) -> RunProcess:
        run = self.cli.start(
            "run", data_pipeline("twenty"), "--param", f"log={self.log}", "--param", "pause=0.1"
        )
        self.run_ids.append(run.run_id)
        return run

    def kill_at_random(self, process: RunProcess, run_id: str) -> bool:
        """Kill `process` at a random moment; True if the run is left unfinished."""
        time.sleep(self.rng.uniform(0.0, 0.7))
        acknowledged = self.cli.event_lines(run_id)
        if not process.running():
            assert process.wait() == 0, process.stderr()
            return False
        process.crash()
        self.kills += 1
        after = self.cli.event_lines(run_id)
        assert after[: len(acknowledged)] == acknowledged, (
            f"kill {self.kills}: events acknowledged before the kill changed or vanished"
        )
        assert integrity_check(self.db) == "ok", f"kill {self.kills}: the database is corrupt"
        assert_gap_free(stored_seqs(self.db, run_id))
        events = [json.loads(line) for line in after]
        assert _succeeded_twice(events) == []
        # Killed after its last event was committed, the run is simply finished.
        return bool(events[-1]["event_type"] != "run.completed")

    def resume(self, run_id: str) -> RunProcess:
        # The resume itself is killed at random moments too, even before it prints the run id.
        return self.cli.spawn("resume", run_id)

    def crash_runs(self, kills: int) -> None:
        run = self.start()
        run_id = run.run_id
        process = run
        while self.kills < kills:
            if self.kill_at_random(process, run_id):
                process = self.resume(run_id)
                continue
            # The run ended (before the kill, or the kill came after its last event).
            self.check_finished(run_id)
            run = self.start()
            run_id, process = run.run_id, run
        code = process.wait()
        assert code == 0, process.stderr()
        self.check_finished(run_id)

    def check_finished(self, run_id: str) -> None:
        status = self.cli.status(run_id)
        assert status["state"] == "succeeded", status
        assert len(status["nodes"]) == TWENTY_NODES
        assert {s["state"] for s in status["nodes"].values()} == {"succeeded"}
        events = self.cli.events(run_id)
        assert_gap_free([int(str(e["seq"])) for e in events])
        assert _succeeded_twice(events) == []
        assert events[-1]["event_type"] == "run.completed"


def _crash_loop(cli: Cli, db: Path, tmp_path: Path, kills: int) -> None:
    loop = CrashLoop(cli, db, tmp_path / "invocations.txt", random.Random(SEED))
    loop.crash_runs(kills)
    assert loop.kills == kills
    # Every run of the loop ended succeeded, after all its crashes.
    listed = {r["run_id"]: r["state"] for r in cli.runs()}
    assert {listed[run_id] for run_id in loop.run_ids} == {"succeeded"}
    assert integrity_check(db) == "ok"


def test_twenty_kills_at_random_moments_lose_no_acknowledged_event_and_resume_always_completes(
    cli: Cli, db: Path, tmp_path: Path
) -> None:
    _crash_loop(cli, db, tmp_path, kills=20)

