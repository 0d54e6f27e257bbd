"""Process containment: nothing a node starts outlives the node.

Contract:

- `become_subreaper()` makes this process a child subreaper (Linux `prctl(PR_SET_CHILD_SUBREAPER)`
  through ctypes): a node's process that double-forks or calls `setsid` is re-parented to us,
  not to pid 1, so it stays in our process tree. Idempotent; False where unsupported. The
  `interlock` command calls it; the engine does not on its own, since every orphan below a
  subreaper (a daemon its host starts, too) becomes its child: a program that embeds the engine
  chooses. Without it, escaped processes are still killed when they hold the node's output
  open, when the group still has members at the end, and on cancel or resume after a crash.
- A shell node's processes are marked by their environment (`INTERLOCK_RUN_ID`,
  `INTERLOCK_NODE_ID`, `INTERLOCK_ATTEMPT`, set by `engine.nodes`). `attempt_processes` finds
  every live process of an attempt: its process group, the processes carrying its marks, and
  every descendant of those, so a process that left the group or the session is found too.
- `kill_attempt` SIGKILLs them (the group first, then each process, each checked against its
  start time so that a reused pid is never signalled) and reaps those that are our children.
- `kill_adopted` SIGKILLs what is left adopted from another session once this process's runs
  have ended: an escaped process that cleared its environment carries no mark to attribute it.
- `process_record` is what the executor stores (in a `node.log` line of stream `interlock`)
  when a shell node's command starts: host, pid, process group and start time. With it,
  `kill_orphans` kills what a dead owner of an interrupted run left running on this host
  (used by `cancel` of an interrupted run and by `resume`), again checking start times.
- `cancel_signals` installs the graceful-cancel signals (SIGINT, SIGTERM, SIGHUP) on a loop
  for any long-running command (`run`, `resume`, the console, the service).

What remains possible: a process that clears its environment *and* leaves the node's tree before
the node ends (double fork with `env -i`) lives until this process's runs have ended (then
`kill_adopted` ends it), or for good while this process is not a subreaper, or if another
subreaper adopts it. A python node's own subprocesses (this process's children, in its
session, unmarked) are ended with the node's attempt by `engine.spawned`, not here.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import signal
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import psutil

PR_SET_CHILD_SUBREAPER = 36
_START_SLACK = 0.05  # seconds: start times from /proc are rounded to clock ticks

_subreaper: bool | None = None
_spawned: set[int] = set()  # pids of node commands this process started and reaps itself


def become_subreaper() -> bool:
    """Make orphans of our descendants our children (Linux 3.4+). Idempotent."""
    global _subreaper
    if _subreaper is None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            _subreaper = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        except (OSError, AttributeError):
            _subreaper = False
    return _subreaper


def register_child(pid: int) -> None:
    """A node command started here (its reaping is its owner's, never `reap_adopted`'s)."""
    _spawned.add(pid)


def unregister_child(pid: int) -> None:
    _spawned.discard(pid)


def start_time(pid: int) -> float | None:
    """The process's start time (seconds since the epoch), or None if it is gone."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def process_record(pid: int) -> dict[str, Any]:
    """What is stored when a node's command starts (its group is its pid: a session leader)."""
    return {"host": socket.gethostname(), "pid": pid, "pgid": pid, "start_time": start_time(pid)}


def _marks(process: psutil.Process) -> tuple[str | None, str | None, str | None]:
    try:
        env = process.environ()
    except (psutil.Error, OSError):
        return None, None, None
    return env.get("INTERLOCK_RUN_ID"), env.get("INTERLOCK_NODE_ID"), env.get("INTERLOCK_ATTEMPT")


def _started(process: psutil.Process) -> float:
    """Its start time (psutil keeps it from the process's identity); +inf if unreadable, so
    that the process is looked at rather than passed over."""
    try:
        return process.create_time()
    except psutil.Error:
        return math.inf


def _pgid(process: psutil.Process) -> int | None:
    try:
        return os.getpgid(process.pid)
    except OSError:
        return None


def _candidates() -> list[psutil.Process]:
    """Where a node's processes can be: our descendants if we are a subreaper (orphans come
    back to us), else every process."""
    if _subreaper:
        with contextlib.suppress(psutil.Error):
            return psutil.Process().children(recursive=True)
    me = os.getpid()
    return [p for p in psutil.process_iter() if p.pid != me]


