"""The parser lines of `test`, `diff` and `web`, and their dispatch (kept out of `tui.cli`)."""

from __future__ import annotations

import argparse
from typing import Any

COMMANDS = ("test", "diff", "web")


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("test", parents=[common], help="run one node alone")
    p.add_argument("file", metavar="FILE")
    p.add_argument("node", metavar="NODE")
    p.add_argument(
        "--inputs-from", metavar="RUN", help="its inputs: what its needs output in a stored run"
    )
    p.add_argument(
        "--input", metavar="JSON", help='its inputs as JSON: {"need_id": {...output...}}'
    )
    p.add_argument("--param", action="append", default=[], metavar="K=V", help="set a param")
    p.add_argument(
        "--record", action="store_true", help="store it as a one-node run linked to its source"
    )

    p = sub.add_parser("diff", parents=[common], help="what differs between two runs")
    p.add_argument("run_a", metavar="RUN_A")
    p.add_argument("run_b", metavar="RUN_B")
    p.add_argument("--json", action="store_true")

    from tui.cli_common import _PORT

    p = sub.add_parser("web", parents=[common], help="the console in a browser")
    p.add_argument("--host", default="127.0.0.1", metavar="H", help="address (127.0.0.1)")
    p.add_argument("--port", type=_PORT, default=8000, metavar="P", help="port (8000; 0: any)")
    p.add_argument("--token-file", metavar="F", help="token required on a non-loopback host")
    p.add_argument(
        "--pipelines", metavar="DIR", default=argparse.SUPPRESS, help="pipelines folder"
    )


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "diff":
        import asyncio

        from tui.commands.diff import cmd_diff

        return asyncio.run(cmd_diff(args))
    if args.command == "test":
        import asyncio

        from tui.commands.test_node import cmd_test

        return asyncio.run(cmd_test(args))
    from tui.commands.web import cmd_web

    return cmd_web(args)
