"""What every console screen shares: the bridge subscription, commands whose refusal is shown,
and following one run.

Contract: a `ConsoleScreen` is subscribed to the bridge's messages while it is mounted. A
`RunFollower` screen also watches its run (`watch_run`) from the first successful watch until
it is unmounted; a run it cannot watch is reported and the screen closes. Screens ask for
other screens with the messages in `tui.messages` (the app opens them), so no screen module
imports the app or a screen above it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.binding import Binding, BindingType
from textual.screen import Screen

from tui.bridge import CommandError

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from engine.events import Event
    from engine.state import RunState
    from tui.bridge import Bridge
    from tui.context import Context


# First in every footer, so that a narrow terminal (80 columns) still shows them; the app's
# own bindings of these keys are hidden from the footer. Every full screen starts with these.
HELP_AND_QUIT: list[BindingType] = [
    Binding("question_mark", "app.help", "Help"),
    Binding("q", "app.quit", "Quit"),
]


class ConsoleScreen(Screen[None]):
    """A screen that follows the bridge while it is mounted."""

    BINDINGS: ClassVar[list[BindingType]] = HELP_AND_QUIT

    def __init__(self, ctx: Context) -> None:
        super().__init__()
        self.ctx = ctx

    @property
    def bridge(self) -> Bridge:
        return self.ctx.bridge

    def on_mount(self) -> None:
        self.bridge.subscribe(self)

    def on_unmount(self) -> None:
        self.bridge.unsubscribe(self)

    @property
    def in_sight(self) -> bool:
        """Whether the operator can see this screen: it is on top, or under dialogs that let it
        show through. A screen out of sight holds back its updates and catches up when it is
        back: under a busy run they are most of the console's work, for nobody.
        """
        stack = self.app.screen_stack
        if self not in stack:
            return False
        return all(screen.styles.background.a < 1 for screen in stack[stack.index(self) + 1 :])

    async def attempt(self, command: Awaitable[str], done: str = "{}") -> str | None:
        """Run a bridge command; a refusal is shown to the operator, not raised."""
        try:
            result = await command
        except CommandError as exc:
            self.notify(str(exc), title="Refused", severity="error", timeout=8)
            return None
        except Exception as exc:  # a store error must not take the console down
            self.notify(f"{type(exc).__name__}: {exc}", title="Failed", severity="error")
            return None
        self.notify(done.format(result), timeout=4)
        return result


class RunFollower(ConsoleScreen):
    """A screen on one run (`run_id`) that watches it through the bridge while mounted."""

    run_id: str
    _watching: bool = False

    def on_unmount(self) -> None:
        super().on_unmount()
        if self._watching:
            self.bridge.unwatch(self.run_id)

    async def watch_run(
        self, failed: str | None, *, history: bool = True
    ) -> tuple[RunState, list[Event]] | None:
        """The run's state and its events so far (none without `history`), watched from now on;
        None, after saying `failed: why` (or just why) and closing the screen, if it cannot be
        watched (an unknown run, or one that vanished)."""
        try:
            watched = await self.bridge.watch(self.run_id, history=history)
        except Exception as exc:  # an unknown run: say so and go back
            self.notify(f"{failed}: {exc}" if failed else str(exc), severity="error")
            self.dismiss()
            return None
        self._watching = True
        return watched
