"""Shell nodes: a command in a process group of its own, for one attempt.

Contract: the command runs from an argv (never through a shell) in a session and process group
of its own, with the node input as JSON on stdin and `INTERLOCK_*` variables in its
environment; stdout and stderr become bounded log lines, and a last stdout line that is a JSON
object becomes the output (else `{"exit_code": 0}`). Exit 75 (EX_TEMPFAIL) is transient, any
other non-zero exit an error. On cancel (a timeout or the run's stop) the group gets SIGTERM,
then SIGKILL after `NodeContext.cleanup_grace`; stragglers left in the group after a normal
exit are killed too, so no child process outlives its attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import signal
import subprocess
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

import psutil

from engine import containment, strictjson, tracecontext
from engine.errors import NodeError, TransientError

if TYPE_CHECKING:
    from engine.nodes import NodeContext
    from engine.spec import (
        ShellNode,
    )

EX_TEMPFAIL = 75
MAX_LOG_LINES = 1000  # per attempt and stream; the rest are counted, not kept
MAX_LINE_CHARS = 4000
MAX_OUTPUT_LINE = 4 * 1024 * 1024
READ_CHUNK = 65536
# After a command exited and its group was swept, how long its output may take to close (a
# process that left the group may hold a pipe) before the leftovers are killed by their marks.
OUTPUT_DRAIN = 1.0


def _shell_env(node: ShellNode, ctx: NodeContext) -> dict[str, str]:
    env = dict(os.environ)
    for name, value in node.env.items():
        if isinstance(value, str):
            env[name] = value
            continue
        resolved = os.environ.get(value.from_env)
        if resolved is None:
            raise NodeError("config", f"environment variable '{value.from_env}' is not set")
        env[name] = resolved
    env["INTERLOCK_RUN_ID"] = ctx.run_id
    env["INTERLOCK_NODE_ID"] = ctx.node_id
    env["INTERLOCK_ATTEMPT"] = str(ctx.attempt)
    if tracecontext.ENABLED:
        env["TRACEPARENT"] = tracecontext.traceparent(ctx.run_id, ctx.node_id, ctx.attempt)
    return env


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs.

    Members that exited but were not reaped (zombies) run nothing and do not count: orphans of
    a dead shell are reparented to pid 1, and where pid 1 reaps nothing (many containers) they
    stay in the group for good, so waiting for the group to vanish would last the whole grace.
    """
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return any(_runs_in_group(process, pgid) for process in psutil.process_iter())


def _runs_in_group(process: psutil.Process, pgid: int) -> bool:
    try:
        return os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE
    except (OSError, psutil.Error):
        return False


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class _Sink(Protocol):
    def feed(self, chunk: bytes) -> None: ...
    def finish(self) -> None: ...


