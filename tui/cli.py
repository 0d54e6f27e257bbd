"""The `interlock` command (DESIGN section 6): the parser, the dispatch and the last word.

Contract: exit codes, JSON keys and output formats are fixed by DESIGN section 6. Headless
commands never import Textual (only `interlock` / `interlock tui` do), so they start fast: each
command group lives in its own module, imported when its command runs (`cli_run`: run, resume,
replay, validate; `cli_read`: runs, status, summary, events, breakers; `cli_cancel`: cancel,
approve, reject; `cli_history`: retry; `tui.commands`: test, diff, web, run --watch). Any bad
input (a missing or malformed file, an unknown run id, a corrupt database, a bad `--param`) ends
with a one-paragraph message on stderr and exit 2, never a traceback; set INTERLOCK_DEBUG=1 to
see the traceback of an unexpected error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The shared pieces, importable from here as they always were (`tui.commands` use them).
from tui.cli_common import (
    _LIMIT,
    _PORT,
    _TAIL,
    EXIT_BY_STATE,
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_TIMEOUT,
    UsageError,
    _db_path,
    _err,
    _find_run,
    _folder_of,
    _load,
    _nothing_stored_yet,
    _open_store,
    _parse_params,
    _Parser,
    _say,
)
from tui.cli_run import _Progress, _run_with_manager
from tui.settings import default_pipelines_dir

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Sequence

__all__ = [
    "EXIT_BY_STATE",
    "EXIT_CANCELLED",
    "EXIT_FAILED",
    "EXIT_INVALID",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "UsageError",
    "_Progress",
    "_db_path",
    "_err",
    "_find_run",
    "_folder_of",
    "_load",
    "_nothing_stored_yet",
    "_open_store",
    "_parse_params",
    "_run_with_manager",
    "_say",
    "build_parser",
    "main",
]


def cmd_tui(args: argparse.Namespace) -> int:
    from tui.app import run_console

    pipelines = Path(args.pipelines).expanduser() if args.pipelines else default_pipelines_dir()
    if not pipelines.is_dir():
        raise UsageError(f"--pipelines {pipelines}: not a directory")
    from engine.containment import become_subreaper, kill_adopted

    become_subreaper()
    try:
        return run_console(
            pipelines_dir=pipelines,
            db_path=_db_path(args),
            ascii=args.ascii,
            metrics_port=args.metrics_port,
        )
    finally:
        kill_adopted()  # its runs are over: a node's unmarked escapee does not outlive it


# ---------------------------------------------------------------------------------------------
# the parser




def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("interlock")
    except PackageNotFoundError:
        return "unknown (not installed)"


class _VersionAction(argparse.Action):
    """`--version`, read from the installed metadata only when asked: reading it for every
    command cost each one about 8 ms (a scan of the installed distributions)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        sys.stdout.write(f"interlock {_version()}\n")
        parser.exit()


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
    parser.add_argument(
        "--version", action=_VersionAction, nargs=0, help="print the version and exit"
    )
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


# Each async command, as "module:function", imported when it runs.
_ASYNC = {
    "run": "tui.cli_run:cmd_run",
    "runs": "tui.cli_read:cmd_runs",
    "status": "tui.cli_read:cmd_status",
    "summary": "tui.cli_read:cmd_summary",
    "events": "tui.cli_read:cmd_events",
    "cancel": "tui.cli_cancel:cmd_cancel",
    "approve": "tui.cli_cancel:cmd_decide",
    "reject": "tui.cli_cancel:cmd_decide",
    "resume": "tui.cli_run:cmd_resume",
    "replay": "tui.cli_run:cmd_replay",
    "retry": "tui.cli_history:cmd_retry",
    "breakers": "tui.cli_read:cmd_breakers",
}


def _command(name: str) -> Callable[[argparse.Namespace], Coroutine[Any, Any, int]]:
    module, _, function = _ASYNC[name].partition(":")
    command: Callable[[argparse.Namespace], Coroutine[Any, Any, int]]
    command = getattr(importlib.import_module(module), function)
    return command


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
        from tui.cli_run import cmd_validate

        return cmd_validate(args)
    if args.command == "serve":
        from tui.serve.command import cmd_serve

        return cmd_serve(args, _db_path(args))
    import asyncio  # not at the top: `validate` and the console start without it

    return asyncio.run(_command(args.command)(args))


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
