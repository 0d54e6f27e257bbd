"""The `interlock` command (DESIGN section 6).

Contract: exit codes, JSON keys and output formats are fixed by DESIGN section 6. Headless
commands never import Textual (only `interlock` / `interlock tui` do), so they start fast. Any bad
input (a missing or malformed file, an unknown run id, a corrupt database, a bad `--param`) ends
with a one-paragraph message on stderr and exit 2, never a traceback; set INTERLOCK_DEBUG=1 to
see the traceback of an unexpected error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from tui.cli_history import cmd_retry
from tui.escape import printable
from tui.settings import default_db_path, default_pipelines_dir

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Sequence

    from engine.manager import RunHandle, RunManager
    from engine.state import RunState
    from engine.store import RunRow, Store

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_TIMEOUT, EXIT_CANCELLED = 0, 1, 2, 3, 4
EXIT_BY_STATE = {"succeeded": 0, "failed": 1, "timeout": 3, "cancelled": 4, "interrupted": 1}
ACK_WAIT = 2.0  # seconds a control command waits for the owning process to acknowledge


class UsageError(Exception):
    """Bad input from the user: printed as one paragraph, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_INVALID, f"interlock: error: {message}\n")


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    # After a hangup the terminal is gone (EIO): the run still has to end cleanly.
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


# ---------------------------------------------------------------------------------------------
# shared pieces


def _db_path(args: argparse.Namespace) -> Path:
    return Path(args.db).expanduser() if args.db else default_db_path()


def _nothing_stored_yet(args: argparse.Namespace) -> bool:
    """True if no database exists yet where one would be created (an empty listing).

    A path where no database can ever be created (under a regular file) is bad input, not an
    empty listing: it is most likely a typo in --db or $INTERLOCK_DB.
    """
    path = _db_path(args)
    if path.exists():
        return False
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(
            f"cannot create the Interlock database at {path}: {ancestor} is not a directory"
        )
    from engine.dbfile import directory_writable

    if not directory_writable(ancestor / "probe"):
        raise UsageError(
            f"cannot create the Interlock database at {path}: {ancestor} is not writable"
        )
    return True


def _open_store(args: argparse.Namespace, *, create: bool = True, read: bool = False) -> Store:
    """The store; for a command that only reads (`read`), opened read-only where this process
    may not write (a read-only directory or file), so reading still works there."""
    from engine.dbfile import directory_writable
    from engine.store import Store

    path = _db_path(args)
    if not create and not path.exists():
        raise UsageError(f"no database at {path} (nothing has run yet, or pass --db PATH)")
    if read and path.exists() and not (os.access(path, os.W_OK) and directory_writable(path)):
        return Store(path, readonly=True)
    return Store(path)


def _parse_params(items: Sequence[str]) -> dict[str, Any]:
    from tui.params import parse_param

    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--param needs KEY=VALUE, got '{item}'")
        try:
            params[key.strip()] = parse_param(raw)
        except ValueError:  # an int past Python's digit limit (4300)
            raise UsageError(
                f"--param {key.strip()}: a number of {len(raw.strip())} digits is too long "
                "(pass it quoted, as a string, if it is not a number)"
            ) from None
    return params


def _folder_of(path_text: str) -> str:
    """The pipeline file's folder: where its `call:` modules and relative `cwd`s are found."""
    return os.path.dirname(os.path.abspath(path_text))


def _load(path_text: str) -> Any:
    from engine.loader import load_file

    return load_file(Path(path_text))


async def _find_run(store: Store, run_id: str) -> RunRow:
    row = await store.find_run(run_id)
    if row is None:
        raise UsageError(f"no run with id '{run_id}' in {store.path}")
    return row


def _owner_alive(row: RunRow) -> bool:
    """Whether a live process holds the run's lease (`engine.lease`: reading never writes).

    Deliberately without `engine.manager` (and the executor, node and pipeline modules it
    pulls in): `cancel`, `approve` and `events` start measurably faster, and a cancel must
    take effect within a second of the command being typed.
    """
    import time

    from engine.lease import is_interrupted

    return not is_interrupted(row, time.time())


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


