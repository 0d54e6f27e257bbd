"""RunsTable: the stored runs, own and other processes', one row each."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.widgets import DataTable

from tui import format as fmt
from tui import runs as run_views
from tui.widgets.vim import VIM_TABLE_BINDINGS

if TYPE_CHECKING:
    from collections.abc import Sequence

    from textual.binding import BindingType

    from tui.messages import RunSummary

COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("state", "State", 13),
    ("run", "Run", 8),
    ("pipeline", "Pipeline", 16),
    ("started", "Created (UTC)", 14),
    ("took", "Took", 7),
    ("owner", "Owner", 12),
    ("replay", "Replay of", 9),
)


def run_cells(run: RunSummary, now: float, *, ascii: bool) -> list[Text]:
    glyph = fmt.run_glyph(run.state, ascii=ascii)
    return [
        Text(f"{glyph} {run.state}", style=fmt.state_style(run.state)),
        Text(fmt.short_id(run.run_id)),
        Text(run.pipeline_id),
        Text(fmt.day_time(run.created_at)[5:], style="dim"),  # the year goes without saying
        Text(fmt.duration(run_views.run_seconds(run, now)), justify="right"),
        Text(run.owner, style="bold" if run.own else "dim"),
        Text(fmt.short_id(run.replay_of) if run.replay_of else "", style="dim"),
    ]


class RunsTable(DataTable[Text]):
    """Runs, one row each, keyed by run id; `enter` selects (`DataTable.RowSelected`)."""

    BINDINGS: ClassVar[list[BindingType]] = VIM_TABLE_BINDINGS

    DEFAULT_CSS = """
    RunsTable {
        height: 1fr;
    }
    """

    def __init__(self, *, ascii: bool = False, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row")
        self.ascii = ascii
        self._order: list[str] = []
        self._shown: dict[str, list[Text]] = {}

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width)

    @property
    def selected_run(self) -> str | None:
        if not self._order or not 0 <= self.cursor_row < len(self._order):
            return None
        return self._order[self.cursor_row]

    def show(self, runs: Sequence[RunSummary], now: float) -> None:
        """Show these runs in this order, keeping the cursor on the run it was on."""
        order = [run.run_id for run in runs]
        cells = {run.run_id: run_cells(run, now, ascii=self.ascii) for run in runs}
        if order == self._order:
            for run_id, new in cells.items():
                old_cells = self._shown[run_id]
                for (column, _, _), old, cell in zip(COLUMNS, old_cells, new, strict=True):
                    if old != cell:
                        self.update_cell(run_id, column, cell)
            self._shown = cells
            return
        keep = self.selected_run
        self.clear()
        for run_id in order:
            self.add_row(*cells[run_id], key=run_id)
        self._order, self._shown = order, cells
        if keep in cells:
            self.move_cursor(row=order.index(keep), animate=False)
