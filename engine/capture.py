"""What a python node prints goes to its log, not to the process's stdout.

Contract: `install()` (idempotent) puts a proxy in front of `sys.stdout` and `sys.stderr`.
`bound(log)` is a context manager: while it is active in the current context (the node's
asyncio task, and the tasks it creates; a sync node's worker thread binds its own), every
complete line written to `sys.stdout` / `sys.stderr` is handed to `log("stdout" | "stderr",
line)` instead of reaching the real stream, and the rest is handed over when the binding
ends. Python's `logging` without handlers of its own (its last-resort handler, or handlers
made after `install()` with the default stream) writes to `sys.stderr`, so its lines arrive
the same way. Lines are bounded in length and number (as a shell node's are). Outside a
binding, and while a line is being handed over, writes pass through unchanged: the process's
stdout keeps only what the command itself prints (the run id, the `--json` document).
"""

from __future__ import annotations

import contextvars
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

MAX_LINES = 1000  # per binding and stream; the rest are counted, not kept
MAX_CHARS = 4000

Log = Callable[[str, str], None]


class _Binding:
    # The counters are made at the first write: most nodes print nothing, and a binding wraps
    # every python node's call (W2 pays for what is made here, 200 times a run).
    __slots__ = ("dropped", "kept", "log", "pending")

    def __init__(self, log: Log) -> None:
        self.log = log
        self.pending: dict[str, str] | None = None
        self.kept: dict[str, int] = {}
        self.dropped: dict[str, int] = {}

    def write(self, stream: str, text: str) -> None:
        if self.pending is None:
            self.pending = {"stdout": "", "stderr": ""}
            self.kept = {"stdout": 0, "stderr": 0}
            self.dropped = {"stdout": 0, "stderr": 0}
        pending = self.pending[stream] + text
        *lines, rest = pending.split("\n")
        if len(rest) > MAX_CHARS:  # no newline for a long while: a line of its own
            lines.append(rest)
            rest = ""
        self.pending[stream] = rest
        for line in lines:
            self._line(stream, line)

    def _line(self, stream: str, line: str) -> None:
        line = line.rstrip("\r")
        if self.kept[stream] >= MAX_LINES:
            self.dropped[stream] += 1
            return
        self.kept[stream] += 1
        if len(line) > MAX_CHARS:
            line = line[:MAX_CHARS] + f"... [{len(line) - MAX_CHARS} chars cut]"
        _deliver(self.log, stream, line)

    def close(self) -> None:
        if self.pending is None:  # nothing was printed
            return
        for stream in ("stdout", "stderr"):
            if self.pending[stream]:
                self._line(stream, self.pending[stream])
                self.pending[stream] = ""
            if self.dropped[stream]:
                _deliver(
                    self.log, "interlock", f"{self.dropped[stream]} more {stream} lines not kept"
                )


_current: contextvars.ContextVar[_Binding | None] = contextvars.ContextVar(
    "interlock_capture", default=None
)
_local = threading.local()


def _deliver(log: Log, stream: str, line: str) -> None:
    # Whatever handling the line prints (a sink writing progress) passes through: no loop.
    _local.busy = True
    try:
        log(stream, line)
    finally:
        _local.busy = False


class _Proxy:
    """Stands for `sys.stdout` or `sys.stderr`; everything but writing goes to the real one."""

    def __init__(self, stream_name: str, real: TextIO) -> None:
        self._interlock_stream = stream_name
        self._interlock_real = real

    def write(self, text: str) -> int:
        binding = _current.get()
        if binding is None or getattr(_local, "busy", False):
            return self._interlock_real.write(text)
        binding.write(self._interlock_stream, str(text))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if _current.get() is None:
            self._interlock_real.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._interlock_real, name)


def install() -> None:
    """Put the proxies in place (again, if something replaced them since)."""
    if not isinstance(sys.stdout, _Proxy) and sys.stdout is not None:
        sys.stdout = _Proxy("stdout", sys.stdout)
    if not isinstance(sys.stderr, _Proxy) and sys.stderr is not None:
        sys.stderr = _Proxy("stderr", sys.stderr)


class bound:  # a `with` statement, named like the function it replaced
    """Route this context's printing to `log` until the block ends.

    A class, not a `contextlib.contextmanager` generator: it wraps every python node's call,
    and the generator's frame and its wrapper cost about a microsecond a node (W2)."""

    __slots__ = ("_binding", "_token")

    def __init__(self, log: Log) -> None:
        self._binding = _Binding(log)

    def __enter__(self) -> None:
        install()
        self._token = _current.set(self._binding)

    def __exit__(self, *exc: object) -> None:
        _current.reset(self._token)
        self._binding.close()
