"""NodeTable: one row per node of a run, updated in place as the run moves."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import DataTable

from tui import format as fmt
from tui.ascii import ascii_text
from tui.widgets.vim import VIM_TABLE_BINDINGS

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tui.view import NodeRow

COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("node", "Node", 16),
    ("state", "State", 12),
    ("attempt", "Try", 5),
    ("duration", "Took", 7),
    ("timeout", "Timeout left", 14),
    ("breaker", "Breaker", 14),
    ("error", "Last error", None),
)
BAR_WIDTH = 14
CACHED_CELLS = 256  # a screenful of cells (the table shows at most a dozen rows of 7), and some
CACHED_ROWS = 64
ROWS_AT_ONCE = 200  # new rows added in one frame (DataTable takes 0.15-0.35 ms a row)


def row_cells(row: NodeRow, *, ascii: bool) -> list[Text]:
    """The cells of a node's row: marks that read without colour, colour on top."""
    style = fmt.state_style(row.state)
    glyph = fmt.node_glyph(row.state, ascii=ascii)
    timeout = fmt.countdown_bar(row.left, row.total, BAR_WIDTH, ascii=ascii)
    breaker_style = fmt.BREAKER_STYLES.get(row.breaker_state or "", "")
    error = fmt.one_line(row.error, 80)
    return [
        Text(row.node_id),
        Text(f"{glyph} {row.state}", style=style),
        Text(row.attempt),
        Text(row.duration, justify="right"),
        Text(timeout, style="cyan" if row.left is not None else ""),
        Text(row.breaker, style=breaker_style),
        Text(error if not ascii else ascii_text(error), style="red" if row.error else ""),
    ]


class NodeTable(DataTable[Text]):
    """The nodes of a run: state, attempt n/max, duration, timeout countdown, breaker, error.

    `enter` opens the highlighted node (`NodeTable.NodeOpened`).
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        *VIM_TABLE_BINDINGS,
        Binding("enter", "open_node", "Open node", show=False),
    ]

    DEFAULT_CSS = """
    NodeTable {
        height: auto;
        max-height: 12;
    }
    """

    class NodeOpened(Message):
        """The operator asked for a node's detail."""

        def __init__(self, table: NodeTable, node_id: str) -> None:
            super().__init__()
            self.table = table
            self.node_id = node_id

    def __init__(self, *, ascii: bool = False, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self.ascii = ascii
        self._shown: dict[str, list[Text]] = {}
        self._rows: dict[str, NodeRow] = {}
        self._waiting: dict[str, NodeRow] = {}  # rows not added yet, in order
        self._adding = False
        # DataTable keys every render cache by its count of updates, so under a running
        # pipeline (a cell or more changes every batch) what they hold is stale by the next
        # batch; left at their sizes (10,000 cells) they fill up with stale renders, each more
        # objects for every full pass of the garbage collector. A screenful is what they can
        # usefully hold.
        self._cell_render_cache.maxsize = CACHED_CELLS
        for cache in (self._row_render_cache, self._row_renderable_cache, self._line_cache):
            cache.maxsize = CACHED_ROWS

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width)

    def show(self, rows: Sequence[NodeRow]) -> None:
        """Show these rows, touching only the cells that changed. New rows beyond the first
        `ROWS_AT_ONCE` are added a chunk per frame after this (see `_add_waiting`)."""
        added = 0
        for row in rows:
            if self._rows.get(row.node_id) == row:
                continue  # most rows, most batches: no Text to build
            before = self._shown.get(row.node_id)
            if before is None and (self._waiting or added >= ROWS_AT_ONCE):
                # A 10,000-node run: its view opens with the first rows, the rest follow.
                self._waiting[row.node_id] = row
                continue
            self._rows[row.node_id] = row
            cells = row_cells(row, ascii=self.ascii)
            if before is None:
                self.add_row(*cells, key=row.node_id)
                added += 1
            else:
                for (column, _, _), old, new in zip(COLUMNS, before, cells, strict=True):
                    if old != new:
                        self.update_cell(row.node_id, column, new)
            self._shown[row.node_id] = cells
        if self._waiting and not self._adding:
            self._adding = True
            self.call_after_refresh(self._add_waiting)

    def _add_waiting(self) -> None:
        """Add the next chunk of rows `show` held back (each with its latest values)."""
        waiting = self._waiting
        for node_id in list(itertools.islice(waiting, ROWS_AT_ONCE)):
            row = waiting.pop(node_id)
            cells = row_cells(row, ascii=self.ascii)
            self.add_row(*cells, key=node_id)
            self._rows[node_id], self._shown[node_id] = row, cells
        if waiting:
            self.call_after_refresh(self._add_waiting)
        else:
            self._adding = False

    def select(self, node_id: str) -> None:
        if node_id in self._shown:
            self.move_cursor(row=self.get_row_index(node_id), scroll=True)

    @property
    def highlighted(self) -> str | None:
        if not self._shown or self.cursor_row < 0 or self.cursor_row >= self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        return str(key.value) if key.value is not None else None

    def action_open_node(self) -> None:
        node_id = self.highlighted
        if node_id is not None:
            self.post_message(self.NodeOpened(self, node_id))
