"""Vim-style movement for the console's lists: `j`/`k` down/up, `g`/`G` top/bottom.

Contract: `VIM_TABLE_BINDINGS` map the keys onto `DataTable`'s own cursor actions (the cursor
moves, the table scrolls with it); `VIM_SCROLL_BINDINGS` onto a scrolling view's. `VimTable` is a
`DataTable` with them, for the tables that are not a widget of their own.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual.binding import Binding, BindingType
from textual.widgets import DataTable

VIM_TABLE_BINDINGS: list[BindingType] = [
    Binding("j", "cursor_down", "Down", show=False),
    Binding("k", "cursor_up", "Up", show=False),
    Binding("g", "scroll_top", "Top", show=False),
    Binding("G", "scroll_bottom", "Bottom", show=False),
]

VIM_SCROLL_BINDINGS: list[BindingType] = [
    Binding("j", "scroll_down", "Down", show=False),
    Binding("k", "scroll_up", "Up", show=False),
    Binding("g", "scroll_home", "Top", show=False),
    Binding("G", "scroll_end", "Bottom", show=False),
]


class VimTable(DataTable[Any]):
    """A `DataTable` that also moves with `j`/`k`/`g`/`G`."""

    BINDINGS: ClassVar[list[BindingType]] = VIM_TABLE_BINDINGS
