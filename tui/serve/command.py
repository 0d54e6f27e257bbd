"""`interlock serve` on the command line: options to `service.Options`, errors to exit 2."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

MAX_RUNS = 8


def add_parser(sub: argparse._SubParsersAction[Any], common: argparse.ArgumentParser,
               keep: str) -> None:
    p = sub.add_parser(
        "serve", parents=[common], help="the service: HTTP API, event streams, metrics, schedules"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks one)")
    p.add_argument("--token-file", metavar="FILE",
                   help="file holding the bearer token (else $INTERLOCK_TOKEN)")
    p.add_argument("--pipelines", metavar="DIR", default=keep,
                   help="pipelines folder (default: ./pipelines)")
    from tui.cli_common import _whole_number

    p.add_argument("--max-runs", metavar="N", default=MAX_RUNS,
                   type=_whole_number(1, 10_000, "--max-runs"),
                   help="runs at work at once; more wait their turn, runs waiting for an "
                        f"approval do not count (default {MAX_RUNS})")


def cmd_serve(args: argparse.Namespace, db_path: Path) -> int:
    from tui.cli_common import UsageError
    from tui.serve.auth import ConfigError
    from tui.serve.service import Options, serve
    from tui.settings import default_pipelines_dir

    pipelines = Path(args.pipelines).expanduser() if args.pipelines else default_pipelines_dir()
    options = Options(args.host, args.port, args.token_file, pipelines, db_path, args.max_runs)
    from engine.containment import become_subreaper, kill_adopted

    # As `run` and the console: what a node's command leaves behind (`setsid`, a double fork)
    # is re-parented to the service, so a cancel or a node's end finds and kills it.
    become_subreaper()
    try:
        import asyncio

        return asyncio.run(serve(options))
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    finally:
        kill_adopted()  # its runs are over: a node's unmarked escapee does not outlive it
