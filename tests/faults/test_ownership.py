"""One writer per run, and a store that fails closed, attacked with real processes.

Every test drives the real `interlock` command in subprocesses against a database in its own
temp dir, and attacks one rule of DESIGN section 4 ("Ownership", "The store is fail-closed",
breakers): a second sqlite3 connection holding `BEGIN IMMEDIATE` for 6 s and 25 s mid-run, a full
disk (a small tmpfs), resume and cancels racing for an interrupted run, an owner SIGSTOPped past
its lease, reads of an interrupted run, and one breaker tripped by four processes in turn.
Figures go to tests/faults/README.md (`pytest -s` prints them).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from faults.helpers import INTERLOCK, report, stored_events, wait_for

DATA = Path(__file__).resolve().parent / "data" / "lease"
CHAIN = DATA / "chain.yaml"
HELD = DATA / "held.yaml"
BREAKER = DATA / "breaker.yaml"
CHAIN_NODES = [f"n{i:02d}" for i in range(1, 13)]


class Interlock:
    """`interlock` commands against one database, with their stderr kept in files."""

    def __init__(self, tmp_path: Path, db: Path | None = None) -> None:
        self.tmp_path = tmp_path
        self.db = db or tmp_path / "interlock.db"
        self.env = {**os.environ, "NO_COLOR": "1", "INTERLOCK_DB": str(self.db)}
        self.env.pop("INTERLOCK_DEBUG", None)
        self.env.pop("INTERLOCK_LEASE_SECONDS", None)
        self.spawned: list[subprocess.Popen[str]] = []

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        # A name of its own: racers spawn from several threads at once, and a count of those
        # spawned so far could name two processes' files alike.
        err = (self.tmp_path / f"stderr-{uuid.uuid4().hex}.txt").open("w")
        proc = subprocess.Popen(
            [INTERLOCK, *args, "--db", str(self.db)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env={**self.env, **(env or {})},
        )
        err.close()
        proc.stderr_path = err.name  # type: ignore[attr-defined]  # read back by `stderr`
        self.spawned.append(proc)
        return proc

    @staticmethod
    def stderr(proc: subprocess.Popen[str]) -> str:
        return Path(proc.stderr_path).read_text()  # type: ignore[attr-defined]

    def __call__(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [INTERLOCK, *args, "--db", str(self.db)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )

    def status(self, run_id: str) -> dict[str, Any]:
        result = self("status", run_id, "--json")
        assert result.returncode == 0, result.stderr
        parsed: dict[str, Any] = json.loads(result.stdout)
        return parsed

    def close(self) -> None:
        for proc in self.spawned:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)
                proc.kill()
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()


@pytest.fixture
def interlock(tmp_path: Path) -> Any:
    runner = Interlock(tmp_path)
    yield runner
    runner.close()


def _types(events: list[dict[str, Any]]) -> list[str]:
    return [str(e["event_type"]) for e in events]


def assert_log_valid(events: list[dict[str, Any]]) -> None:
    """Seq gap-free from 1, exactly one run.completed, and it is the last event."""
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), "seq gap or repeat"
    assert _types(events).count("run.completed") == 1, _types(events)
    assert events[-1]["event_type"] == "run.completed"


def succeeded_nodes(events: list[dict[str, Any]]) -> set[str]:
    return {str(e["node_id"]) for e in events if e["event_type"] == "node.succeeded"}


def printed_successes(stderr: str) -> set[str]:
    return {line.split()[2] for line in stderr.splitlines() if " ✔ " in line}


class WriteLock:
    """A second sqlite3 connection holding the database's write lock (`BEGIN IMMEDIATE`)."""

    def __init__(self, db: Path) -> None:
        self.conn = sqlite3.connect(db, isolation_level=None, timeout=30)
        self.taken_at = 0.0

    def __enter__(self) -> WriteLock:
        self.conn.execute("BEGIN IMMEDIATE")
        self.taken_at = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


# ---------------------------------------------------------------------------------------------
# fail-closed writes


def test_a_write_lock_held_6_s_mid_run_only_delays_the_run(
    interlock: Interlock, tmp_path: Path
) -> None:
    log = tmp_path / "executions.txt"
    proc = interlock.spawn("run", str(CHAIN), "--param", f"log={log}")
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    wait_for(lambda: len(_lines(log)) >= 3, 30, "three nodes to start")
    with WriteLock(interlock.db):
        before = len(_lines(log))
        time.sleep(6)
        during = len(_lines(log)) - before
    code = proc.wait(90)
    assert code == 0, interlock.stderr(proc)
    events = stored_events(interlock.db, run_id)
    assert_log_valid(events)
    assert events[-1]["data"]["state"] == "succeeded"
    assert succeeded_nodes(events) == set(CHAIN_NODES)
    assert sorted(_lines(log)) == CHAIN_NODES, "a node ran twice"
    # A chain node lasts ~0.3 s: with nothing acknowledged for 6 s, at most the nodes that
    # start in the first second of the lock (plus the one running) may start.
    assert during <= 5, f"{during} nodes started while the store was locked for 6 s"
    report(f"lock 6 s: run succeeded, {during} nodes started during the lock, no seq gap")


