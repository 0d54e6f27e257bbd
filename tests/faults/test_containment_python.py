"""Containment of a python node's processes: what its code starts through `subprocess` or
asyncio ends with the node's attempt (success, failure, timeout, run deadline, a signal to
`interlock run`), the whole tree, and never a process that merely reuses a noted pid.

A python node's processes are `interlock`'s own children, in its session, without the marks a
shell node's carry: each is found here by its argv (`sleep 300.<tag><n>`, `python_children.py`).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from engine import capture, spawned
from engine.containment import same_process
from faults.helpers import INTERLOCK, kill_processes, report, stored_events, wait_for

DATA = Path(__file__).parent / "data" / "containment"


def _marked(tag: str, n: int | None = None, settle: float = 0.0) -> list[psutil.Process]:
    """Live processes whose argv holds `300.<tag><n>` (any n if None), given `settle` seconds
    to finish dying."""
    mark = f"300.{tag}{'' if n is None else n}"

    def find() -> list[psutil.Process]:
        found = []
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if process.status() != psutil.STATUS_ZOMBIE and any(
                    mark in arg for arg in process.cmdline()
                ):
                    found.append(process)
        return found

    deadline = time.monotonic() + settle
    found = find()
    while found and time.monotonic() < deadline:
        time.sleep(0.01)
        found = find()
    return found


def _start(tag: str, pipeline: str, db: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [INTERLOCK, "run", str(DATA / pipeline), "--db", str(db)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "FAULT_TAG": tag},
    )
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    assert run_id, proc.stderr.read() if proc.stderr else ""
    return proc, run_id


def _events(db: Path, run_id: str, node_id: str) -> list[dict[str, Any]]:
    return [e for e in stored_events(db, run_id) if e.get("node_id") == node_id]


def _lines(db: Path, run_id: str, node_id: str) -> list[str]:
    return [
        str(e["data"]["line"]) for e in _events(db, run_id, node_id)
        if e["event_type"] == "node.log"
    ]


def _ended(db: Path, run_id: str, node_id: str) -> str | None:
    for event in _events(db, run_id, node_id):
        if event["event_type"] in ("node.succeeded", "node.failed", "node.timed_out"):
            return str(event["event_type"])
    return None


def _run_state(db: Path, run_id: str) -> str | None:
    for event in stored_events(db, run_id):
        if event["event_type"] == "run.completed":
            return str(event["data"]["state"])
    return None


def test_a_python_nodes_processes_end_with_the_node_however_it_ends(tmp_path: Path) -> None:
    tag, db = str(random.randrange(10**8, 10**9)), tmp_path / "db"
    proc, run_id = _start(tag, "python_children.yaml", db)
    try:
        gone_after = []
        for node, n, end in (
            ("returns", 1, "node.succeeded"),
            ("raises", 2, "node.failed"),
            ("times_out", 3, "node.timed_out"),
        ):
            wait_for(lambda node=node: _ended(db, run_id, node) is not None, 30, f"{node} to end")
            seen = time.monotonic()
            assert _ended(db, run_id, node) == end
            assert any(line.startswith("started ") for line in _lines(db, run_id, node))
            assert _marked(tag, n, settle=1.0) == [], f"{node}'s process outlived it"
            gone_after.append(time.monotonic() - seen)
            # Still running (`hold`): the process went with its node, not with the run.
            assert proc.poll() is None
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 1, err
        assert "Traceback" not in err and "Loop" not in err, err
        assert _run_state(db, run_id) == "failed"
        assert _ended(db, run_id, "waited") == "node.succeeded"  # its process was waited for
        waited = _lines(db, run_id, "waited")
        assert not any("still running" in line for line in waited), waited
        assert any("SIGTERM sent" in line for line in _lines(db, run_id, "times_out"))
        assert _marked(tag) == []
        report(f"python nodes (return, raise, timeout): each child gone "
               f"{max(gone_after) * 1000:.0f} ms at most after the node's end was stored")
    finally:
        kill_processes(_marked(tag))  # first: a leaked child holds the run's stderr open
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


@pytest.mark.parametrize("how", ["SIGTERM", "deadline"])
def test_a_cancelled_python_nodes_processes_end_with_it(tmp_path: Path, how: str) -> None:
    """An asyncio child, and a thread's child that ignores SIGTERM (the SIGKILL after the
    grace ends it), both cancelled: by SIGTERM to `interlock run`, or by the run's deadline."""
    tag, db = str(random.randrange(10**8, 10**9)), tmp_path / "db"
    pipeline = "python_running.yaml" if how == "SIGTERM" else "python_deadline.yaml"
    proc, run_id = _start(tag, pipeline, db)
    try:
        wait_for(lambda: len(_marked(tag)) >= 3, 30, "the nodes' processes")
        before = _marked(tag)
        started = time.monotonic()
        if how == "SIGTERM":
            proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
        took = time.monotonic() - started
        assert proc.returncode == (4 if how == "SIGTERM" else 3), err
        assert "Traceback" not in err and "Loop" not in err, err  # asyncio's child watcher
        assert _run_state(db, run_id) == ("cancelled" if how == "SIGTERM" else "timeout")
        assert _marked(tag, settle=0.5) == []
        assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in before)
        assert any(
            "SIGKILL sent" in line for line in _lines(db, run_id, "stubborn_child")
        )
        report(f"python nodes, {how}: {len(before)} processes gone (one after its 0.5 s "
               f"grace), exit {proc.returncode} after {took:.2f}s")
    finally:
        kill_processes(_marked(tag))  # first: a leaked child holds the run's stderr open
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "300"], start_new_session=True)


def test_a_noted_pid_now_another_process_is_never_signalled() -> None:
    stranger = _sleeper()
    try:
        started = psutil.Process(stranger.pid).create_time()
        reused = [(stranger.pid, started - 5.0)]  # the noted process started earlier
        assert same_process(stranger.pid, started - 5.0) is None
        assert spawned.kill_now(reused) == 0
        time.sleep(0.1)
        assert stranger.poll() is None
        assert spawned.kill_now([(stranger.pid, started)]) == 1
        assert stranger.wait(5) == -signal.SIGKILL
    finally:
        stranger.kill()
        stranger.wait(5)


def test_a_process_started_after_its_nodes_end_is_killed_at_once() -> None:
    """A thread or task that outlived its node starts a process: nothing would end it later."""
    scope = capture.bound(lambda _stream, _line: None)
    with scope:
        assert spawned.take(scope.binding) is None  # the attempt is over
        late = subprocess.Popen(["sleep", "300"])
        try:
            assert late.wait(5) == -signal.SIGKILL
        finally:
            late.kill()
            late.wait(5)
