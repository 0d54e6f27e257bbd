"""The `interlock serve` process: store, manager, HTTP server, scheduler and signals.

Contract: settings are checked before anything opens (a non-loopback host without a token,
an unreadable token file, a pipelines path that is not a folder, a port that cannot be bound:
one sentence on stderr, exit 2). Then one event loop holds the store, a `RunManager`, the
scheduler and uvicorn (`Server.serve` on a socket bound here, so `--port 0` works), and prints
`interlock serve: listening on http://HOST:PORT` on stderr once requests are accepted.
At most `--max-runs` runs are at work at once (launches, replays, resumes, retries and
schedules past it are `pending` until a slot frees); a run waiting for an approval holds none.
SIGTERM, SIGHUP or SIGINT: the scheduler stops, the listening socket closes and launches are
refused (503), the service's own runs are cancelled gracefully (their nodes get their
`cleanup_grace`), open streams end, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import uvicorn

from tui.serve.auth import ConfigError, check_binding, load_token

if TYPE_CHECKING:
    from collections.abc import Generator
    from pathlib import Path

    from tui.serve.tracing import TracingSink

SHUTDOWN_GRACE = 30  # seconds open connections get to finish after a stop (streams end sooner)


@dataclass(frozen=True)
class Options:
    host: str
    port: int
    token_file: str | None
    pipelines_dir: Path
    db_path: Path
    max_runs: int = 8


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling (the service decides what a signal does), and
    with an event for "accepting connections"."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.ready.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class _OneLine(logging.Formatter):
    """uvicorn's own messages as one line each: never a traceback on the service's stderr."""

    def format(self, record: logging.LogRecord) -> str:
        kind = record.exc_info[0] if record.exc_info else None
        reason = f" ({kind.__name__})" if kind is not None else ""
        return f"interlock serve: {record.getMessage()}{reason}"


def _quiet_uvicorn() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        log = logging.getLogger(name)
        log.handlers[:] = [handler]
        log.propagate = False
        log.setLevel(logging.WARNING)


def _say(text: str) -> None:
    sys.stderr.write(f"interlock serve: {text}\n")
    sys.stderr.flush()


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        why = "it is in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        raise ConfigError(f"cannot listen on {host}:{port}: {why}") from None
    sock.set_inheritable(True)
    return sock


def _tracer() -> TracingSink | None:
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    try:
        from tui.serve.tracing import tracing_sink
    except ImportError:
        _say("OTEL_EXPORTER_OTLP_ENDPOINT is set but the otel extra is not installed "
             "(pip install 'interlock[otel]'): no traces")
        return None
    _say("tracing runs to OpenTelemetry at $OTEL_EXPORTER_OTLP_ENDPOINT")
    return tracing_sink()


def check(options: Options) -> str | None:
    """The token, once every setting is known to be usable (else ConfigError)."""
    token = load_token(options.token_file)
    check_binding(options.host, token)
    if not options.pipelines_dir.is_dir():
        raise ConfigError(f"--pipelines {options.pipelines_dir}: not a directory")
    if not 0 <= options.port <= 65535:
        raise ConfigError(f"--port {options.port}: must be from 0 to 65535")
    return token


async def serve(options: Options) -> int:
    from engine.manager import RunManager
    from engine.store import Owner, Store
    from tui.serve.app import Service, build_app
    from tui.serve.metrics import StoreMetrics
    from tui.serve.scheduler import Scheduler
    from tui.serve.sse import Wakeups

    token = check(options)
    sock = bind(options.host, options.port)
    _quiet_uvicorn()
    owner = Owner.current()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    try:
        async with Store(options.db_path) as store:
            wakeups = Wakeups(store)
            sinks: list[object] = [wakeups]
            tracer = _tracer()
            if tracer is not None:
                sinks.append(tracer)
            manager = RunManager(
                store=store, sinks=sinks, owner=owner,  # type: ignore[arg-type]  # sinks are EventSink-shaped
                max_concurrent_runs=options.max_runs,
            )
            async with manager:
                scheduler = Scheduler(store, manager, owner, options.pipelines_dir)
                service = Service(store, manager, wakeups, options.pipelines_dir,
                                  StoreMetrics(store), scheduler)
                config = uvicorn.Config(
                    build_app(service, token),
                    log_config=None,
                    log_level="warning",
                    access_log=False,
                    lifespan="off",
                    timeout_graceful_shutdown=SHUTDOWN_GRACE,
                )
                server = _Server(config)
                served = asyncio.create_task(server.serve(sockets=[sock]), name="interlock-http")
                ready = asyncio.create_task(server.ready.wait())
                await asyncio.wait((served, ready), return_when=asyncio.FIRST_COMPLETED)
                ready.cancel()
                if not server.started:
                    await served
                    raise ConfigError(f"the HTTP server on {options.host} did not start")
                host, port = sock.getsockname()[:2]
                shown = f"[{host}]" if ":" in host else host
                _say(f"listening on http://{shown}:{port} (pipelines {options.pipelines_dir}, "
                     f"database {options.db_path})")
                scheduler.start()
                stop = asyncio.create_task(stopping.wait())
                await asyncio.wait((served, stop), return_when=asyncio.FIRST_COMPLETED)
                _say("stopping: no new runs; cancelling this service's runs")
                service.accepting = False
                await scheduler.stop()
                server.should_exit = True
                # Streams of other processes' runs end now; those of our own runs end at the
                # run.completed of the cancel, so their clients see how the run ended.
                wakeups.end_streams(keep=manager.active_runs())
                await manager.cancel_all("the service stopped (signal)")
                wakeups.end_streams()
                await served
                stop.cancel()
                await wakeups.close()
            if tracer is not None:
                tracer.shutdown()
    finally:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            loop.remove_signal_handler(sig)
        sock.close()
    _say("stopped")
    return 0