class _Progress:
    """A sink printing progress on stderr: rich when stderr is a terminal, plain lines otherwise."""

    def __init__(self) -> None:
        self._console: Any = None
        if sys.stderr.isatty() and not os.environ.get("NO_COLOR"):
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False)

    def publish_all(self, events: Sequence[Any]) -> None:
        for event in events:
            self.publish(event)

    def publish(self, event: Any) -> None:
        line = _status_line(event)
        if line is None:
            return
        line = printable(line)  # a node's reason may carry terminal controls
        if self._console is None:
            _err(line)
            return
        style = {
            "✔": "green", "✖": "red", "↻": "yellow", "⊘": "dim", "■": "magenta",
            "⏸": "cyan", "⛔": "bold red",
        }.get(line[9:10], "")
        with contextlib.suppress(OSError):  # the terminal may be gone (SIGHUP)
            self._console.print(line, style=style or None, markup=False)

    async def flush(self) -> None:
        return None


async def _wait_handle(manager: RunManager, handle: RunHandle) -> RunState:
    """Await a run; SIGINT/SIGTERM/SIGHUP cancel it gracefully, a second one forces."""
    loop = asyncio.get_running_loop()
    presses = 0

    def on_signal(signame: str) -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            _err(f"{signame}: cancelling run {handle.run_id} (press Ctrl-C again to force)")
            manager.cancel(handle.run_id, f"{signame} received", actor="cli")
        else:
            _err("forcing: killing running nodes now")
            handle.executor.force()

    from engine.containment import CANCEL_SIGNALS, cancel_signals

    remove = cancel_signals(loop, on_signal)  # SIGHUP too: a dropped SSH session cancels
    try:
        return await handle
    finally:
        # The run has ended: a late second signal (the first one's cancel was quick) must not
        # end the process half way through closing the store, with another exit code.
        remove()
        for sig, _name in CANCEL_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


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
    from engine.containment import become_subreaper

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
    if handle.write_error is not None:
        from tui.cli_lease import write_failure_sentence

        _err(f"interlock: {write_failure_sentence(handle.run_id, handle.write_error)}")
        return EXIT_INVALID
    if getattr(args, "json", False):
        _say(json.dumps(state_to_dict(state), separators=(",", ":"), default=str))
    return EXIT_BY_STATE.get(state.state.value, EXIT_FAILED)


# ---------------------------------------------------------------------------------------------
# commands


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


async def _reconciled_row(store: Store, row: RunRow) -> RunRow:
    """The row with the state to show (`interrupted` from the lease); nothing is written."""
    import dataclasses

    return dataclasses.replace(row, state=row.shown_state())


def _row_dict(row: RunRow) -> dict[str, Any]:
    return {
        "run_id": row.run_id,
        "pipeline_id": row.pipeline_id,
        "state": row.state,
        "started_at": row.started_at or row.created_at,
        "ended_at": row.ended_at,
    }


async def cmd_runs(args: argparse.Namespace) -> int:
    if _nothing_stored_yet(args):
        _say("[]" if args.json else "no runs yet")
        return EXIT_OK
    async with _open_store(args, read=True) as store:
        from tui.cli_history import listed_rows

        rows = [await _reconciled_row(store, r) for r in await listed_rows(store, args)]
    if args.json:
        _say(json.dumps([_row_dict(r) for r in rows], separators=(",", ":")))
        return EXIT_OK
    if not rows:
        _say("no runs listed (--limit 0)" if args.limit == 0 else "no runs yet")
        return EXIT_OK
    _say(f"{'RUN':32}  {'PIPELINE':20}  {'STATE':11}  {'STARTED':20}  ENDED")
    for r in rows:
        started = (r.started_at or r.created_at or "")[:19].replace("T", " ")
        ended = (r.ended_at or "")[:19].replace("T", " ")
        _say(f"{r.run_id:32}  {r.pipeline_id[:20]:20}  {r.state:11}  {started:20}  {ended}")
    return EXIT_OK


