"""Node handlers: what each node type does for one attempt.

Contract: a handler is `async def handler(node, ctx) -> dict` returning the node's output, or
raising `TransientError` (class `transient`), `NodeError(error_class, reason)`, or any other
exception (class `error`). Handlers never touch the store; they report through `ctx` (log lines,
artifacts, approval waits). Timeouts and cancellation arrive as `asyncio.CancelledError`; a
handler that owns resources releases them before re-raising it:

- shell: the command runs in its own process group (argv, never a shell). On cancel the group
  gets SIGTERM, then SIGKILL after `cleanup_grace`; stragglers left in the group after a normal
  exit are killed too, so no child process outlives its attempt.
- python: async callables are awaited; sync ones run in a daemon thread of their own. A thread
  cannot be stopped, so when its attempt times out the node still times out on time and the
  thread is reported as abandoned (a log line, the failure reason, and `abandoned_threads()`),
  never silently awaited. A pool is not used on purpose: the loop's default executor is joined
  at shutdown, which would hang on an abandoned thread.

More types plug in through the `interlock.nodes` entry-point group: the entry point names an
object called as `await obj(node, ctx)`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import dataclasses
import hashlib
import inspect
import json
import os
import shlex
import signal
import stat
import subprocess
import threading
import time
import traceback
import types
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import psutil

from engine import capture, containment, strictjson, tracecontext
from engine.errors import NodeError, TransientError
from engine.expr import ExpressionError, compile_expression, compile_template
from engine.strictjson import non_finite_path

if TYPE_CHECKING:
    from engine.spec import (
        ActionNode,
        AgentNode,
        ConditionNode,
        DelayNode,
        NodeBase,
        Pipeline,
        PythonNode,
        ShellNode,
    )

EX_TEMPFAIL = 75
MAX_LOG_LINES = 1000  # per attempt and stream; the rest are counted, not kept
MAX_LINE_CHARS = 4000
MAX_OUTPUT_LINE = 4 * 1024 * 1024
READ_CHUNK = 65536


@dataclass
class NodeContext:
    """What a handler may know and do during one attempt."""

    run_id: str
    node_id: str
    attempt: int
    params: Mapping[str, Any]
    inputs: Mapping[str, Any]
    outputs: Mapping[str, Any]
    timeout: float
    cleanup_grace: float
    pipeline: Pipeline
    simulate: bool = False
    search_path: str | None = None
    log: Callable[[str, str], None] = lambda stream, line: None
    emit_artifact: Callable[[dict[str, Any]], None] = lambda data: None
    wait_for_decision: Callable[[], Awaitable[dict[str, Any]]] | None = None
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    # What to mask in whatever the attempt reports: every secret of the pipeline, in each form
    # it may take in output, longest first (filled in by the executor: see `secret_forms`).
    secrets: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # facts the failure reason must mention
    # Told where a shell node's command runs (`containment.process_record`), to be stored, so
    # that whoever cancels or resumes the run after this process died can kill what is left.
    process_started: Callable[[dict[str, Any]], None] = lambda record: None

    @property
    def payload(self) -> dict[str, Any]:
        """The node input of DESIGN section 2."""
        return {
            "params": dict(self.params),
            "inputs": dict(self.inputs),
            "run_id": self.run_id,
            "node_id": self.node_id,
            "attempt": self.attempt,
        }

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "***")
        return text

    def redact_value(self, value: Any) -> Any:
        """`value` (parsed JSON) with every secret masked in its strings, keys included."""
        if not self.secrets:
            return value
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {self.redact(str(k)): self.redact_value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.redact_value(v) for v in value]
        return value


Handler = Callable[[Any, NodeContext], Awaitable[dict[str, Any]]]

# ---------------------------------------------------------------------------------------------
# python callables and inline callables registered by the builder API

_INLINE: dict[str, Callable[..., Any]] = {}
_RESOLVED: dict[tuple[str, str | None], Callable[..., Any]] = {}
_ABANDONED: list[threading.Thread] = []


def register_inline(ref: str, fn: Callable[..., Any]) -> None:
    """Make `fn` callable under `ref` (used by `engine.api` for callables without a module path)."""
    _INLINE[ref] = fn


def resolve(ref: str, search_path: str | None) -> Callable[..., Any]:
    fn = _INLINE.get(ref)
    if fn is not None:
        return fn
    key = (ref, search_path)
    fn = _RESOLVED.get(key)
    if fn is None:
        from engine.registry import resolve_callable

        try:
            fn = resolve_callable(ref, search_path=search_path)
        except LookupError as exc:
            raise NodeError("config", str(exc)) from None
        _RESOLVED[key] = fn
    return fn


def abandoned_threads() -> list[threading.Thread]:
    """Worker threads whose attempt timed out or was cancelled while they still ran."""
    _ABANDONED[:] = [t for t in _ABANDONED if t.is_alive()]
    return list(_ABANDONED)


_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})
_INFINITE = (float("inf"), float("-inf"))


def _normalise_output(value: Any) -> dict[str, Any]:
    """The callable's result as the JSON data the log keeps: what runs downstream live must be
    what a resumed run folds back (a tuple would be a list, a date a string, after a resume)."""
    if value is None:
        return {}
    if type(value) is dict:
        for k, v in value.items():
            if type(k) is not str or type(v) not in _JSON_SCALARS or v != v or v in _INFINITE:
                break
        else:  # already plain JSON data: the round trip below would copy it as is
            return dict(value)
    output = dict(value) if isinstance(value, Mapping) else {"result": value}
    try:
        plain: dict[str, Any] = json.loads(json.dumps(output, default=str, allow_nan=False))
    except ValueError as exc:
        if "Out of range float" in str(exc):
            where = non_finite_path(output) or "output"
            raise NodeError(
                "error", f"output {where} is not a finite number (NaN and Infinity are not JSON)"
            ) from None
        raise NodeError("error", f"output is not JSON data: {type(exc).__name__}: {exc}") from None
    except (TypeError, RecursionError) as exc:
        raise NodeError("error", f"output is not JSON data: {type(exc).__name__}: {exc}") from None
    return plain


def _classify_exception(exc: BaseException, ctx: NodeContext) -> NodeError:
    if isinstance(exc, NodeError):
        return exc
    if isinstance(exc, TransientError):
        return NodeError("transient", str(exc) or "transient error")
    for line in traceback.format_exception(exc)[-12:]:
        for part in line.rstrip("\n").splitlines():
            ctx.log("stderr", part)
    return NodeError("error", f"{type(exc).__name__}: {exc}")


_IS_ASYNC: dict[Callable[..., Any], bool] = {}


def _is_async(fn: Callable[..., Any]) -> bool:
    known = _IS_ASYNC.get(fn) if isinstance(fn, types.FunctionType) else None
    if known is not None:
        return known
    found = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004  (async callable objects)
    )
    if isinstance(fn, types.FunctionType):  # remembered for plain functions only (bound
        _IS_ASYNC[fn] = found  # methods are made anew on every attribute access)
    return found


async def _call_in_thread(
    fn: Callable[..., Any], args: tuple[Any, ...], ctx: NodeContext
) -> Any:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    live = True  # False once the attempt is over: an abandoned thread's reports are dropped

    def on_loop(report: Callable[..., None], *values: Any) -> None:
        if live:
            report(*values)

    def from_thread(report: Callable[..., None]) -> Callable[..., None]:
        # Events are emitted on the loop only: the worker thread hands its reports over.
        def forward(*values: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop may be closed by now
                # In a context of its own: not the thread's, where printing is captured.
                loop.call_soon_threadsafe(
                    on_loop, report, *values, context=contextvars.Context()
                )

        return forward

    thread_ctx = dataclasses.replace(
        ctx, log=from_thread(ctx.log), emit_artifact=from_thread(ctx.emit_artifact)
    )
    args = tuple(thread_ctx if arg is ctx else arg for arg in args)

    def settle(ok: bool, value: Any) -> None:
        if not future.done():
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def target() -> None:
        try:
            with capture.bound(thread_ctx.log):
                result = fn(*args)
        except BaseException as exc:  # the exception is handed to the loop, not lost
            outcome: tuple[bool, Any] = (False, exc)
        else:
            outcome = (True, result)
        with contextlib.suppress(RuntimeError):  # the loop may be closed by now
            loop.call_soon_threadsafe(settle, *outcome)

    thread = threading.Thread(
        target=target, name=f"interlock:{ctx.run_id[:8]}:{ctx.node_id}", daemon=True
    )
    thread.start()
    try:
        result = await future
    except asyncio.CancelledError:
        if thread.is_alive():
            _ABANDONED.append(thread)
            note = f"sync callable abandoned in thread '{thread.name}' (threads cannot be stopped)"
            ctx.notes.append(note)
            ctx.log("interlock", note)
        raise
    finally:
        live = False
    if inspect.isawaitable(result):
        return await result
    return result


async def _invoke(fn: Callable[..., Any], args: tuple[Any, ...], ctx: NodeContext) -> Any:
    """Call `fn`; what it prints (or logs through `logging`'s default stream) becomes the
    node's log lines (`engine.capture`), masked as the rest of its reports."""
    if _is_async(fn):
        with capture.bound(ctx.log):
            return await fn(*args)
    return await _call_in_thread(fn, args, ctx)


async def _run_callable(
    fn: Callable[..., Any], args: tuple[Any, ...], ctx: NodeContext
) -> dict[str, Any]:
    """Call a node's callable (awaited, or in a thread of its own): its output as JSON data,
    anything it raises as a NodeError."""
    if ctx.secrets:
        return await _run_masked(fn, args, ctx)
    try:
        result = await _invoke(fn, args, ctx)
        return _normalise_output(result)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        raise _classify_exception(exc, ctx) from None


async def _run_masked(
    fn: Callable[..., Any], args: tuple[Any, ...], ctx: NodeContext
) -> dict[str, Any]:
    """`_run_callable` for a pipeline with secrets. The callable runs in this process, so it
    can read them from the environment: what it logs, emits, returns or raises is masked, as a
    shell node's output is (only then: a pipeline without secrets pays nothing for it)."""
    log, emit_artifact = ctx.log, ctx.emit_artifact
    # `ctx` itself is changed, not copied: the callable holds it (it is one of `args`).
    ctx.log = lambda stream, line: log(stream, ctx.redact(line))
    ctx.emit_artifact = lambda data: emit_artifact(ctx.redact_value(data))
    try:
        result = await _invoke(fn, args, ctx)
        output = _normalise_output(result)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        err = _classify_exception(exc, ctx)
        raise NodeError(
            err.error_class, ctx.redact(err.reason), ctx.redact_value(err.output)
        ) from None
    masked: dict[str, Any] = ctx.redact_value(output)
    return masked


async def run_python(node: PythonNode, ctx: NodeContext) -> dict[str, Any]:
    return await _run_callable(resolve(node.call, ctx.search_path), (ctx.payload, ctx), ctx)


async def run_agent(node: AgentNode, ctx: NodeContext) -> dict[str, Any]:
    from engine.registry import resolve_agent

    try:
        fn = resolve_agent(node.agent, ctx.pipeline, search_path=ctx.search_path)
    except LookupError as exc:
        raise NodeError("config", str(exc)) from None
    payload = {**ctx.payload, "config": dict(node.config)}
    return await _run_callable(fn, (payload, ctx), ctx)


# ---------------------------------------------------------------------------------------------
# shell


def _secret_forms(secret: str) -> list[str]:
    """What to mask for one secret: itself, as it reads inside a JSON string, and each of its
    lines (a multi-line secret, e.g. a key, is printed, and so logged, line by line)."""
    forms = [secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]]
    forms += [line for line in secret.splitlines() if line.strip()]
    return list(dict.fromkeys(form for form in forms if form))