class _Child:
    """A shell node's command: started in a session (and process group) of its own, its pipes
    served by loop callbacks, its exit seen through a pidfd (Linux) or else a waiting thread.

    Starting it awaits nothing: the fork happens in the attempt's own task, right after its
    deadline was armed (as with a plain `asyncio.timeout` around the spawn), and a cancel can
    only land once this object holds the process, whose group is then terminated as on any
    cancel. (`asyncio.create_subprocess_exec` forks in a task of its own when shielded, so 200
    nodes started at once armed 200 deadlines before the first fork and timed out as one
    burst; unshielded, a cancel during its pipe set-up SIGKILLs the command alone and leaves
    the rest of its group running.) Nor is asyncio's child watcher used: in Python 3.11 it is a
    thread per process, and 200 threads waking at once queue for the GIL.
    """

    def __init__(
        self, argv: list[str], stdin_data: bytes, stdout: _Sink, stderr: _Sink, **popen: Any
    ) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.exited: asyncio.Future[int] = loop.create_future()  # the return code, once reaped
        self.output_closed: asyncio.Future[None] = loop.create_future()  # EOF on both outputs
        self.failure: BaseException | None = None  # raised by a sink
        fds: list[int] = []
        try:
            for _ in range(3):
                fds += os.pipe()  # not inheritable: only dup2'ed into the child
            in_r, in_w, out_r, out_w, err_r, err_w = fds
            self.popen = subprocess.Popen(
                argv,
                stdin=in_r,
                stdout=out_w,
                stderr=err_w,
                start_new_session=True,  # its own session and process group, killed as one
                **popen,
            )
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        for fd in (in_r, out_w, err_w):
            os.close(fd)
        self.pid = self.popen.pid
        containment.register_child(self.pid)
        self._stdin = in_w
        self._open = {in_w, out_r, err_r}
        self._pending = memoryview(stdin_data)
        self._writing = False
        self._outputs = 2
        try:
            for fd in self._open:
                os.set_blocking(fd, False)
            loop.add_reader(out_r, self._read, out_r, stdout)
            loop.add_reader(err_r, self._read, err_r, stderr)
            self._write_stdin()
            self._watch_exit()
        except BaseException:  # e.g. no thread could be started: the process must not outlive
            self.close_pipes()
            _kill_group(self.pid, signal.SIGKILL)
            self.popen.wait()  # at once after SIGKILL
            containment.unregister_child(self.pid)
            raise

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    # -- pipes -------------------------------------------------------------------------------------

    def _read(self, fd: int, sink: _Sink) -> None:
        try:
            data = os.read(fd, READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        try:
            if data:
                sink.feed(data)
                return
            self._close(fd)
            sink.finish()
        except Exception as exc:  # reported by the attempt, as a failure of the node
            self.failure = exc
            self.close_pipes()
            self._outputs = 0
        else:
            self._outputs -= 1
        if self._outputs == 0 and not self.output_closed.done():
            self.output_closed.set_result(None)

    def _write_stdin(self) -> None:
        fd = self._stdin
        if fd not in self._open:
            return
        try:
            written = os.write(fd, self._pending)
        except (BlockingIOError, InterruptedError):
            written = 0
        except OSError:  # BrokenPipeError and the like: the command does not read its input
            self._close(fd)
            return
        self._pending = self._pending[written:]
        if not self._pending:
            self._close(fd)
        elif not self._writing:
            self._writing = True
            self._loop.add_writer(fd, self._write_stdin)

    def _unwatch(self, fd: int) -> None:
        if fd == self._stdin:
            self._loop.remove_writer(fd)
        else:
            self._loop.remove_reader(fd)

    def _close(self, fd: int) -> None:
        if fd in self._open:
            self._open.discard(fd)
            self._unwatch(fd)
            os.close(fd)

    def close_pipes(self) -> None:
        """Stop reading and writing, and close this end of the pipes; idempotent."""
        for fd in list(self._open):
            self._close(fd)

    # -- exit --------------------------------------------------------------------------------------

    def _watch_exit(self) -> None:
        try:
            pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # not Linux 5.3+ (or not allowed): a waiting thread
            thread = threading.Thread(
                target=self._wait_in_thread, name=f"interlock-wait-{self.pid}", daemon=True
            )
            thread.start()
            return
        try:
            self._loop.add_reader(pidfd, self._reap, pidfd)
        except BaseException:
            os.close(pidfd)
            raise

    def _reap(self, pidfd: int) -> None:
        code = self.popen.poll()  # readable once the process has exited: reaps it
        if code is None:
            return
        self._loop.remove_reader(pidfd)
        os.close(pidfd)
        self._settle(code)

    def _wait_in_thread(self) -> None:
        code = self.popen.wait()
        with contextlib.suppress(RuntimeError):  # the loop may be closed by now
            self._loop.call_soon_threadsafe(self._settle, code)

    def _settle(self, code: int) -> None:
        containment.unregister_child(self.pid)
        if not self.exited.done():
            self.exited.set_result(code)


async def _terminate(child: _Child, grace: float, ctx: NodeContext) -> None:
    """SIGTERM the process group, SIGKILL it after `grace` seconds if anything is left."""
    pgid = child.pid
    # The group is only looked at once the command has exited: the usual case, a command still
    # running at its timeout, goes straight to SIGTERM (a killpg probe can take milliseconds on
    # a busy machine).
    if child.returncode is not None and not _group_alive(pgid):
        return
    _kill_group(pgid, signal.SIGTERM)
    ctx.log("interlock", f"SIGTERM sent to process group {pgid}; SIGKILL after {grace:g}s")
    deadline = time.monotonic() + grace
    gone = False
    try:
        # Woken when the command itself exits (the usual end of a group on SIGTERM), rather
        # than finding out at the next poll.
        await asyncio.wait((child.exited,), timeout=grace)
        # Polling only here, for at most `grace`: there is no portable way to wait for a whole
        # process group to empty, and the direct child may exit long before its children.
        pause = 0.001  # most commands die at once on SIGTERM: look again soon, then less often
        while True:
            if child.returncode is not None and not _group_alive(pgid):
                gone = True
                return
            left = deadline - time.monotonic()
            if left <= 0:
                break
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, 0.01)
        ctx.log("interlock", f"SIGKILL sent to process group {pgid}")
    finally:
        if not gone:
            _kill_group(pgid, signal.SIGKILL)
        if not child.exited.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(child.exited)


