"""PipelineTable: the pipeline files found, each with its validation badge (and, for a
scheduled pipeline, when `interlock serve` fires it next)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.widgets import DataTable

from tui.widgets.vim import VIM_TABLE_BINDINGS

if TYPE_CHECKING:
    from collections.abc import Sequence

    from textual.binding import BindingType

    from engine.spec import Pipeline
    from tui.pipeline_folder import PipelineEntry


def badge(entry: PipelineEntry, *, ascii: bool) -> Text:
    if entry.valid:
        return Text(("+" if ascii else "✔") + " valid", style="green")
    count = len(entry.issues) or 1
    mark = "X" if ascii else "✖"
    return Text(f"{mark} {count} error{'s' if count != 1 else ''}", style="bold red")


def next_fire_label(pipeline: Pipeline, now: datetime) -> str | None:
    """`next 02:00:00 UTC` (today) or `next Dec 08 02:00 UTC`: the pipeline's earliest next
    schedule fire after `now`; None without a schedule."""
    if not pipeline.schedule:
        return None
    from engine.schedule import next_fire

    when = min(next_fire(entry, now) for entry in pipeline.schedule)
    if when.date() == now.astimezone(UTC).date():
        return f"next {when:%H:%M:%S} UTC"
    return f"next {when:%b %d %H:%M} UTC"


class PipelineTable(DataTable[Text]):
    """Pipelines, one row each; `enter` on a valid one launches it (`DataTable.RowSelected`)."""

    BINDINGS: ClassVar[list[BindingType]] = VIM_TABLE_BINDINGS

    DEFAULT_CSS = """
    PipelineTable {
        height: auto;
        overflow-x: hidden;
    }
    """

    def __init__(self, *, ascii: bool = False, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row")
        self.ascii = ascii
        self._entries: list[PipelineEntry] = []

    def on_mount(self) -> None:
        self.add_column("Pipeline", key="pipeline", width=16)
        self.add_column("Status", key="status", width=10)
        self.add_column("Nodes", key="nodes", width=5)
        self.add_column("Description", key="description", width=self._about_width())

    def _about_width(self) -> int:
        # What is left of the screen after the other columns and the cell padding.
        return max(10, self.app.size.width - 16 - 10 - 5 - 2 * 4 - 2)

    def _cut(self, about: str) -> str:
        # Rich's ellipsis is a Unicode one: with --ascii the cut is made here, with "...".
        width = self._about_width()
        if not self.ascii or len(about) <= width:
            return about
        return about[: max(0, width - 3)] + "..."

    @property
    def selected_entry(self) -> PipelineEntry | None:
        if not 0 <= self.cursor_row < len(self._entries):
            return None
        return self._entries[self.cursor_row]

    def show(self, entries: Sequence[PipelineEntry]) -> None:
        keep = self.cursor_row
        self._entries = list(entries)
        self.clear()
        for entry in entries:
            pipeline = entry.pipeline
            nodes = str(len(pipeline.nodes)) if pipeline is not None else "-"
            about = (pipeline.description or pipeline.label) if pipeline else entry.path.name
            fires = next_fire_label(pipeline, datetime.now(UTC)) if pipeline else None
            if fires:
                about = f"{fires} - {about or ''}" if self.ascii else f"{fires} · {about or ''}"
            text = Text(self._cut(about or ""), style="dim", no_wrap=True, overflow="ellipsis")
            if fires:
                text.stylize("cyan", 0, len(fires))
            self.add_row(
                Text(entry.name, style="bold"),
                badge(entry, ascii=self.ascii),
                Text(nodes, justify="right"),
                text,
                key=str(entry.path),
            )
        if self._entries:
            self.move_cursor(row=min(max(keep, 0), len(self._entries) - 1), animate=False)