def secret_names(pipeline: Pipeline) -> tuple[str, ...]:
    """The environment variables that any node of the pipeline reads as a secret."""
    return tuple(
        dict.fromkeys(
            value.from_env
            for node in pipeline.nodes
            for value in getattr(node, "env", {}).values()
            if not isinstance(value, str) and value.secret
        )
    )


def secret_forms(names: Iterable[str]) -> list[str]:
    """What `NodeContext.secrets` holds for the secrets `names` as the environment has them now.

    Every secret of the pipeline is masked in every node's output: a shell node inherits the
    environment and a python node shares it, so one that does not declare a secret can still
    print it. Longest first, so that whole secrets go before the lines they contain.
    """
    forms = [
        form for name in names if (secret := os.environ.get(name)) for form in _secret_forms(secret)
    ]
    masked = list(dict.fromkeys(forms))
    masked.sort(key=len, reverse=True)
    return masked


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
    ctx.process_started(containment.process_record(child.pid))
    try:
        code = await asyncio.shield(child.exited)  # a cancel must not cancel the exit watch
        # Stragglers the command left behind die with it, in its group or not (`setsid`); their
        # ends of the pipes close, so reading ends (a background child holding stdout would
        # otherwise hang the node).
        containment.sweep_attempt(child.pid, ctx.run_id, ctx.node_id, ctx.attempt)
        await asyncio.wait((child.output_closed,), timeout=ctx.cleanup_grace)
        if not child.output_closed.done():
            # A process that left the group (setsid) holds a pipe: it is found by its marks
            # even where this process is not a subreaper (its orphans went to pid 1).
            containment.kill_attempt(child.pid, ctx.run_id, ctx.node_id, ctx.attempt)
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
            containment.sweep_attempt(child.pid, ctx.run_id, ctx.node_id, ctx.attempt)
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


