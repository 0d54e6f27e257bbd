"""What `--ascii` changes in the parts of the screen Textual draws itself.

Contract: the console's own glyphs have ASCII spellings in `tui.format` and `tui.layout`; this
module covers the rest, so that with `--ascii` no character above 126 reaches the terminal on
any screen: scrollbars (`AsciiScrollBarRender`, installed and restored by `use_ascii_scrollbars`),
key names in the footer and the help (`ascii_text`), the checkbox mark (`ASCII_TOGGLE`), the
select's arrow (`asciify_selects`) and the command palette (`AsciiCommandPalette`). Borders are
switched in `base.tcss` under the app's `-ascii` class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.command import CommandPalette, SearchIcon
from textual.scrollbar import ScrollBar, ScrollBarRender

if TYPE_CHECKING:
    from textual.screen import Screen

# The few non-ASCII characters Textual and the console's texts use, spelled in ASCII.
_SPELLED = {
    "⏎": "enter", "←": "left", "→": "right", "↑": "up", "↓": "down", "⇥": "tab",
    "…": "...", "─": "-", "▼": "v", "▲": "^", "⌫": "backspace", "␣": "space",
    "🔎": ">", "·": ".", "✔": "+", "✖": "x",
}


def ascii_text(text: str) -> str:
    """`text` with every character above 126 spelled in ASCII (`?` where there is no spelling)."""
    if text.isascii():
        return text
    return "".join(
        ch if ord(ch) < 127 else _SPELLED.get(ch, "?") for ch in text
    )


class AsciiScrollBarRender(ScrollBarRender):
    """A scrollbar drawn with `#` for the thumb's partly covered cells (colour does the rest)."""

    VERTICAL_BARS = ["#", "#", "#", "#", "#", "#", "#", " "]  # noqa: RUF012  (Textual's own name)
    HORIZONTAL_BARS = ["#", "#", "#", "#", "#", "#", "#", " "]  # noqa: RUF012


def use_ascii_scrollbars(on: bool) -> type[ScrollBarRender]:
    """Install (or not) the ASCII scrollbar for every widget; returns the renderer it replaced,
    to be put back when the app ends (tests run several apps in one process)."""
    before = ScrollBar.renderer
    if on:
        ScrollBar.renderer = AsciiScrollBarRender
    return before


def restore_scrollbars(renderer: type[ScrollBarRender]) -> None:
    ScrollBar.renderer = renderer


ASCII_TOGGLE = ("[", "x", "]")  # a checkbox's left side, its mark, its right side


class AsciiCommandPalette(CommandPalette):
    """The command palette with its search icon and placeholder in ASCII."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(placeholder="Search for commands...", id=id)

    def on_mount(self) -> None:
        for icon in self.query(SearchIcon):
            icon.icon = ">"


def asciify_selects(screen: Screen[Any]) -> None:
    """The arrows of the select boxes on `screen` (`v` closed, `^` open)."""
    from textual.widgets import Static

    for arrow in screen.query(".down-arrow").results(Static):
        arrow.update("v")
    for arrow in screen.query(".up-arrow").results(Static):
        arrow.update("^")
