"""The processes a python node's code starts end with the node's attempt.

Contract: `install()` (idempotent; `engine.capture.install` calls it) wraps
`subprocess.Popen.__init__`: a process started while a capture binding is active (a python,
agent or plugin node's call, the threads it starts, the tasks it creates: `engine.capture`) is
noted in the binding as its pid and start time. asyncio's subprocesses are `subprocess.Popen`s
underneath on Unix, and so are `os.popen`'s, so `asyncio.create_subprocess_exec` and `_shell`
are noted too. `take(binding)` ends the noting when the attempt ends, by whatever path, and
returns what was noted; a process started through the binding after that (by a thread or task
that outlived its node) is SIGKILLed with its descendants at once. `end(noted, grace, log)`
SIGTERMs each noted process still alive, with its descendants, waits up to `grace` seconds
(polling, on the loop), then SIGKILLs what is left. A process is signalled only if it is still
the one noted (its start time is checked), so a reused pid is never signalled; one the node
already waited for is gone and costs nothing.

Why by hand: neither the standard library nor psutil knows which thread or coroutine started a
subprocess, and a python node's processes are this process's children, in its session, beside
every other node's: who started them is the only thing that tells them apart.

Not covered: processes started with `os.fork`, `os.posix_spawn`, `os.system` or by a C
extension (not through `subprocess.Popen`); those started by a pool's worker thread that was
handed no context (`loop.run_in_executor`, `concurrent.futures`; `asyncio.to_thread` passes
it); and a grandchild orphaned before the node ends (a double fork): it is no longer below
what was noted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import subprocess
import threading
import time
from typing import TYPE_CHECKING, Any

import psutil

from engine import capture
from engine.containment import alive, same_process, signal_processes, start_time

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from engine.capture import _Binding

Noted = list[tuple[int, float]]

_lock = threading.Lock()  # two threads of a node may start processes at once


def install() -> None:
    init = subprocess.Popen.__init__
    if getattr(init, "_interlock", False):
        return

    @functools.wraps(init)
    def popen_init(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        binding = capture._current.get()
        if binding is not None:
            _note(binding, self.pid)

    popen_init._interlock = True  # type: ignore[attr-defined]
    subprocess.Popen.__init__ = popen_init  # type: ignore[method-assign]


def _note(binding: _Binding, pid: int) -> None:
    started = start_time(pid)
    if started is None:  # gone already (and reaped by someone): nothing to end
        return
    record = (pid, started)
    with _lock:
        if binding.spawned is None:
            binding.spawned = [record]
        else:
            binding.spawned.append(record)
    # `take` marks the end before it reads what was noted, and takes no lock (it runs at the
    # end of every python node): seen over here, the record may have come too late for it.
    if binding.over:
        kill_now([record])


def take(binding: _Binding) -> Noted | None:
    """Stop noting processes in `binding` (its attempt is over): those it noted, if any."""
    binding.over = True
    return binding.spawned


def _with_descendants(roots: Iterable[psutil.Process]) -> list[psutil.Process]:
    found: dict[int, psutil.Process] = {}
    for root in roots:
        found.setdefault(root.pid, root)
        with contextlib.suppress(psutil.Error):
            for child in root.children(recursive=True):
                found.setdefault(child.pid, child)
    return list(found.values())


def _living(noted: Noted) -> list[psutil.Process]:
    return _with_descendants(
        process
        for pid, started in noted
        if (process := same_process(pid, started)) is not None and alive(process)
    )


def kill_now(noted: Noted) -> int:
    """SIGKILL the noted processes still alive and their descendants. How many."""
    found = _living(noted)
    signal_processes(found, signal.SIGKILL)
    return len(found)


async def end(noted: Noted, grace: float, log: Callable[[str, str], None]) -> int:
    """SIGTERM the noted processes still alive, with their descendants; SIGKILL what is left
    after `grace` seconds (or at once if the wait is cancelled). How many were alive.

    The processes are found by reading /proc (no waiting on anything): done on the loop."""
    found = _living(noted)
    if not found:
        return 0
    count = len(found)
    signal_processes(found, signal.SIGTERM)
    log("interlock", f"{_processes(count)} the node started still running: SIGTERM sent, "
                     f"SIGKILL after {grace:g}s")
    deadline = time.monotonic() + grace
    pause = 0.001  # most die at once on SIGTERM: look again soon, then less often
    try:
        while True:
            found = [process for process in found if alive(process)]
            left = deadline - time.monotonic()
            if not found or left <= 0:
                break
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, 0.02)
    finally:
        if found:
            # What they started meanwhile (a shell's cleanup) is below them now.
            found = [process for process in _with_descendants(found) if alive(process)]
            signal_processes(found, signal.SIGKILL)
            if found:
                log("interlock", f"SIGKILL sent to {_processes(len(found))} the node started")
    return count


def _processes(count: int) -> str:
    return "1 process" if count == 1 else f"{count} processes"
