"""PipelineTable: the pipeline files found, each with its validation badge (and, for a
scheduled pipeline, when `interlock serve` fires it next)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.widgets import DataTable

from tui.widgets.vim import VIM_TABLE_BINDINGS

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from textual.binding import BindingType

    from engine.spec import Pipeline
    from tui.pipeline_folder import PipelineEntry


def badge(entry: PipelineEntry, *, ascii: bool) -> Text:
    if entry.valid:
        return Text(("+" if ascii else "✔") + " valid", style="green")
    count = len(entry.issues) or 1
    mark = "X" if ascii else "✖"
    return Text(f"{mark} {count} error{'s' if count != 1 else ''}", style="bold red")


def next_fire_at(pipeline: Pipeline, now: datetime) -> datetime | None:
    """The pipeline's earliest schedule fire after `now` (UTC); None without a schedule."""
    if not pipeline.schedule:
        return None
    from engine.schedule import next_fire

    return min(next_fire(entry, now) for entry in pipeline.schedule)


def next_fire_label(pipeline: Pipeline, now: datetime) -> str | None:
    """`next 02:00:00 UTC` (today) or `next Dec 08 02:00 UTC`: the pipeline's earliest next
    schedule fire after `now`; None without a schedule."""
    when = next_fire_at(pipeline, now)
    return None if when is None else fire_label(when, now)


def fire_label(when: datetime, now: datetime) -> str:
    if when.date() == now.astimezone(UTC).date():
        return f"next {when:%H:%M:%S} UTC"
    return f"next {when:%b %d %H:%M} UTC"


class PipelineTable(DataTable[Text]):
    """Pipelines, one row each; `enter` on a valid one launches it (`DataTable.RowSelected`).

    A scheduled pipeline's next fire is worked out again once the one shown has passed (looked
    at every second against `clock`, the console's clock in epoch seconds).
    """

    BINDINGS: ClassVar[list[BindingType]] = VIM_TABLE_BINDINGS

    DEFAULT_CSS = """
    PipelineTable {
        height: auto;
        overflow-x: hidden;
    }
    """

    def __init__(
        self,
        *,
        ascii: bool = False,
        id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(id=id, cursor_type="row")
        self.ascii = ascii
        self.clock = clock
        self._entries: list[PipelineEntry] = []
        self._next_fire: float | None = None  # the earliest fire shown (epoch seconds)

    def on_mount(self) -> None:
        self.add_column("Pipeline", key="pipeline", width=16)
        self.add_column("Status", key="status", width=10)
        self.add_column("Nodes", key="nodes", width=5)
        self.add_column("Description", key="description", width=self._about_width())
        self.set_interval(1.0, self._fires_passed)

    def _fires_passed(self) -> None:
        if self._next_fire is not None and self.clock() >= self._next_fire:
            self._show_about()

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
        self._next_fire = None
        now = datetime.fromtimestamp(self.clock(), UTC)
        for entry in entries:
            pipeline = entry.pipeline
            nodes = str(len(pipeline.nodes)) if pipeline is not None else "-"
            self.add_row(
                Text(entry.name, style="bold"),
                badge(entry, ascii=self.ascii),
                Text(nodes, justify="right"),
                self._about(entry, now),
                key=str(entry.path),
            )
        if self._entries:
            self.move_cursor(row=min(max(keep, 0), len(self._entries) - 1), animate=False)

    def _show_about(self) -> None:
        """The descriptions again, with the next fires from now (the rows stay as they are)."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        self._next_fire = None
        for entry in self._entries:
            if entry.pipeline is not None and entry.pipeline.schedule:
                self.update_cell(str(entry.path), "description", self._about(entry, now))

    def _about(self, entry: PipelineEntry, now: datetime) -> Text:
        pipeline = entry.pipeline
        about = (pipeline.description or pipeline.label) if pipeline else entry.path.name
        when = next_fire_at(pipeline, now) if pipeline else None
        fires = fire_label(when, now) if when is not None else None
        if when is not None:
            stamp = when.timestamp()
            self._next_fire = stamp if self._next_fire is None else min(self._next_fire, stamp)
        if fires:
            about = f"{fires} - {about or ''}" if self.ascii else f"{fires} · {about or ''}"
        text = Text(self._cut(about or ""), style="dim", no_wrap=True, overflow="ellipsis")
        if fires:
            text.stylize("cyan", 0, len(fires))
        return text
