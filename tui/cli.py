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
import gc
import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

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
    return True


def _open_store(args: argparse.Namespace, *, create: bool = True) -> Store:
    from engine.store import Store

    path = _db_path(args)
    if not create and not path.exists():
        raise UsageError(f"no database at {path} (nothing has run yet, or pass --db PATH)")
    return Store(path)


def _parse_params(items: Sequence[str]) -> dict[str, Any]:
    from tui.params import parse_param

    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--param needs KEY=VALUE, got '{item}'")
        params[key.strip()] = parse_param(raw)
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
    """Whether the process that owns the run still runs.

    Deliberately without `engine.manager` (and the executor, node and pipeline modules it
    pulls in): `cancel`, `approve` and `events` start measurably faster, and a cancel must
    take effect within a second of the command being typed.
    """
    owner = row.owner
    return owner is not None and owner.is_alive(heartbeat_at=row.heartbeat_at)


def _status_line(event: Any) -> str | None:
    """One progress line for `interlock run` (stderr), or None for events not worth a line."""
    etype = event.event_type
    node = event.node_id
    time_part = event.timestamp_utc[11:19]
    if etype == "node.started":
        return f"{time_part} ▶ {node} started (attempt {event.attempt})"
    if etype == "node.succeeded":
        return f"{time_part} ✔ {node} succeeded"
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

    def publish(self, event: Any) -> None:
        line = _status_line(event)
        if line is None:
            return
        if self._console is None:
            _err(line)
            return
        style = {
            "✔": "green", "✖": "red", "↻": "yellow", "⊘": "dim", "■": "magenta",
            "⏸": "cyan", "⛔": "bold red",
        }.get(line[9:10], "")
        self._console.print(line, style=style or None, markup=False)

    async def flush(self) -> None:
        return None


async def _wait_handle(manager: RunManager, handle: RunHandle) -> RunState:
    """Await a run; SIGINT/SIGTERM cancel it gracefully, a second SIGINT forces."""
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

    for sig, name in ((signal.SIGINT, "SIGINT"), (signal.SIGTERM, "SIGTERM")):
        loop.add_signal_handler(sig, on_signal, name)
    try:
        return await handle
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _run_with_manager(
    args: argparse.Namespace,
    starter: Callable[[RunManager], Coroutine[Any, Any, RunHandle]],
) -> int:
    from engine.manager import RunManager
    from engine.metrics import Metrics
    from engine.state import state_to_dict

    metrics = Metrics() if getattr(args, "metrics_port", None) else None
    sinks: list[Any] = [_Progress()]
    if metrics is not None:
        sinks.append(metrics)
        port = metrics.serve(args.metrics_port)
        _err(f"metrics on http://127.0.0.1:{port}/metrics")
    # What is alive now (the interpreter, the loaded modules and the pipeline) lives as long as
    # the process: kept out of the collector's sight, as the console keeps its own (`app.py`),
    # a full collection during a long run walks only what the run made.
    gc.freeze()
    try:
        async with _open_store(args) as store, RunManager(store=store, sinks=sinks) as manager:
            handle = await starter(manager)
            _say(handle.run_id)
            state = await _wait_handle(manager, handle)
    finally:
        if metrics is not None:
            metrics.stop()
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
    from engine.manager import reconcile

    if row.state in ("pending", "running", "waiting"):
        try:
            if await reconcile(store, row.run_id):
                refreshed = await store.run_row(row.run_id)
                return refreshed or row
        except Exception:
            return row
    return row


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
    async with _open_store(args) as store:
        rows = [await _reconciled_row(store, r) for r in await store.list_runs(limit=args.limit)]
    if args.json:
        _say(json.dumps([_row_dict(r) for r in rows], separators=(",", ":")))
        return EXIT_OK
    if not rows:
        _say("no runs yet")
        return EXIT_OK
    _say(f"{'RUN':32}  {'PIPELINE':20}  {'STATE':11}  {'STARTED':20}  ENDED")
    for r in rows:
        started = (r.started_at or r.created_at or "")[:19].replace("T", " ")
        ended = (r.ended_at or "")[:19].replace("T", " ")
        _say(f"{r.run_id:32}  {r.pipeline_id[:20]:20}  {r.state:11}  {started:20}  {ended}")
    return EXIT_OK