def _with_descendants(
    chosen: dict[int, psutil.Process], pool: Iterable[psutil.Process]
) -> list[psutil.Process]:
    children: dict[int, list[psutil.Process]] = {}
    for process in pool:
        with contextlib.suppress(psutil.Error):
            children.setdefault(process.ppid(), []).append(process)
    todo = list(chosen.values())
    while todo:
        for child in children.get(todo.pop().pid, ()):
            if child.pid not in chosen:
                chosen[child.pid] = child
                todo.append(child)
    return list(chosen.values())


def attempt_processes(
    pgid: int,
    run_id: str,
    node_id: str | None = None,
    attempt: int | None = None,
    *,
    since: float | None = None,
) -> list[psutil.Process]:
    """Every live process of a run's attempt (or of the whole run if `node_id` is None): in
    the process group `pgid`, or marked for it in its environment, and their descendants.

    `since` is the start time of the attempt's command: a process started before it is none
    of its own (the command's group, the processes it marks and their descendants all start
    after it, on the same clock), so it is not looked at. Reading every process's environment
    and parent was most of what ending a cancelled node cost where this process is not a
    subreaper (6 ms a node with 110 processes running, W4)."""
    pool = _candidates()
    if since is not None:
        pool = [process for process in pool if _started(process) >= since]
    chosen: dict[int, psutil.Process] = {}
    for process in pool:
        if pgid and _pgid(process) == pgid:
            chosen[process.pid] = process
            continue
        run, node, number = _marks(process)
        if run != run_id:
            continue
        if node_id is not None and node != node_id:
            continue
        if attempt is not None and number != str(attempt):
            continue
        chosen[process.pid] = process
    return _with_descendants(chosen, pool)


def signal_processes(processes: Iterable[psutil.Process], sig: int) -> None:
    """Signal each process that is still the one found (psutil checks its start time)."""
    for process in processes:
        with contextlib.suppress(psutil.Error, OSError):
            if process.is_running():
                process.send_signal(sig)


def _adopted() -> bool:
    """Whether we have a child we did not start (an orphan re-parented to us); cheap: reads
    `/proc/self/task/*/children` rather than scanning every process."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return True
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/children") as fh:
                pids = fh.read().split()
        except OSError:
            return True  # no such file (old kernel): assume there may be
        if any(int(pid) not in _spawned for pid in pids):
            return True
    return False


def sweep_attempt(
    pgid: int, run_id: str, node_id: str, attempt: int, *, since: float | None = None
) -> int:
    """`kill_attempt` when something may be left; at the usual end of a command (its group
    empty, no orphan adopted) only two cheap checks. Call once the command was reaped."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        # Without the subreaper an escaped orphan went to pid 1: finding it would mean reading
        # every process's environment at every end of a command, so it is left to the caller
        # (`interlock` is a subreaper; a program embedding the engine may make itself one).
        if not _subreaper or not _adopted():
            return 0
    return kill_attempt(pgid, run_id, node_id, attempt, since=since)


def kill_attempt(
    pgid: int,
    run_id: str,
    node_id: str | None = None,
    attempt: int | None = None,
    *,
    since: float | None = None,
) -> int:
    """SIGKILL every process of the attempt; reap those that are our children. How many.

    Found before the group is killed: a member's children outside the group are its
    descendants only while it lives."""
    found = [
        p
        for p in attempt_processes(pgid, run_id, node_id, attempt, since=since)
        if p.pid not in _spawned
    ]
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    signal_processes(found, signal.SIGKILL)
    _settle(found, 1.0)
    reap_adopted()
    return len(found)


def reap_adopted() -> None:
    """Reap orphans re-parented to us that have exited (as a subreaper we are their init).

    Only zombies in another session than ours and not started here: a python node's own
    subprocesses share our session and are waited for by their owner.
    """
    if not _subreaper:
        return
    try:
        own_sid = os.getsid(0)
        zombies = [
            p
            for p in psutil.Process().children()
            if p.pid not in _spawned and p.status() == psutil.STATUS_ZOMBIE
        ]
    except psutil.Error:
        return
    for process in zombies:
        with contextlib.suppress(OSError):
            if os.getsid(process.pid) != own_sid:
                os.waitpid(process.pid, os.WNOHANG)


def kill_adopted() -> int:
    """SIGKILL every orphan adopted from another session, with its descendants. How many.

    Call it when none of this process's runs is running (the end of `interlock run`, `test`,
    the console, the service): a process that cleared its environment and left its node's
    session carries no mark, so no attempt's sweep can tell it is its own; every node command
    is a session leader, so an adopted process in another session than ours can only be what
    a node left behind. Processes in our own session (a python node's subprocesses) are left
    to `engine.spawned`."""
    if not _subreaper:
        return 0
    try:
        me = psutil.Process()
        own_sid = os.getsid(0)
        children = me.children()
    except (psutil.Error, OSError):
        return 0
    chosen: dict[int, psutil.Process] = {}
    for child in children:
        if child.pid in _spawned:
            continue
        with contextlib.suppress(OSError):
            if os.getsid(child.pid) != own_sid:
                chosen[child.pid] = child
    if not chosen:
        return 0
    try:
        pool = me.children(recursive=True)
    except psutil.Error:
        pool = children
    victims = _with_descendants(chosen, pool)
    signal_processes(victims, signal.SIGKILL)
    _settle(victims, 1.0)
    reap_adopted()
    return len(victims)


