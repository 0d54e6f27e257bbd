"""What every screen of the console is given: the bridge and the console's settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from tui.bridge import Bridge
    from tui.pipeline_folder import PipelineEntry


@dataclass
class Context:
    bridge: Bridge
    pipelines_dir: Path
    db_path: Path
    ascii: bool = False
    entries: list[PipelineEntry] = field(default_factory=list)

    def now(self) -> float:
        return self.bridge.clock()

    def entry(self, pipeline_id: str) -> PipelineEntry | None:
        for entry in self.entries:
            if entry.pipeline is not None and entry.pipeline.id == pipeline_id:
                return entry
        return None