async def _folded(args: argparse.Namespace) -> RunState:
    async with _open_store(args, create=False) as store:
        row = await _find_run(store, args.run)
        await _reconciled_row(store, row)
        return await store.fold_run(row.run_id)


async def cmd_status(args: argparse.Namespace) -> int:
    from engine.state import state_to_dict

    state = await _folded(args)
    if args.json:
        _say(json.dumps(state_to_dict(state), separators=(",", ":"), default=str))
        return EXIT_OK
    _say(f"run {state.run_id}  pipeline {state.pipeline_id}  state {state.state.value}")
    if state.reason:
        _say(f"reason: {state.reason}")
    for node in state.nodes.values():
        extra = f"  {node.error_class}: {node.reason}" if node.error_class else ""
        if node.state.value == "skipped" and node.reason:
            extra = f"  ({node.reason})"
        _say(f"  {node.node_id:28} {node.state.value:10} attempts {node.attempts}{extra}")
    return EXIT_OK


async def cmd_summary(args: argparse.Namespace) -> int:
    from tui.summary import summary_dict, summary_text

    state = await _folded(args)
    if args.json:
        _say(json.dumps(summary_dict(state), separators=(",", ":"), default=str))
    else:
        _say(summary_text(state))
    return EXIT_OK


async def cmd_events(args: argparse.Namespace) -> int:
    async with _open_store(args, create=False) as store:
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
            await _reconciled_row(store, row)
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
        from engine.manager import reset_stored_breaker

        async with _open_store(args) as store:
            found = await reset_stored_breaker(store, args.key)
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

    async with _open_store(args) as store:
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
    return run_console(
        pipelines_dir=pipelines,
        db_path=_db_path(args),
        ascii=args.ascii,
        metrics_port=args.metrics_port,
    )


# ---------------------------------------------------------------------------------------------
# the parser


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
    parser.add_argument("--pipelines", metavar="DIR", help="pipelines folder for the console")
    parser.add_argument("--ascii", action="store_true", help="ASCII drawing in the console")
    parser.add_argument("--metrics-port", type=int, metavar="N", help="serve Prometheus metrics")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")

    p = sub.add_parser("tui", parents=[common], help="open the console (the default)")
    p.add_argument(
        "--pipelines", metavar="DIR", default=keep, help="pipelines folder (default: ./pipelines)"
    )
    p.add_argument(
        "--ascii", action="store_true", default=keep, help="ASCII box drawing and glyphs"
    )
    p.add_argument(
        "--metrics-port", type=int, metavar="N", default=keep, help="serve Prometheus metrics"
    )

    p = sub.add_parser("validate", parents=[common], help="check pipeline files")
    p.add_argument("files", nargs="+", metavar="FILE")

    p = sub.add_parser("run", parents=[common], help="run a pipeline headless")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--param", action="append", default=[], metavar="K=V", help="set a param")
    p.add_argument("--simulate", action="store_true", help="work nodes return {simulated: true}")
    p.add_argument("--json", action="store_true", help="print the final status as JSON")
    p.add_argument(
        "--metrics-port", type=int, metavar="N", default=keep, help="serve Prometheus metrics"
    )

    p = sub.add_parser("runs", parents=[common], help="list runs, newest first")
    p.add_argument("--json", action="store_true")
    p.add_argument("--limit", type=int, default=None, metavar="N")

    for name, text in (("status", "a run's folded state"), ("summary", "a human summary")):
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument("run", metavar="RUN")
        p.add_argument("--json", action="store_true")

    p = sub.add_parser("events", parents=[common], help="a run's events as JSONL")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--tail", type=int, metavar="N")
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
    p.add_argument("--metrics-port", type=int, metavar="N", default=keep)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("replay", parents=[common], help="a new run from a stored one")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--metrics-port", type=int, metavar="N", default=keep)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("breakers", parents=[common], help="circuit breakers; `breakers reset KEY`")
    p.add_argument("action", nargs="?", choices=None, metavar="reset")
    p.add_argument("key", nargs="?", metavar="KEY")
    p.add_argument("--json", action="store_true")
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
    "breakers": cmd_breakers,
}


def _dispatch(args: argparse.Namespace) -> int:
    if args.command in (None, "tui"):
        return cmd_tui(args)
    if args.command == "validate":
        return cmd_validate(args)
    return asyncio.run(_ASYNC[args.command](args))


def main(argv: Sequence[str] | None = None) -> int:
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
