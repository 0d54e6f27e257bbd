"""Python and agent nodes: a callable of this process runs one attempt.

Contract: async callables are awaited in the attempt's task; sync ones run in a daemon thread of
their own. A thread cannot be stopped, so when its attempt times out or is cancelled the node
still ends on time and the thread is reported as abandoned (a log line, a note for the failure
reason, and `abandoned_threads()`), never silently awaited. A pool is not used on purpose: the
loop's default executor is joined at shutdown, which would hang on an abandoned thread. What a
callable prints becomes its log lines (`engine.capture`); its result must be JSON data (a
mapping, or any value as `{"result": value}`); what it raises is classified as the handler
contract says (`engine.nodes`). With secrets in the pipeline, all it reports is masked. The
processes it starts through `subprocess` or asyncio (in its thread, the threads it starts, the
tasks it creates) end with the attempt, by whatever path it ends: SIGTERM, then SIGKILL after
`cleanup_grace` (`engine.spawned`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import inspect
import json
import threading
import traceback
import types
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from engine import capture, spawned
from engine.errors import NodeError, TransientError
from engine.strictjson import non_finite_path, too_large_message, too_large_path

if TYPE_CHECKING:
    from engine.nodes import NodeContext
    from engine.spec import (
        AgentNode,
        PythonNode,
    )


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
_SAFE_INT_BITS = 4000  # about 1,200 digits: a larger int is checked against Python's digit limit


def _normalise_output(value: Any) -> dict[str, Any]:
    """The callable's result as the JSON data the log keeps: what runs downstream live must be
    what a resumed run folds back (a tuple would be a list, a date a string, after a resume)."""
    if value is None:
        return {}
    if type(value) is dict:
        for k, v in value.items():
            if (type(k) is not str or type(v) not in _JSON_SCALARS or v != v or v in _INFINITE
                    or (type(v) is int and v.bit_length() > _SAFE_INT_BITS)):
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
        big = too_large_path(output)
        if big is not None:
            raise NodeError("error", too_large_message(f"output {big}")) from None
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

    # Made here, entered in the thread: what the thread starts is noted in it, and ended here.
    scope = capture.bound(thread_ctx.log)

    def target() -> None:
        try:
            with scope:
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
        noted = spawned.take(scope.binding)
        if noted:
            await spawned.end(noted, ctx.cleanup_grace, ctx.log)
    if inspect.isawaitable(result):
        return await result
    return result


async def _invoke(fn: Callable[..., Any], args: tuple[Any, ...], ctx: NodeContext) -> Any:
    """Call `fn`; what it prints (or logs through `logging`'s default stream) becomes the
    node's log lines (`engine.capture`), masked as the rest of its reports."""
    if _is_async(fn):
        scope = capture.bound(ctx.log)
        try:
            with scope:
                return await fn(*args)
        finally:
            noted = spawned.take(scope.binding)
            if noted:
                await spawned.end(noted, ctx.cleanup_grace, ctx.log)
    return await _call_in_thread(fn, args, ctx)


async def run_callable(
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
    """`run_callable` for a pipeline with secrets. The callable runs in this process, so it
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
    return await run_callable(resolve(node.call, ctx.search_path), (ctx.payload, ctx), ctx)


async def run_agent(node: AgentNode, ctx: NodeContext) -> dict[str, Any]:
    from engine.registry import resolve_agent

    try:
        fn = resolve_agent(node.agent, ctx.pipeline, search_path=ctx.search_path)
    except LookupError as exc:
        raise NodeError("config", str(exc)) from None
    payload = {**ctx.payload, "config": dict(node.config)}
    return await run_callable(fn, (payload, ctx), ctx)

