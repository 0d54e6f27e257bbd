"""`interlock run FILE --watch`: run again whenever the pipeline or a module it calls changes.

Contract:
- Watched: the pipeline file, and the Python files in the pipeline's folder (or below it) that
  it calls: each `python` node's `call:` module and each `agents:` module, and any `.py` file a
  shell node's command names. The set is worked out again after every change (a new `call:` is
  watched from then on). `watchfiles` reports the changes (no polling of ours).
- Each run is a child `interlock run FILE ...` (same params, flags and database), so a changed
  module is imported afresh; its stdout (the run id first) and stderr pass straight through.
- On a change the file is validated first. Invalid: the problems are printed and the watcher
  keeps waiting (a run in progress goes on). Valid: the run in progress is cancelled gracefully
  (SIGINT to the child, which cancels as `interlock run` does on Ctrl-C; a second SIGINT after
  the pipeline's `cleanup_grace` plus 5 s forces it) and a new run starts.
- SIGINT, SIGTERM and SIGHUP (a closed terminal, a dropped SSH session) to the watcher cancel the
  run in progress the same way and end it with exit 0: the child is in a session of its own, so
  a hangup would never reach it or its nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui.cli_common import EXIT_OK, _err, _folder_of

if TYPE_CHECKING:
    import argparse

    from engine.spec import Pipeline

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
DEBOUNCE_MS = 300  # an editor's save is often several writes: one run per save


def called_files(pipeline: Pipeline, folder: Path) -> set[Path]:
    """The Python files under `folder` that the pipeline calls (see the module docstring)."""
    refs = [getattr(node, "call", None) for node in pipeline.nodes]
    refs += list(pipeline.agents.values())
    found: set[Path] = set()
    for ref in refs:
        if not isinstance(ref, str) or ":" not in ref:
            continue
        parts = ref.partition(":")[0].split(".")
        for candidate in (folder.joinpath(*parts).with_suffix(".py"),
                          folder.joinpath(*parts, "__init__.py")):
            if candidate.is_file():
                found.add(candidate.resolve())
    for node in pipeline.nodes:
        command = getattr(node, "command", None)
        if command is None:
            continue
        argv = command.split() if isinstance(command, str) else command
        base = folder / (getattr(node, "cwd", None) or "")
        for arg in argv:
            if arg.endswith(".py") and (base / arg).is_file():
                path = (base / arg).resolve()
                if path.is_relative_to(folder):
                    found.add(path)
    return found


def _relative(paths: set[str], folder: Path) -> str:
    return ", ".join(sorted(os.path.relpath(path, folder) for path in paths))


def _child_argv(args: argparse.Namespace) -> list[str]:
    # `-c`, not `-m tui.cli`: as `__main__` the module would be loaded twice.
    main = "import sys; from tui.cli import main; sys.exit(main())"
    argv = [sys.executable, "-c", main, "run", os.path.abspath(args.file)]
    for item in args.param:
        argv += ["--param", item]
    if args.simulate:
        argv.append("--simulate")
    if args.json:
        argv.append("--json")
    if getattr(args, "metrics_port", None):
        argv += ["--metrics-port", str(args.metrics_port)]
    if args.db:
        argv += ["--db", os.path.abspath(os.path.expanduser(args.db))]
    return argv


class _Watcher:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.file = Path(args.file).resolve()
        self.folder = Path(_folder_of(args.file)).resolve()
        self.watched: set[str] = {str(self.file)}
        self.child: asyncio.subprocess.Process | None = None
        self.grace = 2.0
        self.stop = asyncio.Event()

    def accepts(self, _change: Any, path: str) -> bool:
        return os.path.realpath(path) in self.watched

    def validate(self) -> bool:
        """Load the file again; print its problems and return False if it is invalid."""
        from engine.errors import PipelineValidationError
        from engine.loader import load_file

        try:
            pipeline = load_file(self.file)
        except PipelineValidationError as exc:
            for issue in exc.issues:
                _err(f"interlock: {issue}")
            _err("watch: not running it; waiting for the next change")
            return False
        except OSError as exc:
            _err(f"interlock: cannot read {self.file}: {exc.strerror or exc}")
            return False
        self.grace = pipeline.cleanup_grace
        self.watched = {str(self.file)} | {str(p) for p in called_files(pipeline, self.folder)}
        return True

    async def start(self) -> None:
        names = _relative(self.watched, self.folder)
        _err(f"watch: running; watching {names}")
        self.child = await asyncio.create_subprocess_exec(
            *_child_argv(self.args), stdin=asyncio.subprocess.DEVNULL,
            # Its own session: a Ctrl-C in the terminal reaches the watcher only, which passes
            # one SIGINT on (two would force the run instead of cancelling it).
            start_new_session=True,
        )

    async def cancel_child(self) -> None:
        child = self.child
        self.child = None
        if child is None or child.returncode is not None:
            return
        _err("watch: cancelling the run in progress")
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(child.wait(), self.grace + 5.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGINT)  # the second one forces, as on a terminal
            try:
                await asyncio.wait_for(child.wait(), 5.0)
            except TimeoutError:
                child.kill()
                await child.wait()

    async def run(self) -> int:
        from watchfiles import awatch

        loop = asyncio.get_running_loop()
        for sig in _STOP_SIGNALS:
            loop.add_signal_handler(sig, self.stop.set)
        if self.validate():
            await self.start()
        else:
            _err(f"watch: watching {self.file.name}")
        try:
            async for changes in awatch(
                self.folder, watch_filter=self.accepts, stop_event=self.stop,
                debounce=DEBOUNCE_MS, recursive=True,
            ):
                changed = _relative({path for _, path in changes}, self.folder)
                _err(f"watch: {changed} changed")
                if self.validate():
                    await self.cancel_child()
                    await self.start()
        finally:
            await self.cancel_child()
            for sig in _STOP_SIGNALS:
                loop.remove_signal_handler(sig)
        _err("watch: stopped")
        return EXIT_OK


def cmd_watch(args: argparse.Namespace) -> int:
    if not os.path.isfile(args.file):
        from tui.cli_common import UsageError

        raise UsageError(f"cannot watch {args.file}: no such file")
    return asyncio.run(_Watcher(args).run())
