"""The Interlock console: the Textual app. It only wires the bridge, the screens and the keys.

`run_console` is what `interlock` / `interlock tui` call. The app hosts one `RunManager` (with
the store on `db_path`) in its own event loop through the bridge (`tui.bridge`); closing the app
cancels the runs it started, after asking.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from typing import TYPE_CHECKING, Any, ClassVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.command import CommandPalette
from textual.screen import ModalScreen

from tui import ascii as ascii_mode
from tui.bridge import Bridge, CommandError, folder_stamp
from tui.context import Context
from tui.keys import COMMANDS
from tui.messages import NodeRequested, PipelinesScanned, PlaybackRequested, RunRequested
from tui.screens.breakers import BreakersScreen
from tui.screens.confirm import ConfirmScreen
from tui.screens.help import HelpScreen
from tui.screens.home import HomeScreen
from tui.screens.launch import LaunchRequest, LaunchScreen
from tui.screens.node import NodeScreen
from tui.screens.playback import PlaybackScreen
from tui.screens.quitting import QuittingScreen
from tui.screens.run import RunScreen

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable
    from pathlib import Path

    from textual.screen import Screen

_GLOBAL = frozenset({"launch", "breakers", "help", "quit", "home"})
RESCAN_EVERY = 3.0  # seconds between looks at the pipelines folder for edited files


class InterlockApp(App[int]):
    """The operator console: pipelines, runs (own and other processes'), DAGs, breakers."""

    TITLE = "Interlock"
    CSS_PATH = "base.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("l", "launch", "Launch"),
        Binding("b", "breakers", "Breakers"),
        Binding("question_mark", "help", "Help", show=False),  # shown first by each screen
        Binding("q", "quit", "Quit", show=False),
        Binding("H", "home", "Home", show=False),
    ]

    def __init__(
        self,
        *,
        pipelines_dir: Path,
        db_path: Path,
        ascii: bool = False,
        metrics_port: int | None = None,
        clock: Callable[[], float] = time.time,
        bridge: Bridge | None = None,
    ) -> None:
        super().__init__()
        bridge = bridge or Bridge(
            db_path, search_path=str(pipelines_dir), clock=clock, metrics_port=metrics_port
        )
        self.ctx = Context(bridge, pipelines_dir, db_path, ascii)
        self._stamp: tuple[tuple[str, float], ...] = ()
        self._signal_seen = False
        self._scrollbars = ascii_mode.AsciiScrollBarRender.__mro__[1]  # put back on unmount

    @property
    def bridge(self) -> Bridge:
        return self.ctx.bridge

    @property
    def _background_screens(self) -> list[Screen[Any]]:
        # Textual takes the screen under the top one for visible even when the top one is
        # opaque, and keeps repainting it; each of those repaints is a full repaint of the top
        # screen. Under a busy run that was a full-screen render per batch of events (the home
        # screen under a run view, a run view under a node's detail). Nothing shows through an
        # opaque screen. (Textualize's own toad overrides this property too.)
        stack = self.screen_stack
        if stack and stack[-1].styles.background.a == 1:
            return []
        return super()._background_screens

    def on_mount(self) -> None:
        self.set_class(self.ctx.ascii, "-ascii")
        self._scrollbars = ascii_mode.use_ascii_scrollbars(self.ctx.ascii)
        self.push_screen(HomeScreen(self.ctx))
        self._open()
        # A hangup (closed terminal, dropped SSH) or SIGTERM: this console's runs are cancelled
        # with their grace, as on quit, instead of the process dying with nodes still running.
        from engine.containment import cancel_signals

        cancel_signals(asyncio.get_running_loop(), self._signalled)

    def _signalled(self, signame: str) -> None:
        if not self._signal_seen:
            self._signal_seen = True
            self.run_worker(self._close_on_signal(signame), exit_on_error=False)

    async def _close_on_signal(self, signame: str) -> None:
        await self.bridge.close(f"{signame} received")
        from engine.containment import kill_adopted

        kill_adopted()  # the runs are over: a node's unmarked escapee goes before we leave
        # Everything of ours is recorded and closed now. After a hangup the terminal is gone:
        # Textual's restore of it writes to a dead tty, its writer thread stops at the first
        # error, and the exit then waits forever on a full queue (seen: consoles left behind
        # by tmux kill-session). So a hangup leaves at once, and any other signal gets a few
        # seconds of ordinary exit before the same.
        if signame == "SIGHUP":
            os._exit(0)
        watchdog = threading.Timer(5.0, os._exit, args=(0,))
        watchdog.daemon = True
        watchdog.start()
        self.exit(0)

    @work(exit_on_error=False)
    async def _open(self) -> None:
        await self.rescan()
        self.set_interval(RESCAN_EVERY, self._rescan_if_changed)
        try:
            await self.bridge.open()
        except Exception as exc:  # a corrupt or unwritable database: say so and leave
            self.exit(return_code=2, message=f"interlock: {exc}")
            return
        # What is alive now (Textual, the engine, the home screen) lives as long as the app:
        # out of the collector's sight, a full collection under a busy run walks only what came
        # after (about a third of the objects, and of the pause every key and frame waits out).
        gc.freeze()

    async def _rescan_if_changed(self) -> None:
        if folder_stamp(self.ctx.pipelines_dir) != self._stamp:
            await self.rescan()

    async def rescan(self) -> None:
        """Read and validate the pipelines folder again."""
        self._stamp = folder_stamp(self.ctx.pipelines_dir)
        entries = await self.bridge.scan(self.ctx.pipelines_dir)
        self.ctx.entries = entries
        for screen in self.screen_stack:
            screen.post_message(PipelinesScanned(entries))

    async def on_unmount(self) -> None:
        ascii_mode.restore_scrollbars(self._scrollbars)
        await self.bridge.close()
        gc.unfreeze()  # what was frozen can be collected again once the app is gone

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # A dialog has the floor: `l`, `b`, `?` and `q` are letters there, not commands.
        return not (action in _GLOBAL and isinstance(self.screen, ModalScreen))

    # -- global keys ------------------------------------------------------------------------------

    def action_launch(self) -> None:
        if not self.bridge.ready:  # pressed while the database opens: the dialog comes after
            self.notify("opening the database; the launch dialog follows", timeout=3)
            self.run_worker(self._launch_when_ready(), exit_on_error=False)
            return
        self._push_launch()

    async def _launch_when_ready(self) -> None:
        await self.bridge.wait_ready()
        self._push_launch()

    def _push_launch(self) -> None:
        screen = self.screen
        if isinstance(screen, LaunchScreen):  # `l` pressed twice while the database opened
            return
        if isinstance(screen, HomeScreen):
            selected = screen.highlighted_pipeline
        else:  # a run view or a node's detail: that run's pipeline (again, perhaps changed)
            state = getattr(screen, "state", None)
            selected = getattr(state, "pipeline_id", None)
        self.push_screen(
            LaunchScreen(self.ctx.entries, selected, ascii=self.ctx.ascii), self._launched
        )

    async def _launched(self, request: LaunchRequest | None) -> None:
        if request is None:
            return
        try:
            run_id = await self.bridge.launch(
                request.pipeline, request.params, simulate=request.simulate
            )
        except (CommandError, Exception) as exc:  # a refusal is shown, never raised
            self.notify(str(exc), title="Not started", severity="error")
            return
        await self.show_run(run_id)

    async def show_run(self, run_id: str) -> None:
        """Open a run's view right above the home screen: one escape goes home, however many
        runs were launched (or replayed) from run views."""
        await self.pop_to_home()
        await self.push_screen(RunScreen(self.ctx, run_id))

    # -- screens asked for by screens (none imports a screen above it) ---------------------------

    def on_run_requested(self, message: RunRequested) -> None:
        self.run_worker(self.show_run(message.run_id), exit_on_error=False)

    def on_node_requested(self, message: NodeRequested) -> None:
        self.push_screen(NodeScreen(self.ctx, message.run_id, message.node_id, message.infos))

    def on_playback_requested(self, message: PlaybackRequested) -> None:
        self.push_screen(PlaybackScreen(self.ctx, message.run_id))

    async def pop_to_home(self) -> None:
        while len(self.screen_stack) > 1 and not isinstance(self.screen, HomeScreen):
            await self.pop_screen()

    async def action_home(self) -> None:
        await self.pop_to_home()

    def action_breakers(self) -> None:
        if not isinstance(self.screen, BreakersScreen):
            self.push_screen(BreakersScreen(self.ctx))

    def action_help(self) -> None:
        self.push_screen(
            HelpScreen(
                ascii=self.ctx.ascii,
                db_path=str(self.ctx.db_path),
                pipelines_dir=str(self.ctx.pipelines_dir),
            )
        )

    async def action_quit(self) -> None:
        active = self.bridge.active_runs()
        if not active:
            await self.bridge.close()
            self.exit(0)
            return
        one = len(active) == 1
        count = f"{len(active)} run{'' if one else 's'}"
        question = ConfirmScreen(
            f"Quit and cancel {count}?",
            f"{count} started in this console {'is' if one else 'are'} still running. Quitting "
            f"cancels {'it' if one else 'them'} (a cancelled run can be replayed). Runs of "
            "other processes are not affected.",
            yes="Quit and cancel",
            no="Stay",
        )
        self.push_screen(question, self._quit_answered)

    async def _quit_answered(self, answer: bool | None) -> None:
        if answer:
            self._quit_now()

    @work(exclusive=True, group="quit", exit_on_error=False)
    async def _quit_now(self) -> None:
        # Cancelling waits out the nodes' cleanup grace: a notice says so (and offers K) rather
        # than a console that looks frozen for seconds.
        active = self.bridge.active_runs()
        if active:
            await self.push_screen(QuittingScreen(self.bridge, active))
        await self.bridge.close()
        self.exit(0)

    # -- command palette --------------------------------------------------------------------------

    def get_key_display(self, binding: Binding) -> str:
        shown = super().get_key_display(binding)
        return ascii_mode.ascii_text(shown) if self.ctx.ascii else shown

    def action_command_palette(self) -> None:
        if not self.ctx.ascii:
            super().action_command_palette()
        elif self.use_command_palette and not CommandPalette.is_open(self):  # type: ignore[arg-type]  # App[int] is an App
            self.push_screen(ascii_mode.AsciiCommandPalette(id="--command-palette"))

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        for key in COMMANDS:
            target = screen if hasattr(screen, f"action_{key.action}") else self
            if target is self and key.action not in _GLOBAL:
                continue
            yield SystemCommand(
                f"{key.title} ({key.shown})", key.help, self._palette(target, key.action)
            )
        yield from (c for c in super().get_system_commands(screen) if c.title != "Quit")

    def _palette(self, target: object, action: str) -> Callable[[], Awaitable[object]]:
        async def run() -> None:
            await self.run_action(action, default_namespace=target)  # type: ignore[arg-type]

        return run


def run_console(
    *, pipelines_dir: Path, db_path: Path, ascii: bool = False, metrics_port: int | None = None
) -> int:
    """Open the console; returns the process exit code."""
    app = InterlockApp(
        pipelines_dir=pipelines_dir, db_path=db_path, ascii=ascii, metrics_port=metrics_port
    )
    app.run()
    return int(app.return_code or 0)
