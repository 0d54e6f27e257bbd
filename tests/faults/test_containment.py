"""Containment: no process a node started outlives the node, by any path, with real signals.

Every pipeline here leaves processes outside the node's process group (`setsid`, a grandchild
calling `setpgid(0, 0)`, a double fork); the processes are hunted by the run id in their
environment, wherever they were re-parented to.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from engine import containment
from faults.helpers import (
    INTERLOCK,
    kill_processes,
    processes_of_run,
    report,
    stored_events,
    wait_for,
)

DATA = Path(__file__).parent / "data" / "containment"


def _start(db: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [INTERLOCK, *args, "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    assert run_id, proc.stderr.read() if proc.stderr else ""
    return proc, run_id


def _ready_lines(db: Path, run_id: str) -> int:
    return sum(
        1
        for e in stored_events(db, run_id)
        if e["event_type"] == "node.log" and (e.get("data") or {}).get("line") == "ready"
    )


def _escaped(db: Path, run_id: str, count: int) -> list[psutil.Process]:
    """Wait until the nodes report ready and their escaped processes exist; those processes."""
    wait_for(lambda: _ready_lines(db, run_id) >= 3, 30, "three nodes ready")
    wait_for(lambda: len(processes_of_run(run_id)) >= count, 10, f"{count} node processes")
    return processes_of_run(run_id)


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    _out, err = proc.communicate(timeout=60)
    return proc.returncode, err


def test_no_process_outlives_a_node_that_succeeds_fails_or_times_out(tmp_path: Path) -> None:
    proc, run_id = _start(tmp_path / "db", "run", str(DATA / "escapers.yaml"))
    code, err = _finish(proc)
    try:
        assert code == 1, err
        assert "setpgid_then_fail failed" in err and "timed_out" in err
        assert processes_of_run(run_id, settle=0.5) == []
    finally:
        kill_processes(processes_of_run(run_id, settle=0))


def test_the_run_deadline_leaves_no_process_behind(tmp_path: Path) -> None:
    proc, run_id = _start(tmp_path / "db", "run", str(DATA / "escapers_deadline.yaml"))
    code, err = _finish(proc)
    try:
        assert code == 3, err
        assert processes_of_run(run_id, settle=0.5) == []
    finally:
        kill_processes(processes_of_run(run_id, settle=0))


@pytest.mark.parametrize(
    "signals",
    [
        [signal.SIGHUP],
        [signal.SIGTERM],
        [signal.SIGINT],
        [signal.SIGINT, signal.SIGINT],
    ],
    ids=["SIGHUP", "SIGTERM", "SIGINT", "double-SIGINT"],
)
def test_a_signal_to_interlock_run_cancels_gracefully_and_leaves_no_descendant(
    tmp_path: Path, signals: list[int]
) -> None:
    db = tmp_path / "db"
    proc, run_id = _start(db, "run", str(DATA / "escapers_running.yaml"))
    try:
        # 3 commands, the setsid sleep, the python grandchild: 5 at least (sh may add more).
        before = _escaped(db, run_id, 5)
        started = time.monotonic()
        for sig in signals:
            proc.send_signal(sig)
            time.sleep(0.05)
        code, err = _finish(proc)
        took = time.monotonic() - started
        assert code == 4, err
        assert "cancelling run" in err
        assert processes_of_run(run_id, settle=0.5) == []
        assert all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in before)
        states = [e for e in stored_events(db, run_id) if e["event_type"] == "run.completed"]
        assert states[-1]["data"]["state"] == "cancelled"
        report(f"{'+'.join(signal.Signals(s).name for s in signals)}: cancelled, "
               f"{len(before)} processes gone, exit after {took:.2f}s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
        kill_processes(processes_of_run(run_id, settle=0))


def test_interlock_cancel_from_another_process_leaves_no_descendant(tmp_path: Path) -> None:
    db = tmp_path / "db"
    proc, run_id = _start(db, "run", str(DATA / "escapers_running.yaml"))
    try:
        _escaped(db, run_id, 5)
        subprocess.run([INTERLOCK, "cancel", run_id, "--db", str(db)], check=True, timeout=30)
        code, err = _finish(proc)
        assert code == 4, err
        assert processes_of_run(run_id, settle=0.5) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
        kill_processes(processes_of_run(run_id, settle=0))


def _kill_owner_only(proc: subprocess.Popen[str]) -> None:
    """kill -9 of the owner alone: its nodes' processes live on (as after an OOM kill)."""
    proc.kill()
    proc.communicate(timeout=10)