class _LineReader:
    """Splits a stream into bounded log lines, remembering the last stdout line for the output."""

    def __init__(self, stream_name: str, ctx: NodeContext) -> None:
        self.stream_name = stream_name
        self.ctx = ctx
        self.kept = 0
        self.dropped = 0
        self.last_line = ""
        self.pending = b""

    def line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", errors="replace").rstrip("\r")
        if text.strip():
            self.last_line = text if len(text) <= MAX_OUTPUT_LINE else ""
        if self.kept >= MAX_LOG_LINES:
            self.dropped += 1
            return
        self.kept += 1
        text = self.ctx.redact(text)  # before cutting, so no half of a secret survives the cut
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + f"... [{len(text) - MAX_LINE_CHARS} chars cut]"
        self.ctx.log(self.stream_name, text)

    def feed(self, chunk: bytes) -> None:
        """Data read from the stream: its complete lines are logged."""
        pending = self.pending + chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            self.line(raw)
        if len(pending) > MAX_OUTPUT_LINE:
            self.line(pending)
            pending = b""
        self.pending = pending

    def finish(self) -> None:
        """The stream ended: its last, unterminated line, and how many lines were not kept."""
        if self.pending:
            self.line(self.pending)
            self.pending = b""
        if self.dropped:
            self.ctx.log("interlock", f"{self.dropped} more {self.stream_name} lines not kept")


async def run_shell(node: ShellNode, ctx: NodeContext) -> dict[str, Any]:
    argv = shlex.split(node.command) if isinstance(node.command, str) else list(node.command)
    if not argv:
        raise NodeError("config", "empty command")
    env = _shell_env(node, ctx)
    cwd = node.cwd
    if cwd is not None and ctx.search_path is not None and not os.path.isabs(cwd):
        cwd = os.path.join(ctx.search_path, cwd)
    out = _LineReader("stdout", ctx)
    err = _LineReader("stderr", ctx)
    payload = json.dumps(ctx.payload, default=str).encode()
    try:
        child = _Child(argv, payload, out, err, env=env, cwd=cwd)
    except OSError as exc:
        if cwd is not None and exc.filename == cwd:  # subprocess names the cwd if chdir failed
            why = exc.strerror or str(exc)
            raise NodeError("config", f"cannot use working directory {cwd}: {why}") from None
        if isinstance(exc, FileNotFoundError):
            raise NodeError("config", f"command not found: {argv[0]}") from None
        if isinstance(exc, PermissionError):
            raise NodeError("config", f"command not executable: {argv[0]}") from None
        raise NodeError("error", f"cannot start {argv[0]}: {exc}") from None
    record = containment.process_record(child.pid)
    ctx.process_started(record)
    since = record["start_time"]  # none of the attempt's processes is older than its command
    try:
        code = await asyncio.shield(child.exited)  # a cancel must not cancel the exit watch
        # Stragglers the command left behind die with it, in its group or not (`setsid`); their
        # ends of the pipes close, so reading ends (a background child holding stdout would
        # otherwise hang the node).
        containment.sweep_attempt(child.pid, ctx.run_id, ctx.node_id, ctx.attempt, since=since)
        await asyncio.wait((child.output_closed,), timeout=OUTPUT_DRAIN)
        if not child.output_closed.done():
            # A process that left the group (setsid) holds a pipe: it is found by its marks
            # even where this process is not a subreaper (its orphans went to pid 1).
            containment.kill_attempt(
                child.pid, ctx.run_id, ctx.node_id, ctx.attempt, since=since
            )
            await asyncio.wait((child.output_closed,), timeout=0.2)
        if not child.output_closed.done():
            child.close_pipes()
            ctx.log("interlock", "output still open after the command exited; stopped reading")
        if child.failure is not None:
            raise child.failure
    except BaseException:
        # Still reading: what the command writes while it cleans up in its grace is logged.
        try:
            await _terminate(child, ctx.cleanup_grace, ctx)
        finally:
            containment.sweep_attempt(
                child.pid, ctx.run_id, ctx.node_id, ctx.attempt, since=since
            )
        raise
    finally:
        child.close_pipes()
    if code == 0:
        last = out.last_line.strip()
        if last.startswith("{"):
            try:
                parsed = strictjson.loads(last)
            except strictjson.NonFiniteError as exc:
                raise NodeError("error", f"output is not strict JSON: {exc}") from None
            except strictjson.IntTooLargeError:
                raise NodeError("error", strictjson.too_large_message("output", "has")) from None
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                # Parsed, then masked: a secret escaped inside JSON would not match the raw line.
                redacted: dict[str, Any] = ctx.redact_value(parsed)
                return redacted
        return {"exit_code": 0}
    tail = ctx.redact(err.last_line.strip() or out.last_line.strip())
    detail = f"exit {code}" + (f": {tail[:300]}" if tail else "")
    if code == EX_TEMPFAIL:
        raise TransientError(detail)
    if code < 0:
        detail = f"killed by signal {-code}"
    raise NodeError("error", detail)