# ---------------------------------------------------------------------------------------------
# the rest


def expression_namespace(
    params: Mapping[str, Any], outputs: Mapping[str, Any]
) -> Mapping[str, Any]:
    # A view, not a copy: a condition reads a few outputs of a run that may have thousands.
    return collections.ChainMap({"params": params}, outputs)  # type: ignore[arg-type]


async def run_condition(node: ConditionNode, ctx: NodeContext) -> dict[str, Any]:
    namespace = expression_namespace(ctx.params, ctx.outputs)
    try:
        value = compile_expression(node.expr).evaluate(namespace)
    except ExpressionError as exc:
        if ctx.simulate:
            ctx.log("interlock", f"simulate: '{node.expr}' not evaluable ({exc}); true branch")
            return {"result": True, "simulated": True}
        raise NodeError("error", f"expression failed: {exc}") from None
    if non_finite_path(value) is not None:  # NaN is truthy: it must not pick a branch
        raise NodeError("error", f"expression '{node.expr}' gave {value!r}, not a finite value")
    return {"result": bool(value)}


async def run_delay(node: DelayNode, ctx: NodeContext) -> dict[str, Any]:
    await ctx.sleep(node.duration)
    return {"waited": node.duration}


async def run_approval(node: NodeBase, ctx: NodeContext) -> dict[str, Any]:
    if ctx.wait_for_decision is None:
        raise NodeError("config", "approvals need a run manager")
    decision = await ctx.wait_for_decision()
    if decision.get("decision") != "approved":
        raise NodeError("rejected", decision.get("reason") or "rejected")
    return {"approved": True, "by": decision.get("actor"), "reason": decision.get("reason")}


