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

Threads: a `threading.Thread` started inside a binding (by the node itself, or a library it
calls) prints to that binding: `install()` wraps `Thread.start` so that the new thread begins
in it (a thread does not inherit context variables). Its lines are handed over on the loop
where the binding was made (`log` is called there only, as an async node's log must be), or
straight away if it was made outside a loop (a sync node's log is thread-safe). Once the
binding has ended (the thread outlived its node), and for any thread but the main one writing
with no binding at all (a pool's worker, a thread started before the node), the lines go to
the real stderr, never stdout, masked with every secret the process was told of
(`remember_secrets`). Writes below Python's streams (`os.write(1, ...)`, a C extension's
printf) are not seen: they reach the process's stdout as they are.

Processes: `install()` also has `engine.spawned` note every `subprocess.Popen` started inside
a binding (in the binding's `spawned`), so that the node's attempt can end them.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any, TextIO

MAX_LINES = 1000  # per binding and stream; the rest are counted, not kept
MAX_CHARS = 4000

Log = Callable[[str, str], None]


class _Binding:
    # The counters are made at the first write: most nodes print nothing, and a binding wraps
    # every python node's call (W2 pays for what is made here, 200 times a run).
    __slots__ = (
        "closed", "dropped", "inbox", "kept", "limit", "log", "loop", "over", "owner", "pending",
        "spawned",
    )

    def __init__(self, log: Log, limit: int = MAX_LINES) -> None:
        self.log = log
        self.limit = limit
        self.pending: dict[str, str] | None = None
        self.kept: dict[str, int] = {}
        self.dropped: dict[str, int] = {}
        self.owner = threading.get_ident()
        self.loop = asyncio.events._get_running_loop()
        self.closed = False
        self.inbox: collections.deque[tuple[str, str]] | None = None  # other threads' lines
        # (pid, start time) of the processes started in it (`engine.spawned`), made at the
        # first; `over` once its node's attempt has ended.
        self.spawned: list[tuple[int, float]] | None = None
        self.over = False

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
        if self.kept[stream] >= self.limit:
            self.dropped[stream] += 1
            return
        self.kept[stream] += 1
        if len(line) > MAX_CHARS:
            line = line[:MAX_CHARS] + f"... [{len(line) - MAX_CHARS} chars cut]"
        _deliver(self.log, stream, line)

    def close(self) -> None:
        while self.inbox:
            _deliver(self.log, *self.inbox.popleft())
        self.closed = True
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
_secrets: list[str] = []  # every secret form the process was told of, longest first


def remember_secrets(forms: Iterable[str]) -> None:
    """Mask these too wherever a line has no node to go to (see the module docstring)."""
    new = [form for form in forms if form and form not in _secrets]
    if new:
        _secrets.extend(new)
        _secrets.sort(key=len, reverse=True)


def _mask(line: str) -> str:
    for secret in _secrets:
        line = line.replace(secret, "***")
    return line


def _real_stderr() -> Any:
    stderr = sys.stderr
    return stderr._interlock_real if isinstance(stderr, _Proxy) else sys.__stderr__


def _to_stderr(_stream: str, line: str) -> None:
    """A line with no open binding to take it: masked, on the real stderr."""
    real = _real_stderr()
    if real is not None:
        try:
            real.write(_mask(line) + "\n")
            real.flush()
        except (OSError, ValueError):  # the terminal may be gone
            pass


def _forwarder(parent: _Binding) -> Log:
    """How another thread's lines reach `parent`: on its loop if it has one, while it is open.

    On a loop they wait in `parent.inbox`, which `parent.close()` empties first: a thread the
    node joined just before returning has its lines in the node's log, not after it."""

    def drain() -> None:
        inbox = parent.inbox
        while inbox:
            stream, line = inbox.popleft()
            if parent.closed:
                _to_stderr(stream, line)
            else:
                _deliver(parent.log, stream, line)

    def forward(stream: str, line: str) -> None:
        if parent.closed:
            _to_stderr(stream, line)
        elif parent.loop is None:
            _deliver(parent.log, stream, line)
        else:
            if parent.inbox is None:
                parent.inbox = collections.deque()
            parent.inbox.append((stream, line))
            try:
                # A context of its own: the line's handling is not captured again.
                parent.loop.call_soon_threadsafe(drain, context=contextvars.Context())
            except RuntimeError:  # the loop is closed
                drain()

    return forward


def _for_thread(parent: _Binding | None) -> _Binding:
    """This thread's own buffer in front of `parent` (None: the stray lines' buffer)."""
    held = getattr(_local, "held", None)
    if held is not None and held[0] is parent:
        binding: _Binding = held[1]
        return binding
    if held is not None:
        held[1].close()  # the thread now prints for another node: hand the old rest over
    # Stray lines are not a node's: a long-lived thread's are not cut off.
    if parent is None:
        binding = _Binding(_to_stderr, limit=sys.maxsize)
    else:
        binding = _Binding(_forwarder(parent))
    _local.held = (parent, binding)
    return binding


def _close_thread_binding() -> None:
    held = getattr(_local, "held", None)
    if held is not None:
        _local.held = None
        held[1].close()


def _pool_worker(thread: threading.Thread) -> bool:
    """A pool's worker serves whoever submits next: it is not the starting node's."""
    from concurrent.futures import thread as pool

    return getattr(thread, "_target", None) is pool._worker


def _start_in_binding(start: Callable[[threading.Thread], None]) -> Any:
    def start_thread(self: threading.Thread) -> None:
        binding = _current.get()
        if binding is not None and not _pool_worker(self):
            run = self.run

            def run_bound() -> None:
                _current.set(binding)
                try:
                    run()
                finally:
                    _close_thread_binding()

            self.run = run_bound  # type: ignore[method-assign]
        start(self)

    start_thread._interlock = True  # type: ignore[attr-defined]
    return start_thread


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
        if getattr(_local, "busy", False):
            return self._interlock_real.write(text)
        if binding is None:
            if threading.current_thread() is threading.main_thread():
                return self._interlock_real.write(text)
            _for_thread(None).write(self._interlock_stream, str(text))
        elif binding.owner != threading.get_ident():
            _for_thread(binding).write(self._interlock_stream, str(text))
        else:
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
    if not getattr(threading.Thread.start, "_interlock", False):
        threading.Thread.start = _start_in_binding(threading.Thread.start)  # type: ignore[method-assign]
        from engine import spawned  # it reads this module's bindings

        spawned.install()


class bound:  # a `with` statement, named like the function it replaced
    """Route this context's printing to `log` until the block ends.

    A class, not a `contextlib.contextmanager` generator: it wraps every python node's call,
    and the generator's frame and its wrapper cost about a microsecond a node (W2).

    It may be made in one thread and entered in another (a sync node's binding is made on the
    loop, which ends its processes, and entered in the node's thread): the thread that enters
    it is the one whose printing it takes as its own."""

    __slots__ = ("_token", "binding")

    def __init__(self, log: Log) -> None:
        self.binding = _Binding(log)

    def __enter__(self) -> None:
        install()
        binding = self.binding
        if binding.owner != threading.get_ident():
            binding.owner = threading.get_ident()
            binding.loop = asyncio.events._get_running_loop()
        self._token = _current.set(binding)

    def __exit__(self, *exc: object) -> None:
        _current.reset(self._token)
        self.binding.close()