def test_a_write_lock_held_25_s_stops_the_run_with_exit_2_and_resume_redoes_only_unrecorded(
    interlock: Interlock, tmp_path: Path
) -> None:
    log = tmp_path / "executions.txt"
    proc = interlock.spawn("run", str(CHAIN), "--param", f"log={log}")
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    wait_for(lambda: len(_lines(log)) >= 3, 30, "three nodes to start")
    lock = WriteLock(interlock.db)
    with lock:
        code = proc.wait(40)
        exited_after = time.monotonic() - lock.taken_at
        started_in_lock = _lines(log)
        time.sleep(max(0.0, 25 - (time.monotonic() - lock.taken_at)))
    stderr = interlock.stderr(proc)
    assert code == 2, stderr
    message = stderr.strip().splitlines()[-1]
    assert message.startswith("interlock: run ") and "write lock" in message, message
    assert "Traceback" not in stderr
    events = stored_events(interlock.db, run_id)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), "seq gap"
    assert "run.completed" not in _types(events)
    recorded = succeeded_nodes(events)
    assert printed_successes(stderr) <= recorded, "printed as succeeded but not recorded"
    assert interlock.status(run_id)["state"] == "interrupted"

    resumed = interlock("resume", run_id, timeout=90)
    assert resumed.returncode == 0, resumed.stderr
    events = stored_events(interlock.db, run_id)
    assert_log_valid(events)
    assert events[-1]["data"]["state"] == "succeeded"
    again = _lines(log)[len(started_in_lock) :]
    assert not set(again) & recorded, f"recorded successes ran again: {set(again) & recorded}"
    assert sorted(set(_lines(log))) == CHAIN_NODES
    report(
        f"lock 25 s: exit 2 after {exited_after:.1f} s of lock, {len(recorded)} successes "
        f"recorded, {len(started_in_lock)} nodes started in all; resume re-ran {len(again)} "
        f"({sorted(again)}), none of them recorded"
    )


def _mount_tmpfs(target: Path, size: str) -> None:
    target.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here to fill a disk ({result.stderr.strip()})")


def test_a_full_disk_stops_the_run_saying_so_and_resume_finishes_it(
    interlock: Interlock, tmp_path: Path
) -> None:
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "4m")
    try:
        local = Interlock(tmp_path, disk / "interlock.db")
        try:
            _full_disk(local, disk, tmp_path)
        finally:
            local.close()
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _full_disk(interlock: Interlock, disk: Path, tmp_path: Path) -> None:
    log = tmp_path / "executions.txt"
    proc = interlock.spawn("run", str(CHAIN), "--param", f"log={log}", "--param", "pause=0.5")
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    wait_for(lambda: len(_lines(log)) >= 2, 30, "two nodes to start")
    filler = disk / "filler"
    with filler.open("wb") as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 65536)
            out.flush()
    code = proc.wait(60)
    stderr = interlock.stderr(proc)
    assert code == 2, stderr
    assert "the disk is full" in stderr.strip().splitlines()[-1], stderr
    events = stored_events(interlock.db, run_id)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), "seq gap"
    recorded = succeeded_nodes(events)
    assert printed_successes(stderr) <= recorded
    started = len(_lines(log))

    filler.unlink()
    assert interlock.status(run_id)["state"] == "interrupted"
    resumed = interlock("resume", run_id, timeout=90)
    assert resumed.returncode == 0, resumed.stderr
    events = stored_events(interlock.db, run_id)
    assert_log_valid(events)
    assert events[-1]["data"]["state"] == "succeeded"
    again = _lines(log)[started:]
    assert not set(again) & recorded
    report(
        f"full disk (tmpfs 4 MB): exit 2 'the disk is full', {len(recorded)} successes "
        f"recorded, resume re-ran {len(again)} nodes, none recorded before"
    )


# ---------------------------------------------------------------------------------------------
# take-overs


def _crashed_run(interlock: Interlock, hold: Path) -> str:
    """A run of `held.yaml` whose process was SIGKILLed while its first node ran."""
    hold.touch()
    proc = interlock.spawn("run", str(HELD), "--param", f"hold={hold}")
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    wait_for(
        lambda: "node.started" in _types(stored_events(interlock.db, run_id)), 30, "a node start"
    )
    import psutil

    children = psutil.Process(proc.pid).children(recursive=True)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.kill()
    return run_id