async def run_trigger(node: NodeBase, ctx: NodeContext) -> dict[str, Any]:
    return dict(ctx.params)


async def run_parallel(node: NodeBase, ctx: NodeContext) -> dict[str, Any]:
    return {}


def _artifact_problem(path: Path) -> str | None:
    """Why `path` cannot be an artifact (hashing a FIFO would wait forever), or None."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "not found"
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    if stat.S_ISFIFO(mode):
        return "is a FIFO, not a file"
    if not stat.S_ISREG(mode):
        return "is not a regular file"
    return None


def _sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


async def run_action(node: ActionNode, ctx: NodeContext) -> dict[str, Any]:
    namespace = expression_namespace(ctx.params, ctx.outputs)
    output: dict[str, Any] = {}
    try:
        if node.message is not None:
            output["message"] = compile_template(node.message).render(namespace)
        artifact = compile_template(node.artifact).render(namespace) if node.artifact else None
    except ExpressionError as exc:
        raise NodeError("error", f"template failed: {exc}") from None
    if output.get("message"):
        ctx.log("message", output["message"])
    if artifact is not None:
        path = Path(artifact)
        if not path.is_absolute() and ctx.search_path is not None:
            path = Path(ctx.search_path) / path
        problem = _artifact_problem(path)
        if problem is not None:
            raise NodeError("error", f"artifact {path} {problem}")
        sha, size = await asyncio.to_thread(_sha256, path)
        output.update({"artifact": str(path), "sha256": sha, "size": size})
        ctx.emit_artifact({"path": str(path), "sha256": sha, "size": size})
    return output


BUILTIN_HANDLERS: dict[str, Handler] = {
    "shell": run_shell,
    "python": run_python,
    "agent": run_agent,
    "condition": run_condition,
    "delay": run_delay,
    "approval": run_approval,
    "trigger": run_trigger,
    "action": run_action,
    "parallel": run_parallel,
}


def handler_for(node_type: str) -> Handler:
    handler = BUILTIN_HANDLERS.get(node_type)
    if handler is not None:
        return handler
    from engine.registry import resolve_node_type

    try:
        plugin = resolve_node_type(node_type)
    except LookupError as exc:
        raise NodeError("config", str(exc)) from None

    async def run_plugin(node: Any, ctx: NodeContext) -> dict[str, Any]:
        return await _run_callable(plugin, (node, ctx), ctx)

    return run_plugin
