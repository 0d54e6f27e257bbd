"""The help screen: every key of the console, from the one key table (`tui.keys`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.table import Table
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from engine.state import NodeStatus, RunStatus
from tui import format as fmt
from tui.keys import COMMANDS, SCREEN_KEYS

if TYPE_CHECKING:
    from textual.app import ComposeResult


def keys_table() -> Table:
    table = Table(box=None, show_header=True, header_style="bold", expand=True, pad_edge=False)
    table.add_column("key", style="bold cyan", no_wrap=True)
    table.add_column("where", style="dim", no_wrap=True)
    table.add_column("does")
    for key in COMMANDS:
        table.add_row(key.shown, key.where, f"{key.title}: {key.help}")
    for where, shown, text in SCREEN_KEYS:
        table.add_row(shown, where, text)
    return table


def marks_text(*, ascii: bool) -> str:
    nodes = "  ".join(f"{fmt.node_glyph(s, ascii=ascii)} {s}" for s in NodeStatus)
    interrupted = fmt.run_glyph(RunStatus.INTERRUPTED, ascii=ascii)
    return (
        "Every command is also in the command palette (ctrl+p).\n"
        f"Marks (they read without colour): {nodes}  {interrupted} interrupted (a run)."
    )


class HelpScreen(ModalScreen[None]):
    """Every key, where it works and what it does. `escape`, `?` or `q` closes it."""

    CSS_PATH = "help.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "close", "Close"),
    ]

    def __init__(self, *, ascii: bool = False, db_path: str = "", pipelines_dir: str = "") -> None:
        super().__init__()
        self._ascii = ascii
        self._where = f"database: {db_path}\npipelines: {pipelines_dir}" if db_path else ""

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body"):
            yield Label("Interlock - keys", id="help-title")
            yield Static(keys_table(), id="help-keys")
            yield Static(marks_text(ascii=self._ascii), id="help-marks")
            if self._where:
                yield Static(self._where, id="help-where")

    def action_close(self) -> None:
        self.dismiss(None)
