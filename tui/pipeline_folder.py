"""The pipelines folder: each file, loaded and validated, or what is wrong with it.

Read by the console (its pipelines table, `tui.bridge`) and by `interlock serve` (its API and
its schedules, `tui.serve`); blocking (each caller runs it in a thread). No Textual here: the
service imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tui.settings import pipeline_files

if TYPE_CHECKING:
    from pathlib import Path

    from engine.errors import ValidationIssue
    from engine.spec import Pipeline

__all__ = ["PipelineEntry", "scan_pipelines"]


@dataclass(frozen=True)
class PipelineEntry:
    """A pipeline file found in the pipelines folder, valid (`pipeline`) or not (`issues`, or
    `error` for a file that could not be read at all)."""

    path: Path
    pipeline: Pipeline | None
    issues: tuple[ValidationIssue, ...] = ()
    error: str | None = None

    @property
    def valid(self) -> bool:
        return self.pipeline is not None

    @property
    def name(self) -> str:
        return self.pipeline.id if self.pipeline is not None else self.path.stem

    @property
    def problems(self) -> tuple[str, ...]:
        """What is wrong with the file, a sentence each (none for a valid one)."""
        return tuple(str(issue) for issue in self.issues) + ((self.error,) if self.error else ())


def scan_pipelines(directory: Path) -> list[PipelineEntry]:
    """Load and validate every pipeline file of `directory`."""
    from engine.errors import PipelineValidationError
    from engine.loader import load_file

    entries: list[PipelineEntry] = []
    for path in pipeline_files(directory):
        try:
            entries.append(PipelineEntry(path, load_file(path)))
        except PipelineValidationError as exc:
            entries.append(PipelineEntry(path, None, tuple(exc.issues)))
        except Exception as exc:  # an unreadable file is shown as invalid, not a crash
            entries.append(PipelineEntry(path, None, (), error=str(exc)))
    return entries