def test_cancel_of_an_interrupted_run_kills_what_the_dead_owner_started(tmp_path: Path) -> None:
    db = tmp_path / "db"
    proc, run_id = _start(db, "run", str(DATA / "escapers_running.yaml"))
    try:
        before = _escaped(db, run_id, 5)
        _kill_owner_only(proc)
        time.sleep(0.3)
        assert len(processes_of_run(run_id)) >= 5, "the owner's nodes should outlive it"
        started = time.monotonic()
        done = subprocess.run(
            [INTERLOCK, "cancel", run_id, "--db", str(db)],
            capture_output=True, text=True, timeout=60,
        )
        took = time.monotonic() - started
        assert done.returncode == 0, done.stderr
        assert "marked cancelled" in done.stdout
        assert processes_of_run(run_id, settle=0.5) == []
        report(f"cancel of an interrupted run: {len(before)} orphans killed, {took:.2f}s")
    finally:
        kill_processes(processes_of_run(run_id, settle=0))


def test_resume_of_an_interrupted_run_kills_what_the_dead_owner_started(tmp_path: Path) -> None:
    db = tmp_path / "db"
    proc, run_id = _start(db, "run", str(DATA / "escapers_running.yaml"))
    resumed: subprocess.Popen[str] | None = None
    try:
        old = {p.pid: p for p in _escaped(db, run_id, 5)}
        _kill_owner_only(proc)
        resumed = subprocess.Popen(
            [INTERLOCK, "resume", run_id, "--db", str(db)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        wait_for(
            lambda: not any(p.is_running() and p.status() != "zombie" for p in old.values()),
            30, "the dead owner's processes to be killed",
        )
        # The resumed run's own nodes start again; a SIGTERM ends them as well.
        wait_for(lambda: _ready_lines(db, run_id) >= 6, 30, "the resumed nodes ready")
        resumed.send_signal(signal.SIGTERM)
        code, err = _finish(resumed)
        assert code == 4, err
        assert processes_of_run(run_id, settle=0.5) == []
    finally:
        if resumed is not None and resumed.poll() is None:
            resumed.kill()
            resumed.communicate(timeout=10)
        kill_processes(processes_of_run(run_id, settle=0))


def _sleeper(env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(300)"],
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )


def test_a_recorded_pid_reused_by_another_process_is_never_killed() -> None:
    stranger = _sleeper()
    try:
        record: dict[str, Any] = containment.process_record(stranger.pid)
        record["start_time"] -= 5.0  # the recorded process started earlier: this is a reuse
        assert containment.kill_orphans("run-x", [record]) == 0
        time.sleep(0.1)
        assert stranger.poll() is None
        # The very same record with the true start time does kill it.
        record["start_time"] += 5.0
        assert containment.kill_orphans("run-x", [record]) == 1
        assert stranger.wait(5) in (-signal.SIGKILL, 0)  # 0: reaped by kill_orphans itself
        assert not psutil.pid_exists(stranger.pid)
    finally:
        stranger.kill()
        stranger.wait(5)


def test_orphans_are_found_by_their_run_mark_but_never_another_runs() -> None:
    mine = _sleeper({"INTERLOCK_RUN_ID": "run-a"})
    other = _sleeper({"INTERLOCK_RUN_ID": "run-b"})
    leader = _sleeper()
    try:
        record = containment.process_record(leader.pid)
        record["start_time"] = min(record["start_time"], time.time() - 10)  # no leader match
        assert containment.kill_orphans("run-a", [record]) == 1
        mine.wait(5)
        assert not psutil.pid_exists(mine.pid)
        assert other.poll() is None and leader.poll() is None
    finally:
        for p in (mine, other, leader):
            p.kill()
            p.wait(5)


def test_an_attempts_sweep_kills_its_marked_processes_but_none_older_than_its_command() -> None:
    marks = {"INTERLOCK_RUN_ID": "run-s", "INTERLOCK_NODE_ID": "n", "INTERLOCK_ATTEMPT": "1"}
    older = _sleeper(marks)  # carries the marks, but was running before the command started
    time.sleep(0.05)
    command = _sleeper()
    escaped = _sleeper(marks)  # the command's own, out of its group (as after `setsid`)
    try:
        since = containment.start_time(command.pid)
        assert since is not None
        assert containment.kill_attempt(command.pid, "run-s", "n", 1, since=since) >= 1
        escaped.wait(5)
        command.wait(5)
        assert older.poll() is None  # not the attempt's: never signalled
    finally:
        for p in (older, command, escaped):
            p.kill()
            p.wait(5)


TMUX = shutil.which("tmux")


@pytest.mark.skipif(TMUX is None, reason="needs tmux")
def test_closing_the_consoles_terminal_cancels_its_run_and_leaves_no_descendant(
    tmp_path: Path,
) -> None:
    """The terminal goes away (tmux kills the session: SIGHUP, then the tty is gone)."""
    assert TMUX is not None
    db = tmp_path / "runs.db"
    socket = f"interlock-hup-{os.getpid()}"

    def tmux(*args: str) -> str:
        assert TMUX is not None
        return subprocess.run(
            [TMUX, "-L", socket, "-f", "/dev/null", *args],
            check=True, capture_output=True, text=True, timeout=10,
        ).stdout

    command = f"env -u COLUMNS -u LINES {INTERLOCK} --db {db} --pipelines {DATA / 'console'}"
    tmux("new-session", "-d", "-s", "console", "-x", "120", "-y", "36", command)
    run_id = ""
    try:
        def shows(text: str) -> bool:
            return text in tmux("capture-pane", "-p", "-t", "console")

        wait_for(lambda: shows("✔ valid"), 30, "the console to list the pipeline")
        wait_for(lambda: shows("Runs  (0 of 0"), 30, "the console to open the database")
        time.sleep(0.3)
        tmux("send-keys", "-t", "console", "Enter")
        wait_for(lambda: shows("Launch a run"), 30, "the launch dialog")
        tmux("send-keys", "-t", "console", "C-s")
        wait_for(lambda: db.exists() and bool(_run_ids(db)), 30, "the run to exist")
        run_id = _run_ids(db)[0]
        before = _escaped(db, run_id, 5)
        console = psutil.Process(int(tmux("display-message", "-p", "-t", "console",
                                          "#{pane_pid}").strip()))
        tmux("kill-session", "-t", "console")
        wait_for(lambda: _completed_state(db, run_id) is not None, 30, "the run to end")
        assert _completed_state(db, run_id) == "cancelled"
        assert processes_of_run(run_id, settle=1.0) == []
        # The console itself goes too: it has no terminal left to draw on.
        wait_for(lambda: not console.is_running() or console.status() == psutil.STATUS_ZOMBIE,
                 15, "the console to exit")
        report(f"console hangup: run cancelled, {len(before)} processes gone")
    finally:
        subprocess.run([TMUX, "-L", socket, "kill-server"], check=False, capture_output=True,
                       timeout=10)
        if run_id:
            kill_processes(processes_of_run(run_id, settle=0))


def _run_ids(db: Path) -> list[str]:
    import sqlite3

    try:
        conn = sqlite3.connect(f"{db.absolute().as_uri()}?mode=ro", uri=True)
        try:
            return [row[0] for row in conn.execute("SELECT run_id FROM runs")]
        finally:
            conn.close()
    except sqlite3.Error:
        return []


def _completed_state(db: Path, run_id: str) -> str | None:
    for event in stored_events(db, run_id):
        if event["event_type"] == "run.completed":
            return str(event["data"]["state"])
    return None


# -- the watcher, `interlock test`, and escapees that carry no mark ------------------------------


def _tagged(tag: str, settle: float = 0.5) -> list[psutil.Process]:
    """Live processes started under `FAULT_TAG=tag` (by environment, or for those that cleared
    it, by the tag in their argv), given `settle` seconds to finish dying."""

    def find() -> list[psutil.Process]:
        found = []
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if process.status() == psutil.STATUS_ZOMBIE:
                    continue
                if (process.environ().get("FAULT_TAG") == tag
                        or any(tag in arg for arg in process.cmdline())):
                    found.append(process)
        return found

    deadline = time.monotonic() + settle
    found = find()
    while found and time.monotonic() < deadline:
        time.sleep(0.02)
        found = find()
    return found


def _tag() -> str:
    return str(random.randrange(10**8, 10**9))


def _spawn(tag: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [INTERLOCK, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "FAULT_TAG": tag},
    )


def _stderr_until(proc: subprocess.Popen[str], text: str) -> str:
    assert proc.stderr is not None
    seen = ""
    while text not in seen:
        line = proc.stderr.readline()
        assert line, seen
        seen += line
    return seen


def test_sighup_to_a_watcher_cancels_its_run_and_leaves_no_descendant(tmp_path: Path) -> None:
    db, tag = tmp_path / "db", _tag()
    pipeline = tmp_path / "flows" / "escapers_running.yaml"
    pipeline.parent.mkdir()
    shutil.copy(DATA / "escapers_running.yaml", pipeline)
    watcher = _spawn(tag, "run", str(pipeline), "--watch", "--db", str(db))
    try:
        assert watcher.stdout is not None
        run_id = watcher.stdout.readline().strip()
        before = _escaped(db, run_id, 5)
        child = psutil.Process(watcher.pid).children()
        started = time.monotonic()
        watcher.send_signal(signal.SIGHUP)
        code, err = _finish(watcher)
        assert code == 0, err
        assert "watch: cancelling the run in progress" in err and "watch: stopped" in err
        assert _completed_state(db, run_id) == "cancelled"
        assert processes_of_run(run_id, settle=0.5) == []
        assert _tagged(tag) == []  # the child `interlock run` too
        assert child and not any(p.is_running() for p in child)
        report(f"watcher SIGHUP: run cancelled, {len(before)} processes gone, "
               f"exit 0 after {time.monotonic() - started:.2f}s")
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.communicate(timeout=10)
        kill_processes(_tagged(tag, settle=0))


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM, signal.SIGINT],
                         ids=["SIGHUP", "SIGTERM", "SIGINT"])
