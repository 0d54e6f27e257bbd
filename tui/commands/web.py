"""`interlock web [--host H] [--port P] [--token-file F] [--pipelines DIR]`: a browser console.

Contract (DESIGN sections 6 and 8):
- Serves the same console (`interlock tui`, on the same database and pipelines) through
  textual-serve: each browser tab gets its own console process, driven over a websocket.
- Binds 127.0.0.1 by default. Any other address requires a token (from `--token-file` or
  `$INTERLOCK_TOKEN`), else one sentence and exit 2. With a token, every request needs it: as
  `Authorization: Bearer <token>`, or once as `?token=<token>` on the page's URL, which sets an
  HttpOnly, SameSite=Strict cookie that the page's websocket and static files then carry.
  Compared in constant time; without it the answer is 401.
- The first line on stdout is the URL to open (flushed at once; with `--port 0` it names the
  port the system chose). SIGINT/SIGTERM stop it: each tab's console is told to quit at once
  (cancelling its runs), and it exits 0 once their processes have ended (`CONSOLE_QUIT` each,
  then SIGKILL), before its event loop closes.
"""

from __future__ import annotations

import hmac
import shlex
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui.cli_common import EXIT_OK, UsageError, _db_path, _say
from tui.settings import default_pipelines_dir

if TYPE_CHECKING:
    import argparse
    from collections.abc import Awaitable, Callable

    from aiohttp import web

COOKIE = "interlock_token"
CONSOLE_QUIT = 30.0  # seconds a tab's console gets to quit (cancelling its runs) at a stop


def console_command(db: Path, pipelines: Path, ascii: bool) -> str:
    """The shell command textual-serve starts per tab: this very console, same database."""
    beside = Path(sys.executable).with_name("interlock")
    if beside.is_file():
        argv = [str(beside)]
    else:
        argv = [sys.executable, "-c", "import sys; from tui.cli import main; sys.exit(main())"]
    argv += ["tui", "--db", str(db), "--pipelines", str(pipelines)]
    if ascii:
        argv.append("--ascii")
    return shlex.join(argv)


def _authorized(request: web.Request, token: str) -> tuple[bool, bool]:
    """(allowed, came in the query: set the cookie)."""
    offered = request.query.get("token")
    if offered is not None and hmac.compare_digest(offered.encode(), token.encode()):
        return True, True
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer ") and hmac.compare_digest(header[7:].encode(), token.encode()):
        return True, False
    cookie = request.cookies.get(COOKIE)
    return cookie is not None and hmac.compare_digest(cookie.encode(), token.encode()), False


def _make_server(command: str, host: str, port: int, token: str | None) -> Any:
    import asyncio

    from aiohttp import web
    from textual_serve.server import Server

    class WebConsole(Server):
        """textual-serve with the token rule, quiet start-up, and page URLs from the request
        (so a browser elsewhere reaches the websocket at the address it used)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._consoles: set[Any] = set()  # textual-serve's AppService of each tab

        def initialize_logging(self) -> None:
            return None

        async def on_startup(self, app: web.Application) -> None:
            return None

        async def _make_app(self) -> web.Application:
            app: web.Application = await super()._make_app()
            app.on_cleanup.append(self.reap)
            if token is not None:
                app.middlewares.append(self._require_token)
            return app

        @web.middleware
        async def _require_token(
            self,
            request: web.Request,
            handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        ) -> web.StreamResponse:
            assert token is not None
            allowed, from_query = _authorized(request, token)
            if not allowed:
                return web.Response(status=401, text="401: this console needs its token\n")
            response = await handler(request)
            if from_query and not response.prepared:
                response.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
            return response

        async def _process_messages(self, websocket: Any, app_service: Any) -> None:
            self._consoles.add(app_service)
            await super()._process_messages(websocket, app_service)

        async def on_shutdown(self, app: web.Application) -> None:
            await self.reap(app)

        async def reap(self, app: web.Application) -> None:
            """At a stop: every tab's console quits (cancelling its runs) and is reaped, before
            aiohttp waits for the tabs' websockets (a console's quit closes its tab's) and
            closes the loop. A console still exiting then was reaped on a closed loop, and
            asyncio wrote "Loop ... that handles pid N is closed" and an ignored "Event loop
            is closed" traceback to stderr. Run again at cleanup, for any console left."""
            consoles, self._consoles = list(self._consoles), set()
            await asyncio.gather(*(_quit(console) for console in consoles))

        async def handle_index(self, request: web.Request) -> Any:
            self.public_url = f"{request.scheme}://{request.host}"
            return await super().handle_index(request)

    return WebConsole(command, host=host, port=port, title="Interlock")


async def _quit(console: Any) -> None:
    """Ask a tab's console (textual-serve's AppService) to quit; wait for its process."""
    import asyncio
    import contextlib

    with contextlib.suppress(Exception):
        await asyncio.wait_for(console.stop(), CONSOLE_QUIT)
    process = getattr(console, "_process", None)
    if process is None:
        return
    try:
        await asyncio.wait_for(process.wait(), CONSOLE_QUIT)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
    # Its pipes too: a transport left open is closed by its finalizer, on the closed loop
    # (textual-serve stops reading the console's stderr without draining it).
    transport = getattr(process, "_transport", None)
    if transport is not None:
        transport.close()


def cmd_web(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from aiohttp import web

    from tui.serve.auth import ConfigError, is_loopback, load_token

    try:  # the same token rule as `interlock serve` (DESIGN section 8)
        token = load_token(args.token_file)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if not is_loopback(args.host) and token is None:
        raise UsageError(
            f"--host {args.host} is not a loopback address: serving the console there needs a "
            "token (--token-file F or $INTERLOCK_TOKEN)"
        )
    pipelines_arg = getattr(args, "pipelines", None)
    pipelines = Path(pipelines_arg).expanduser() if pipelines_arg else default_pipelines_dir()
    if not pipelines.is_dir():
        raise UsageError(f"--pipelines {pipelines}: not a directory")
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    sock.listen(128)  # from here a browser's connection waits for the app, never refused
    port = sock.getsockname()[1]
    command = console_command(
        _db_path(args).resolve(), pipelines.resolve(), bool(getattr(args, "ascii", False))
    )
    server = _make_server(command, args.host, port, token)
    shown = f"[{args.host}]" if family == socket.AF_INET6 else args.host
    _say(f"http://{shown}:{port}/" + ("?token=<your token>" if token else ""))

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.request_exit)
    try:
        web.run_app(
            server._make_app(), sock=sock, handle_signals=False, loop=loop,
            print=lambda *_: None,
        )
    finally:
        loop.close()
    return EXIT_OK
