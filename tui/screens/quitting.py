"""The quitting notice: shown while the console cancels its runs on the way out.

Contract: the app pushes it and then awaits the bridge's close; this screen only shows what is
happening (how many runs, the countdown to the SIGKILL of nodes in their cleanup grace) and
offers `K` to kill them now. It never closes itself: the app exits when the runs have ended.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, ClassVar

from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from tui import format as fmt

if TYPE_CHECKING:
    from textual.app import ComposeResult

    from tui.bridge import Bridge


def quitting_text(runs: int, left: float | None) -> str:
    """What the notice says: the runs being cancelled and the time to their SIGKILL."""
    count = f"{runs} run{'' if runs == 1 else 's'}"
    if left is None:
        return f"Cancelling {count} started here; the console closes when they have ended."
    return (
        f"Cancelling {count} started here. Their running nodes got SIGTERM; whatever is still "
        f"running gets SIGKILL within {fmt.countdown(left)} (the cleanup grace).\n\n"
        "K kills them now."
    )


class QuittingScreen(ModalScreen[None]):
    """`K` kills the nodes of the runs being cancelled at once; other keys wait."""

    CSS_PATH = "confirm.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("K", "force_kill", "Kill now")]

    def __init__(self, bridge: Bridge, runs: list[str]) -> None:
        super().__init__()
        self._bridge = bridge
        self._runs = runs
        # Until the nodes' SIGTERM is heard of (a moment after the quit cancels the runs), the
        # SIGKILL is a grace away from now; a cancel already in its grace counts down to the
        # deadline it started (the run view's "SIGKILL in"), not to a fresh grace.
        grace = max((bridge.cleanup_grace(r) for r in runs), default=0.0)
        self._estimate = time.monotonic() + grace if grace > 0 else None
        self._killed = False

    @property
    def body(self) -> Static:
        return self.query_one("#quitting-body", Static)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Quitting", classes="dialog-title")
            yield Static(self._text(), id="quitting-body", classes="dialog-body")

    def on_mount(self) -> None:
        self.set_interval(0.5, self._tick)

    def _left(self) -> float | None:
        if self._killed:
            return 0.0
        known = self._bridge.sigkill_in(self._runs)
        if known is not None:
            self._estimate = None  # heard of: from now on the nodes' own deadlines only
        if known is not None or self._estimate is None:
            return known
        return max(0.0, self._estimate - time.monotonic())

    def _text(self) -> str:
        return quitting_text(len(self._runs), self._left())

    def _tick(self) -> None:
        if not self._killed:
            self.body.update(self._text())

    def action_force_kill(self) -> None:
        killed = [run for run in self._runs if self._bridge.manager.force(run)]
        if killed:
            self._killed = True
            self.body.update(f"Killing the nodes of {len(killed)} run(s) now (SIGKILL).")