def test_a_signal_to_interlock_test_cancels_the_node_and_leaves_no_descendant(
    tmp_path: Path, sig: int
) -> None:
    tag = _tag()
    proc = _spawn(tag, "test", str(DATA / "escapers_running.yaml"), "setsid_child",
                  "--db", str(tmp_path / "db"))
    try:
        _stderr_until(proc, "ready")
        wait_for(lambda: len(_tagged(tag, settle=0)) >= 4, 10, "the node's processes")
        before = len(_tagged(tag, settle=0))  # the test, sh, its sleep, the setsid sleep
        started = time.monotonic()
        proc.send_signal(sig)
        code, err = _finish(proc)
        assert code == 4, err
        assert "cancelling the test" in err and "setsid_child cancelled" in err
        assert _tagged(tag) == []
        report(f"interlock test, {signal.Signals(sig).name}: exit 4, {before - 1} processes "
               f"gone, after {time.monotonic() - started:.2f}s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
        kill_processes(_tagged(tag, settle=0))


def test_a_node_timing_out_under_interlock_test_leaves_no_descendant(tmp_path: Path) -> None:
    tag = _tag()
    proc = _spawn(tag, "test", str(DATA / "alone_timeout.yaml"), "setpgid_then_time_out",
                  "--db", str(tmp_path / "db"))
    try:
        code, err = _finish(proc)
        assert code == 1, err
        assert "timed_out" in err
        assert _tagged(tag) == []
    finally:
        kill_processes(_tagged(tag, settle=0))


@pytest.mark.parametrize("command", ["run", "test"])
def test_an_escapee_that_cleared_its_environment_ends_with_the_command(
    tmp_path: Path, command: str
) -> None:
    tag = _tag()
    args = [str(DATA / "unmarked.yaml")] + (["escape"] if command == "test" else [])
    proc = _spawn(tag, command, *args, "--db", str(tmp_path / "db"))
    try:
        code, err = _finish(proc)
        assert code == 0, err
        assert _tagged(tag) == []  # `sleep 300.<tag>`, in a session of its own, no environment
    finally:
        kill_processes(_tagged(tag, settle=0))