async def _folded(args: argparse.Namespace) -> RunState:
    from engine.state import RunStatus

    async with _open_store(args, create=False, read=True) as store:
        row = await _find_run(store, args.run)
        state = await store.fold_run(row.run_id)
    if not state.is_terminal:
        import time

        from engine.lease import judge

        verdict = judge(row, time.time())
        if verdict.interrupted:  # worked out from the lease, not written
            state.state = RunStatus.INTERRUPTED
            state.reason = verdict.reason
    return state


async def cmd_status(args: argparse.Namespace) -> int:
    from engine.state import state_to_dict

    state = await _folded(args)
    if args.json:
        _say(json.dumps(state_to_dict(state), separators=(",", ":"), default=str))
        return EXIT_OK
    _say(f"run {state.run_id}  pipeline {state.pipeline_id}  state {state.state.value}")
    if state.reason:
        _say(printable(f"reason: {state.reason}"))
    for node in state.nodes.values():
        extra = f"  {node.error_class}: {node.reason}" if node.error_class else ""
        if node.state.value == "skipped" and node.reason:
            extra = f"  ({node.reason})"
        line = f"  {node.node_id:28} {node.state.value:10} attempts {node.attempts}{extra}"
        _say(printable(line))
    return EXIT_OK


async def cmd_summary(args: argparse.Namespace) -> int:
    from tui.cli_history import linked_runs_of
    from tui.summary import summary_dict, summary_text

    state = await _folded(args)
    links = await linked_runs_of(args, state.run_id)
    if args.json:
        _say(json.dumps(summary_dict(state, links), separators=(",", ":"), default=str))
    else:
        _say(summary_text(state, links))
    return EXIT_OK


async def cmd_events(args: argparse.Namespace) -> int:
    async with _open_store(args, create=False, read=True) as store:
        run_id = (await _find_run(store, args.run)).run_id
        if args.tail is not None:
            events = await store.tail_events(run_id, args.tail)
        else:
            events = await store.events(run_id)
        last = events[-1].seq if events else 0
        if args.tail is not None:
            last = await store.last_seq(run_id)
        finished = False
        for event in events:
            if args.type is None or event.event_type.startswith(args.type):
                sys.stdout.write(event.to_json() + "\n")
            finished = finished or event.event_type == "run.completed"
        sys.stdout.flush()
        if not args.follow:
            return EXIT_OK
        idle = 0.0
        while True:
            row = await store.run_row(run_id)
            if row is not None and row.state in ("succeeded", "failed", "timeout", "cancelled"):
                finished = True
            batch = await store.events(run_id, after_seq=last)
            for event in batch:
                last = event.seq
                if args.type is None or event.event_type.startswith(args.type):
                    sys.stdout.write(event.to_json() + "\n")
            if batch:
                sys.stdout.flush()
                idle = 0.0
            if finished and not batch:
                return EXIT_OK
            idle += 0.1
            if idle >= 2.0 and row is not None and not _owner_alive(row):
                return EXIT_OK  # nobody is writing any more: the run is interrupted
            await asyncio.sleep(0.1)


async def _post_and_wait(
    store: Store, run_id: str, kind: str, *, node_id: str | None = None, reason: str | None = None
) -> str | None:
    command_id = await store.post_command(run_id, kind, node_id=node_id, reason=reason, actor="cli")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ACK_WAIT
    while loop.time() < deadline:
        command = await store.command(command_id)
        if command is not None and command.acked_at is not None:
            return command.result
        await asyncio.sleep(0.05)
    return None


async def cmd_cancel(args: argparse.Namespace) -> int:
    async with _open_store(args, create=False) as store:
        row = await _find_run(store, args.run)
        if row.state in ("succeeded", "failed", "timeout", "cancelled"):
            _say(f"run {row.run_id} is already {row.state}; nothing to cancel")
            return EXIT_OK
        if not _owner_alive(row):
            from engine.manager import cancel_interrupted

            state = await cancel_interrupted(store, row.run_id, args.reason, "cli")
            _say(f"run {row.run_id} had no live owner; marked {state.state.value}")
            return EXIT_OK

        result = await _post_and_wait(store, row.run_id, "cancel", reason=args.reason)
        if result is None:
            _say(f"cancel requested for {row.run_id}; the owner (pid {row.owner_pid}) has not "
                 "acknowledged yet")
            return EXIT_OK
        _say(f"run {row.run_id}: {result} (acknowledged by pid {row.owner_pid})")
        if result != "cancel requested" or args.no_wait:
            return EXIT_OK
        from tui.cli_cancel import wait_for_end

        _say("waiting for it to end (its nodes get their cleanup grace; --no-wait not to wait)")
        _say(await wait_for_end(store, row.run_id, _owner_alive))
    return EXIT_OK


