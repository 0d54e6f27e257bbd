"""`interlock run`, `resume`, `replay` and `validate`: a run in this process, with progress.

Contract (DESIGN section 6): the run id is the first line on stdout, printed and flushed as soon
as the run exists; progress goes to stderr as the store commits it (rich on a terminal, plain
lines otherwise), so nothing shows as done that is not recorded; SIGINT, SIGTERM and SIGHUP
cancel gracefully and a second one forces; the exit code says how the run ended (0 succeeded,
1 failed, 3 timeout, 4 cancelled) and a run stopped because the store refused its events
(fail-closed) exits 2 with one sentence naming the cause.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

from tui.cli_common import (
    EXIT_BY_STATE,
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    UsageError,
    _err,
    _find_run,
    _folder_of,
    _load,
    _open_store,
    _parse_params,
    _say,
)
from tui.escape import printable

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Coroutine, Sequence

    from engine.manager import RunHandle, RunManager
    from engine.state import RunState


def _status_line(event: Any) -> str | None:
    """One progress line for `interlock run` (stderr), or None for events not worth a line."""
    etype = event.event_type
    node = event.node_id
    time_part = event.timestamp_utc[11:19]
    if etype.startswith("notification."):
        data = event.data or {}
        how = "sent" if etype == "notification.sent" else f"failed: {event.reason}"
        return f"{time_part} notified {data.get('channel')} {data.get('target')}: {how}"
    if etype == "node.started":
        return f"{time_part} ▶ {node} started (attempt {event.attempt})"
    if etype == "node.succeeded":
        reused = (event.data or {}).get("reused_from")
        return f"{time_part} ✔ {node} " + (f"reused from {reused}" if reused else "succeeded")
    if etype in ("node.failed", "node.timed_out"):
        return f"{time_part} ✖ {node} {etype.split('.')[1]}: {event.reason}"
    if etype == "node.retried":
        delay = (event.data or {}).get("delay", 0)
        why = f"{event.error_class}: {event.reason}"
        return f"{time_part} ↻ {node} retrying in {delay:.2f}s ({why})"
    if etype == "node.skipped":
        return f"{time_part} ⊘ {node} skipped ({event.reason})"
    if etype == "node.cancelled":
        return f"{time_part} ■ {node} cancelled ({event.reason})"
    if etype == "approval.requested":
        return (
            f"{time_part} ⏸ {node} waits for approval: "
            f"interlock approve {event.run_id} {node}"
        )
    if etype in ("approval.granted", "approval.rejected"):
        return f"{time_part} {etype.split('.')[1]} {node} by {event.actor}"
    if etype == "gate.failed":
        return f"{time_part} ⛔ gate {node} failed: {event.reason}"
    if etype == "breaker.state_changed":
        data = event.data or {}
        from tui.format import breaker_label

        return (
            f"{time_part} breaker {data.get('key')}: {breaker_label(data.get('from'))} → "
            f"{breaker_label(data.get('to'))}"
        )
    if etype == "run.completed":
        state = (event.data or {}).get("state")
        return f"{time_part} run {state}" + (f": {event.reason}" if event.reason else "")
    return None


_STYLES = {
    "✔": "green", "✖": "red", "↻": "yellow", "⊘": "dim", "■": "magenta", "⏸": "cyan",
    "⛔": "bold red",
}


class _Progress:
    """A sink printing progress on stderr: rich when stderr is a terminal, plain lines otherwise."""

    def __init__(self) -> None:
        self._console: Any = None
        if sys.stderr.isatty() and not os.environ.get("NO_COLOR"):
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False)

    def publish_all(self, events: Sequence[Any]) -> None:
        self._print(events)

    def publish(self, event: Any) -> None:
        self._print((event,))

    def _print(self, events: Sequence[Any]) -> None:
        """A commit's lines, written at once: one write (and one rich render) per commit, not
        per line, as a line at a time was a tenth of what a no-op node costs (W10)."""
        # printable: a node's reason may carry terminal controls
        lines = [printable(line) for event in events if (line := _status_line(event))]
        if not lines:
            return
        if self._console is None:
            _err("\n".join(lines))
            return
        from rich.text import Text

        text = Text("\n".join(lines))
        offset = 0
        for line in lines:
            style = _STYLES.get(line[9:10])
            if style:
                text.stylize(style, offset, offset + len(line))
            offset += len(line) + 1
        with contextlib.suppress(OSError):  # the terminal may be gone (SIGHUP)
            self._console.print(text)

    async def flush(self) -> None:
        return None


def cancel_on_signals(
    what: str, cancel: Callable[[str], object], force: Callable[[], object]
) -> Callable[[], None]:
    """SIGINT, SIGTERM and SIGHUP (a dropped SSH session) cancel `what` gracefully and a second
    one forces; call the returned function once it has ended."""
    import asyncio

    from engine.containment import CANCEL_SIGNALS, cancel_signals

    presses = 0

    def on_signal(signame: str) -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            _err(f"{signame}: cancelling {what} (press Ctrl-C again to force)")
            cancel(f"{signame} received")
        else:
            _err("forcing: killing running nodes now")
            force()

    remove = cancel_signals(asyncio.get_running_loop(), on_signal)

    def undo() -> None:
        # Over: a late second signal (the first one's cancel was quick) must not end the
        # process half way through its last words (closing the store), with another exit code.
        remove()
        for sig, _name in CANCEL_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)

    return undo


async def _wait_handle(manager: RunManager, handle: RunHandle) -> RunState:
    """Await a run; SIGINT/SIGTERM/SIGHUP cancel it gracefully, a second one forces."""
    undo = cancel_on_signals(
        f"run {handle.run_id}",
        lambda why: manager.cancel(handle.run_id, why, actor="cli"),
        handle.executor.force,
    )
    try:
        return await handle
    finally:
        undo()


async def _run_with_manager(
    args: argparse.Namespace,
    starter: Callable[[RunManager], Coroutine[Any, Any, RunHandle]],
) -> int:
    from engine.manager import RunManager
    from engine.metrics import Metrics
    from engine.state import state_to_dict

    metrics = Metrics() if getattr(args, "metrics_port", None) else None
    sinks: list[Any] = []
    if metrics is not None:
        sinks.append(metrics)
        port = metrics.serve(args.metrics_port)
        _err(f"metrics on http://127.0.0.1:{port}/metrics")
    # What is alive now (the interpreter, the loaded modules and the pipeline) lives as long as
    # the process: kept out of the collector's sight, as the console keeps its own (`app.py`),
    # a full collection during a long run walks only what the run made.
    gc.freeze()
    from engine.containment import become_subreaper, kill_adopted

    become_subreaper()  # what a node's command leaves behind comes back to us, to be killed
    progress = _Progress()
    try:
        async with _open_store(args) as store, RunManager(store=store, sinks=sinks) as manager:
            # Progress is printed as the store commits it: nothing shows as done that is not
            # recorded (fail-closed).
            store.commit_listeners.append(progress.publish_all)
            handle = await starter(manager)
            _say(handle.run_id)
            state = await _wait_handle(manager, handle)
    finally:
        if metrics is not None:
            metrics.stop()
        # The run is over: what is still adopted is a node's escapee that carried no mark.
        kill_adopted()
    if handle.write_error is not None:
        from tui.cli_lease import write_failure_sentence

        _err(f"interlock: {write_failure_sentence(handle.run_id, handle.write_error)}")
        return EXIT_INVALID
    if getattr(args, "json", False):
        _say(json.dumps(state_to_dict(state), separators=(",", ":"), default=str))
    return EXIT_BY_STATE.get(state.state.value, EXIT_FAILED)


def cmd_validate(args: argparse.Namespace) -> int:
    from engine.errors import PipelineValidationError

    bad = 0
    for name in args.files:
        try:
            pipeline = _load(name)
        except PipelineValidationError as exc:
            bad += 1
            for issue in exc.issues:
                _err(str(issue))
            continue
        _say(f"ok: {name} ({pipeline.id}, {len(pipeline.nodes)} nodes)")
    return EXIT_INVALID if bad else EXIT_OK


async def cmd_run(args: argparse.Namespace) -> int:
    from engine.manager import resolve_params

    pipeline = _load(args.file)
    params = _parse_params(args.param)
    try:
        params = resolve_params(pipeline, params)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    search_path = _folder_of(args.file)

    async def start(manager: RunManager) -> RunHandle:
        return await manager.start(
            pipeline, params=params, simulate=args.simulate, search_path=search_path, actor="cli"
        )

    return await _run_with_manager(args, start)


async def cmd_resume(args: argparse.Namespace) -> int:
    from engine.errors import ResumeRefusedError

    if args.override and not args.reason:
        raise UsageError("--override needs --reason TEXT (it is recorded in the run's events)")
    async with _open_store(args, create=False) as store:
        run_id = (await _find_run(store, args.run)).run_id

    async def start(manager: RunManager) -> RunHandle:
        try:
            return await manager.resume(
                run_id, override=args.override, reason=args.reason, actor="cli"
            )
        except ResumeRefusedError as exc:
            raise UsageError(f"cannot resume: {exc}") from None

    return await _run_with_manager(args, start)


async def cmd_replay(args: argparse.Namespace) -> int:
    async with _open_store(args, create=False) as store:
        run_id = (await _find_run(store, args.run)).run_id

    async def start(manager: RunManager) -> RunHandle:
        return await manager.replay(run_id, actor="cli")

    return await _run_with_manager(args, start)