def same_process(pid: int, recorded: float | None) -> psutil.Process | None:
    """The process `pid` if it is still the one that started at `recorded` (a reused pid is
    another process: never ours to signal)."""
    if recorded is None:
        return None
    try:
        process = psutil.Process(pid)
        if abs(process.create_time() - recorded) > _START_SLACK:
            return None  # the pid was reused: not ours to kill
        return process
    except psutil.Error:
        return None


def kill_orphans(run_id: str, records: Iterable[Mapping[str, Any]]) -> int:
    """Kill what a dead owner of `run_id` left running on this host. How many processes.

    `records` are the stored `process_record`s of the run's attempts. A group is killed only
    through a leader whose start time matches its record; processes that left the group are
    found by the run's mark in their environment, and only if they started after the run's
    first recorded command (a reused pid has a later start than its record, a foreign
    process never carries the mark).
    """
    host = socket.gethostname()
    earliest: float | None = None
    found: dict[int, psutil.Process] = {}
    for record in records:
        if record.get("host") != host:
            continue
        pid, started = record.get("pid"), record.get("start_time")
        if not isinstance(pid, int) or not isinstance(started, int | float):
            continue
        earliest = started if earliest is None else min(earliest, started)
        leader = same_process(pid, started)
        if leader is not None:
            found[leader.pid] = leader
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
    if earliest is not None:
        me = os.getpid()
        for process in psutil.process_iter():
            if process.pid == me or process.pid in found:
                continue
            with contextlib.suppress(psutil.Error):
                if _marks(process)[0] == run_id and process.create_time() >= earliest - 1:
                    found[process.pid] = process
    victims = list(found.values())
    signal_processes(victims, signal.SIGKILL)
    _settle(victims, 2.0)
    return len(victims)


def _settle(victims: list[psutil.Process], timeout: float) -> None:
    """Wait (at most `timeout`) until the SIGKILLed are dead, and reap those that are ours.

    A zombie counts as dead: where pid 1 reaps nothing (many containers) it never vanishes."""
    if not victims:
        return
    wait_gone(victims, timeout)
    me = os.getpid()
    for process in victims:
        with contextlib.suppress(psutil.Error, OSError):
            if process.ppid() == me and process.pid not in _spawned:
                os.waitpid(process.pid, os.WNOHANG)


def process_records(events: Iterable[Any]) -> list[dict[str, Any]]:
    """The `process_record`s stored in a run's events (`node.log` data with a `pgid`)."""
    out = []
    for event in events:
        data = getattr(event, "data", None)
        if event.event_type == "node.log" and isinstance(data, Mapping) and "pgid" in data:
            out.append(dict(data))
    return out


async def kill_run_orphans(store: Any, run_id: str) -> int:
    """`kill_orphans` for a stored run (its records read from `store`)."""
    import asyncio

    events = await store.events(run_id)
    records = process_records(events)
    if not records:
        return 0
    return await asyncio.to_thread(kill_orphans, run_id, records)


CANCEL_SIGNALS: tuple[tuple[int, str], ...] = (
    (signal.SIGINT, "SIGINT"),
    (signal.SIGTERM, "SIGTERM"),
    (signal.SIGHUP, "SIGHUP"),  # a dropped SSH session or a closed terminal
)


def cancel_signals(loop: Any, on_signal: Callable[[str], None]) -> Callable[[], None]:
    """Call `on_signal(name)` on SIGINT, SIGTERM and SIGHUP; returns the undo."""
    for sig, name in CANCEL_SIGNALS:
        loop.add_signal_handler(sig, on_signal, name)

    def remove() -> None:
        for sig, _name in CANCEL_SIGNALS:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)

    return remove


def wait_gone(processes: Iterable[psutil.Process], timeout: float) -> bool:
    """Whether every process is gone (or a zombie) within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    left = list(processes)
    while True:
        left = [p for p in left if alive(p)]
        if not left or time.monotonic() >= deadline:
            return not left
        time.sleep(0.01)


def alive(process: psutil.Process) -> bool:
    """Running, and not a zombie waiting to be reaped."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
