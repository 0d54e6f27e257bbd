"""The pipelines folder as the service sees it: every file, loaded and validated or with its
issues. Shared by the API's pipeline routes (`tui.serve.app`) and the schedules
(`tui.serve.scheduler`), which reload it when a file changes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.errors import PipelineValidationError

if TYPE_CHECKING:
    from pathlib import Path

    from engine.spec import Pipeline

__all__ = ["PipelineFile", "scan"]


@dataclass(frozen=True)
class PipelineFile:
    path: Path
    pipeline: Pipeline | None
    issues: tuple[str, ...] = ()


def scan(directory: Path) -> list[PipelineFile]:
    """Every pipeline file of the folder, loaded and validated (blocking: run in a thread)."""
    from engine.loader import load_file
    from tui.settings import pipeline_files

    found: list[PipelineFile] = []
    for path in pipeline_files(directory):
        try:
            found.append(PipelineFile(path, load_file(path)))
        except PipelineValidationError as exc:
            found.append(PipelineFile(path, None, tuple(str(i) for i in exc.issues)))
        except Exception as exc:  # an unreadable file is listed as invalid
            found.append(PipelineFile(path, None, (str(exc),)))
    return found
