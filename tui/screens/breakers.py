"""The breakers screen: every circuit breaker, its state, failures and cool-down; reset one."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Static

from tui import format as fmt
from tui.screens.confirm import ConfirmScreen
from tui.screens.console import ConsoleScreen
from tui.widgets.vim import VimTable

if TYPE_CHECKING:
    from textual.app import ComposeResult

    from tui.context import Context
    from tui.messages import BreakersChanged
    from tui.view import BreakerView


def breaker_cells(view: BreakerView, now: float, *, ascii: bool) -> list[Text]:
    state = view.shown_state(now)
    left = view.remaining(now)
    cool = "-"
    if state == "open":
        cool = fmt.countdown_bar(left, view.recovery_timeout, 18, ascii=ascii)
    elif state == "half_open":
        cool = "one trial allowed"
    return [
        Text(view.key, style="bold"),
        Text(fmt.breaker_label(state), style=fmt.BREAKER_STYLES.get(state, "")),
        Text(str(view.failures), justify="right"),
        Text(cool, style="cyan" if state == "open" else "dim"),
        Text(fmt.duration(view.recovery_timeout), justify="right"),
    ]


class BreakersScreen(ConsoleScreen):
    """Breakers of this process and of the store, live. `enter` resets the highlighted one."""

    CSS_PATH = "breakers.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "reset", "Reset breaker"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._breakers: dict[str, BreakerView] = {}
        self._keys: list[str] = []

    @property
    def table(self) -> DataTable[Text]:
        return self.query_one("#breakers", DataTable)

    def compose(self) -> ComposeResult:
        yield Static(
            " Circuit breakers: open after consecutive failures, refuse attempts during the "
            "cool-down, then let one trial through (half-open).",
            id="breakers-title",
        )
        yield VimTable(id="breakers", cursor_type="row")
        yield Static("", id="breakers-empty")
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        columns = (("key", "Key", 32), ("state", "State", 9), ("failures", "Failures", 8),
                   ("cool", "Cool-down left", 24), ("recovery", "Recovery", 8))
        for key, label, width in columns:
            self.table.add_column(label, key=key, width=width)
        self._breakers = self.bridge.breakers
        self.show()
        self.set_interval(1.0, self.show)
        self.table.focus()

    def on_breakers_changed(self, message: BreakersChanged) -> None:
        self._breakers = message.breakers
        self.show()

    def show(self) -> None:
        now = self.ctx.now()
        keys = list(self._breakers)
        rows = {k: breaker_cells(self._breakers[k], now, ascii=self.ctx.ascii) for k in keys}
        if keys != self._keys:
            keep = self.selected_key
            self.table.clear()
            for key in keys:
                self.table.add_row(*rows[key], key=key)
            self._keys = keys
            if keep in keys:
                self.table.move_cursor(row=keys.index(keep), animate=False)
        else:
            columns = ("key", "state", "failures", "cool", "recovery")
            for key in keys:
                for column, cell in zip(columns, rows[key], strict=True):
                    self.table.update_cell(key, column, cell)
        empty = self.query_one("#breakers-empty", Static)
        empty.update("" if keys else " No breaker has changed state yet.")

    @property
    def selected_key(self) -> str | None:
        row = self.table.cursor_row
        return self._keys[row] if 0 <= row < len(self._keys) else None

    def on_data_table_row_selected(self) -> None:
        self.action_reset()

    @work(group="command", exit_on_error=False)
    async def action_reset(self) -> None:
        key = self.selected_key
        if key is None:
            self.notify("no breaker selected", severity="warning")
            return
        confirm = ConfirmScreen(
            f"Reset breaker {key}?",
            "It closes with its failure count cleared, here and in the store; the next attempt "
            "of its nodes runs normally.",
            yes="Reset",
        )
        if not await self.app.push_screen_wait(confirm):
            return
        try:
            found = await self.bridge.reset_breaker(key)
        except Exception as exc:  # the store refused: say so
            self.notify(str(exc), severity="error")
            return
        self.notify(f"breaker {key} reset" if found else f"breaker {key} was not known")
        self._breakers = self.bridge.breakers
        self.show()

    def action_back(self) -> None:
        self.dismiss()