def _fence(db: Path, run_id: str) -> int:
    conn = sqlite3.connect(f"{db.absolute().as_uri()}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT fence FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0])
    finally:
        conn.close()


def _race(
    interlock: Interlock, run_id: str, lag: float
) -> list[tuple[str, subprocess.Popen[str]]]:
    """`resume RUN`, `cancel RUN` and `cancel RUN` started at once (the cancels `lag` s later)."""
    barrier = threading.Barrier(3)
    procs: list[tuple[str, subprocess.Popen[str]]] = []
    lock = threading.Lock()

    def go(*args: str) -> None:
        barrier.wait()
        if args[0] == "cancel":
            time.sleep(lag)
        proc = interlock.spawn(*args)
        with lock:
            procs.append((args[0], proc))

    threads = [
        threading.Thread(target=go, args=("resume", run_id)),
        threading.Thread(target=go, args=("cancel", run_id, "--reason", "race")),
        threading.Thread(target=go, args=("cancel", run_id, "--reason", "race")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return procs


def test_racing_resume_and_cancels_have_exactly_one_winner_and_a_valid_log(
    interlock: Interlock, tmp_path: Path
) -> None:
    rounds, outcomes = 6, []
    for number in range(rounds):
        hold = tmp_path / f"hold-{number}"
        run_id = _crashed_run(interlock, hold)
        fence = _fence(interlock.db, run_id)
        # The cancels start up faster than a resume: in some rounds they are held back a
        # little, so that either side wins some races.
        raced = _race(interlock, run_id, lag=(number % 3) * 0.2)
        procs = [proc for _, proc in raced]
        deadline = time.monotonic() + 60
        cancels = [proc for kind, proc in raced if kind == "cancel"]
        while any(p.poll() is None for p in cancels):
            assert time.monotonic() < deadline, "a cancel did not end"
            time.sleep(0.05)
        hold.unlink()
        codes = {p.pid: p.wait(60) for p in procs}
        events = stored_events(interlock.db, run_id)
        assert_log_valid(events)
        assert _fence(interlock.db, run_id) == fence + 1, "not exactly one take-over"
        interruptions = [
            e for e in events if e["event_type"] == "run.state_changed"
            and (e.get("data") or {}).get("to") == "interrupted"
        ]
        assert len(interruptions) == 1, interruptions
        assert _types(events).count("run.resumed") <= 1
        losers = [p for p in procs if codes[p.pid] == 2]
        for loser in losers:
            text = interlock.stderr(loser)
            assert "Traceback" not in text
            # A resume that came after the winning cancel had ended the run finds it terminal.
            assert any(
                words in text
                for words in ("took it first", "owned by a live process", "which took it over")
            ), text
            assert "pid " in text, f"the loser does not name the winner: {text}"
        assert all(code in (0, 2, 4) for code in codes.values()), codes
        winner = "resume" if "run.resumed" in _types(events) else "cancel"
        outcomes.append((winner, events[-1]["data"]["state"], len(losers)))
    report(f"resume/cancel/cancel races: {rounds} rounds, (winner, end, exit-2 losers): {outcomes}")


def test_two_racing_cancels_of_an_interrupted_run_leave_one_cancel_and_no_command(
    interlock: Interlock, tmp_path: Path
) -> None:
    """The cancel that loses sees the winner's take-over before its record: it must not post a
    command to that process (which never reads one) and say the cancel is pending."""
    rounds, outcomes = 6, []
    for number in range(rounds):
        hold = tmp_path / f"hold-{number}"
        run_id = _crashed_run(interlock, hold)
        fence = _fence(interlock.db, run_id)
        barrier = threading.Barrier(2)
        procs: list[subprocess.Popen[str]] = []

        def go(barrier: threading.Barrier, procs: list[subprocess.Popen[str]], run: str) -> None:
            barrier.wait()
            procs.append(interlock.spawn("cancel", run, "--reason", "race"))

        threads = [threading.Thread(target=go, args=(barrier, procs, run_id)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        codes = sorted(p.wait(60) for p in procs)
        hold.unlink()
        texts = [interlock.stderr(p) + (p.stdout.read() if p.stdout else "") for p in procs]
        events = stored_events(interlock.db, run_id)
        assert_log_valid(events)
        assert events[-1]["data"]["state"] == "cancelled"
        assert _fence(interlock.db, run_id) == fence + 1, "not exactly one take-over"
        assert codes in ([0, 0], [0, 2]), (codes, texts)
        for text in texts:
            assert "has not acknowledged" not in text, text
            assert "Traceback" not in text, text
            if "was not taken over by this process" in text:
                assert "took it first" in text and "pid " in text, text
        conn = sqlite3.connect(f"{interlock.db.absolute().as_uri()}?mode=ro", uri=True)
        try:
            posted = conn.execute("SELECT count(*) FROM commands WHERE run_id = ?", (run_id,))
            assert posted.fetchone()[0] == 0, ("a loser posted a command nobody reads", texts)
        finally:
            conn.close()
        outcomes.append(codes[1])
    report(f"cancel/cancel races: {rounds} rounds, the second's exit codes {outcomes}")


def test_a_sigstopped_owner_loses_its_run_after_the_lease_and_stops_when_woken(
    interlock: Interlock, tmp_path: Path
) -> None:
    short = {"INTERLOCK_LEASE_SECONDS": "2"}
    log = tmp_path / "executions.txt"
    owner = interlock.spawn("run", str(CHAIN), "--param", f"log={log}", env=short)
    assert owner.stdout is not None
    run_id = owner.stdout.readline().strip()
    wait_for(lambda: len(_lines(log)) >= 2, 30, "two nodes to start")
    os.kill(owner.pid, signal.SIGSTOP)
    stopped_at = time.monotonic()
    time.sleep(0.5)  # a node spawned just before the stop writes its line
    started_before = _lines(log)
    try:
        wait_for(
            lambda: interlock.status(run_id)["state"] == "interrupted", 15, "the lease to expire"
        )
        lost_after = time.monotonic() - stopped_at
        resumer = interlock.spawn("resume", run_id, env=short)
        wait_for(
            lambda: "run.resumed" in _types(stored_events(interlock.db, run_id)), 30, "the resume"
        )
    finally:
        os.kill(owner.pid, signal.SIGCONT)
    code = owner.wait(30)
    stderr = interlock.stderr(owner)
    assert code == 2, stderr
    assert "taken over by another process" in stderr.strip().splitlines()[-1], stderr
    assert f"pid {resumer.pid}" in stderr, "the fenced owner does not name the new owner"
    assert resumer.wait(90) == 0, interlock.stderr(resumer)
    events = stored_events(interlock.db, run_id)
    assert_log_valid(events)
    assert events[-1]["data"]["state"] == "succeeded"
    # Only the node in flight at the stop runs twice (its success was never recorded): the
    # woken owner starts nothing before it learns it was taken over.
    ran = _lines(log)
    twice = {node for node in ran if ran.count(node) > 1}
    assert twice <= set(started_before[-1:]), (twice, started_before)
    report(
        f"SIGSTOP past a 2 s lease: interrupted after {lost_after:.1f} s, the woken owner exited "
        "2 fenced off, the resumer finished the run"
    )


def test_reading_an_interrupted_run_writes_nothing(interlock: Interlock, tmp_path: Path) -> None:
    hold = tmp_path / "hold"
    run_id = _crashed_run(interlock, hold)
    before = stored_events(interlock.db, run_id)
    reads = [
        ("status", run_id), ("status", run_id, "--json"), ("runs",), ("runs", "--json"),
        ("summary", run_id), ("summary", run_id, "--json"), ("events", run_id),
        ("events", run_id, "--follow"), ("breakers",),
    ]
    for args in reads:
        result = interlock(*args)
        assert result.returncode == 0, (args, result.stderr)
    assert interlock.status(run_id)["state"] == "interrupted"
    listed = json.loads(interlock("runs", "--json").stdout)
    assert [r["state"] for r in listed if r["run_id"] == run_id] == ["interrupted"]
    assert stored_events(interlock.db, run_id) == before
    report(f"{len(reads)} reads of an interrupted run: event count {len(before)} unchanged")


# ---------------------------------------------------------------------------------------------
# breakers


def test_a_breaker_counts_failures_across_four_processes(
    interlock: Interlock, tmp_path: Path
) -> None:
    marker = tmp_path / "marker.txt"
    classes = []
    for _ in range(4):
        result = interlock("run", str(BREAKER), "--param", f"marker={marker}")
        assert result.returncode == 1, result.stderr
        node = interlock.status(result.stdout.splitlines()[0])["nodes"]["call_service"]
        classes.append(node["error_class"])
    assert _lines(marker) == ["invoked", "invoked"], "the work ran behind an open breaker"
    assert classes == ["error", "error", "circuit_open", "circuit_open"]
    listed = json.loads(interlock("breakers", "--json").stdout)
    assert [(b["key"], b["state"], b["failures"]) for b in listed] == [("k", "open", 2)]
    text = interlock("breakers").stdout
    assert "k" in text and "open" in text
    report("breaker threshold 2 over 4 processes: work ran 2 times, then circuit_open twice")