async def cmd_decide(args: argparse.Namespace) -> int:
    approve = args.command == "approve"
    async with _open_store(args, create=False) as store:
        row = await _find_run(store, args.run)
        state = await store.fold_run(row.run_id)
        node = state.nodes.get(args.node)
        if node is None:
            known = ", ".join(n for n, s in state.nodes.items() if s.node_type == "approval")
            raise UsageError(
                f"run {row.run_id} has no node '{args.node}'"
                + (f" (approval nodes: {known})" if known else "")
            )
        if node.state.value != "waiting":
            raise UsageError(
                f"node '{args.node}' of run {row.run_id} is not waiting for approval "
                f"(it is {node.state.value})"
            )
        if not _owner_alive(row):
            # Nobody would act on the decision: it would wait in the store and surprise
            # whoever resumes the run later.
            raise UsageError(
                f"run {row.run_id} is interrupted (the process that ran it is gone), so nobody "
                f"can act on the decision; resume it with `interlock resume {row.run_id}`, then "
                f"{args.command} {args.node}"
            )
        reason = getattr(args, "reason", None)
        result = await _post_and_wait(
            store, row.run_id, "approve" if approve else "reject", node_id=args.node, reason=reason
        )
    if result is None:
        _say(f"{args.command} of {args.node} requested; the owner has not acknowledged yet")
        return EXIT_OK
    if result == "not waiting":
        raise UsageError(f"node '{args.node}' is no longer waiting for approval")
    _say(f"{args.node}: {result} (acknowledged by pid {row.owner_pid})")
    return EXIT_OK


async def cmd_breakers(args: argparse.Namespace) -> int:
    import time

    if args.action == "reset":
        if not args.key:
            raise UsageError("breakers reset needs a KEY (see `interlock breakers`)")
        async with _open_store(args) as store:
            found = await store.reset_breaker(args.key)
        if not found:
            raise UsageError(f"no breaker with key '{args.key}'")
        _say(f"breaker {args.key} reset (closed)")
        return EXIT_OK
    if args.action is not None:
        raise UsageError(f"unknown breakers action '{args.action}' (use: breakers reset KEY)")
    if _nothing_stored_yet(args):
        _say("[]" if args.json else "no breakers yet")
        return EXIT_OK
    from tui.format import breaker_label
    from tui.runs import breaker_item, merge_breakers

    async with _open_store(args, read=True) as store:
        records = await store.load_breakers()
    now = time.time()
    # The console's `b` reads the same views through the same functions: one state, one count.
    items = [breaker_item(view, now) for view in merge_breakers(records, []).values()]
    if args.json:
        _say(json.dumps(items, separators=(",", ":")))
    elif not items:
        _say("no breakers yet")
    else:
        _say(f"{'KEY':40}  {'STATE':9}  {'FAILURES':8}  COOL-DOWN")
        for item in items:
            cool = f"{item['remaining']:.1f}s left" if item["remaining"] else "-"
            label = breaker_label(item["state"])
            _say(f"{item['key']:40}  {label:9}  {item['failures']:<8}  {cool}")
    return EXIT_OK


def cmd_tui(args: argparse.Namespace) -> int:
    from tui.app import run_console

    pipelines = Path(args.pipelines).expanduser() if args.pipelines else default_pipelines_dir()
    if not pipelines.is_dir():
        raise UsageError(f"--pipelines {pipelines}: not a directory")
    from engine.containment import become_subreaper

    become_subreaper()
    return run_console(
        pipelines_dir=pipelines,
        db_path=_db_path(args),
        ascii=args.ascii,
        metrics_port=args.metrics_port,
    )


# ---------------------------------------------------------------------------------------------
# the parser


