"""Helpers shared by the fault suite: a no-wait sleep, leftover checks, process hunting."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
from hypothesis import HealthCheck, settings

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Iterable, Sequence

    from engine.events import Event

# Deterministic, database-free hypothesis runs: CI sees the same examples every time.
FAULT_SETTINGS = settings(
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)

INTERLOCK = str(Path(sys.executable).with_name("interlock"))


async def no_wait(_seconds: float) -> None:
    """The injected `sleep`: backoff and delay nodes yield once instead of waiting."""
    await asyncio.sleep(0)


def seqs_are_gap_free(events: Sequence[Event]) -> bool:
    return [e.seq for e in events] == list(range(1, len(events) + 1))


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def processes_of_run(run_id: str, settle: float = 0.1) -> list[psutil.Process]:
    """Every live process whose environment names `run_id` (node processes and their children,
    even orphans re-parented away from this process).

    A process SIGKILLed an instant ago may not have finished dying: those found get `settle`
    seconds to be gone. A leaked process lives on for its whole command (seconds at least).
    """
    found: list[psutil.Process] = []
    me = os.getpid()
    for process in psutil.process_iter():
        if process.pid == me:
            continue
        with contextlib.suppress(psutil.Error):
            if not _running(process):
                continue
            if process.environ().get("INTERLOCK_RUN_ID") == run_id:
                found.append(process)
    deadline = time.monotonic() + settle
    while found and time.monotonic() < deadline:
        time.sleep(0.01)
        found = [p for p in found if _running(p)]
    return found


def kill_processes(processes: Iterable[psutil.Process]) -> None:
    listed = list(processes)
    for process in listed:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(listed, timeout=5)


def other_tasks() -> set[asyncio.Task[Any]]:
    """The event loop's unfinished tasks besides the caller's own."""
    return {task for task in asyncio.all_tasks() if task is not asyncio.current_task()}


def crash(proc: subprocess.Popen[Any]) -> list[psutil.Process]:
    """kill -9, as a machine crash would: the process and every process it started.

    SIGSTOP first, so nothing it starts meanwhile escapes; returns the node processes killed.
    """
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGSTOP)
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGKILL)
    kill_processes(children)
    proc.wait(10)
    return children


def stored_events(db: Path, run_id: str) -> list[dict[str, Any]]:
    """A run's committed events, read with plain sqlite3 (what another process can see)."""
    import json

    conn = sqlite3.connect(f"{db.absolute().as_uri()}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT body FROM events WHERE run_id = ? ORDER BY seq", (run_id,))
        return [json.loads(row[0]) for row in rows]
    finally:
        conn.close()


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def report(line: str) -> None:
    """A measured number for tests/faults/README.md: shown with `pytest -s`."""
    sys.stdout.write(f"[faults] {line}\n")