def _whole_number(low: int, high: int, what: str) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high], else one sentence (exit 2)."""

    def parse(text: str) -> int:
        value = text.strip()
        digits = value.lstrip("+-")
        if not digits.isdigit():
            raise argparse.ArgumentTypeError(
                f"{what} must be a whole number from {low:,} to {high:,}, not '{value[:40]}'"
                + ("..." if len(value) > 40 else "")
            )
        if len(digits) > 20:  # int() of thousands of digits is slow, then refused anyway
            raise argparse.ArgumentTypeError(
                f"{what} must be from {low:,} to {high:,}, not a {len(digits):,}-digit number"
            )
        number = int(value)
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(
                f"{what} must be from {low:,} to {high:,}, not {number:,}"
            )
        return number

    return parse


_LIMIT = _whole_number(0, 1_000_000_000, "the number of runs")
_TAIL = _whole_number(0, 1_000_000_000, "the number of events")
_PORT = _whole_number(0, 65535, "a TCP port")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("interlock")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    db_help = "SQLite database (default: $INTERLOCK_DB, else user data dir)"
    # An option given both before and after the command (`interlock --db X runs`) has its
    # default on the top-level parser only: a subparser's own default would overwrite X.
    keep = argparse.SUPPRESS
    common = _Parser(add_help=False)
    common.add_argument("--db", metavar="PATH", default=keep, help=db_help)
    parser = _Parser(
        prog="interlock",
        description="A fail-closed, event-sourced pipeline engine with a terminal console.",
    )
    parser.add_argument("--db", metavar="PATH", help=db_help)
    parser.add_argument("--version", action="version", version=f"interlock {_version()}")
    parser.add_argument("--pipelines", metavar="DIR", help="pipelines folder for the console")
    parser.add_argument("--ascii", action="store_true", help="ASCII drawing in the console")
    parser.add_argument("--metrics-port", type=_PORT, metavar="N", help="serve Prometheus metrics")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")

    p = sub.add_parser("tui", parents=[common], help="open the console (the default)")
    p.add_argument(
        "--pipelines", metavar="DIR", default=keep, help="pipelines folder (default: ./pipelines)"
    )
    p.add_argument(
        "--ascii", action="store_true", default=keep, help="ASCII box drawing and glyphs"
    )
    p.add_argument(
        "--metrics-port", type=_PORT, metavar="N", default=keep, help="serve Prometheus metrics"
    )

    p = sub.add_parser("validate", parents=[common], help="check pipeline files")
    p.add_argument("files", nargs="+", metavar="FILE")

    p = sub.add_parser("run", parents=[common], help="run a pipeline headless")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--param", action="append", default=[], metavar="K=V", help="set a param")
    p.add_argument("--simulate", action="store_true", help="work nodes return {simulated: true}")
    p.add_argument("--json", action="store_true", help="print the final status as JSON")
    p.add_argument(
        "--metrics-port", type=_PORT, metavar="N", default=keep, help="serve Prometheus metrics"
    )
    p.add_argument("--watch", action="store_true", help="run again when the file changes")
    from tui.commands.parsers import add_parsers

    add_parsers(sub, common)  # test, diff, web

    p = sub.add_parser("runs", parents=[common], help="list runs, newest first")
    p.add_argument("--json", action="store_true")
    p.add_argument("--limit", type=_LIMIT, default=None, metavar="N")
    p.add_argument("--state", action="append", default=[], metavar="S", help="only runs in S")
    p.add_argument("--pipeline", metavar="ID", help="only runs of pipeline ID")

    for name, text in (("status", "a run's folded state"), ("summary", "a human summary")):
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument("run", metavar="RUN")
        p.add_argument("--json", action="store_true")

    p = sub.add_parser("events", parents=[common], help="a run's events as JSONL")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--tail", type=_TAIL, metavar="N")
    p.add_argument("--follow", action="store_true", help="keep printing until the run ends")
    p.add_argument("--type", metavar="PREFIX", help="only events whose type starts with PREFIX")

    p = sub.add_parser("cancel", parents=[common], help="cancel a run (from any process)")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--reason", metavar="TEXT")
    p.add_argument("--no-wait", action="store_true",
                   help="return once the owner acknowledged, not when the run has ended")

    p = sub.add_parser("approve", parents=[common], help="approve a waiting approval node")
    p.add_argument("run", metavar="RUN")
    p.add_argument("node", metavar="NODE")
    p.add_argument("--reason", metavar="TEXT", help="recorded with the decision (optional)")
    p = sub.add_parser("reject", parents=[common], help="reject a waiting approval node")
    p.add_argument("run", metavar="RUN")
    p.add_argument("node", metavar="NODE")
    p.add_argument("--reason", metavar="TEXT")

    p = sub.add_parser("resume", parents=[common], help="continue an interrupted run here")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--override", action="store_true", help="override a failed hard gate")
    p.add_argument("--reason", metavar="TEXT", help="why (required with --override)")
    p.add_argument("--metrics-port", type=_PORT, metavar="N", default=keep)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("replay", parents=[common], help="a new run from a stored one")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--metrics-port", type=_PORT, metavar="N", default=keep)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("retry", parents=[common], help="retry from failure: reuse what succeeded")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--node", action="append", default=[], metavar="N", help="also re-run N")
    p.add_argument("--metrics-port", type=int, metavar="N", default=keep)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("breakers", parents=[common], help="circuit breakers; `breakers reset KEY`")
    p.add_argument("action", nargs="?", choices=None, metavar="reset")
    p.add_argument("key", nargs="?", metavar="KEY")
    p.add_argument("--json", action="store_true")

    from tui.serve.command import add_parser as add_serve_parser

    add_serve_parser(sub, common, keep)
    return parser


_ASYNC = {
    "run": cmd_run,
    "runs": cmd_runs,
    "status": cmd_status,
    "summary": cmd_summary,
    "events": cmd_events,
    "cancel": cmd_cancel,
    "approve": cmd_decide,
    "reject": cmd_decide,
    "resume": cmd_resume,
    "replay": cmd_replay,
    "retry": cmd_retry,
    "breakers": cmd_breakers,
}


def _dispatch(args: argparse.Namespace) -> int:
    from tui.commands import parsers

    if args.command in parsers.COMMANDS:
        return parsers.dispatch(args)
    if args.command == "run" and args.watch:
        from tui.commands.watch import cmd_watch

        return cmd_watch(args)
    if args.command in (None, "tui"):
        return cmd_tui(args)
    if args.command == "validate":
        return cmd_validate(args)
    if args.command == "serve":
        from tui.serve.command import cmd_serve

        return cmd_serve(args, _db_path(args))
    return asyncio.run(_ASYNC[args.command](args))


def main(argv: Sequence[str] | None = None) -> int:
    import logging

    # The store logs each failed write for programs that embed it; here the failure is told
    # once, as the command's last sentence, so the log lines would say it twice.
    logging.getLogger("engine.store").addHandler(logging.NullHandler())
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args.ascii = getattr(args, "ascii", False)
    try:
        code = _dispatch(args)
    except KeyboardInterrupt:
        _err("interrupted")
        code = 130
    except BrokenPipeError:
        # `interlock events RUN | head`: the reader left; that is not an error.
        with __import__("contextlib").suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (silence the flush at exit)
        code = EXIT_OK
    except Exception as exc:  # one paragraph and exit 2, never a traceback
        code = _report(exc)
    return code


def _report(exc: BaseException) -> int:
    from engine.errors import InterlockError, PipelineValidationError

    if os.environ.get("INTERLOCK_DEBUG"):
        import traceback

        traceback.print_exception(exc)
    if isinstance(exc, PipelineValidationError):
        for issue in exc.issues:
            _err(f"interlock: {issue}")
        return EXIT_INVALID
    if isinstance(exc, UsageError | InterlockError):
        _err(f"interlock: {exc}")
        return EXIT_INVALID
    if isinstance(exc, OSError):
        _err(f"interlock: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
        return EXIT_INVALID
    _err(
        f"interlock: unexpected error: {type(exc).__name__}: {exc}. Nothing stored was changed "
        "by this error; set INTERLOCK_DEBUG=1 to see the traceback and report it."
    )
    return EXIT_INVALID


if __name__ == "__main__":
    sys.exit(main())
