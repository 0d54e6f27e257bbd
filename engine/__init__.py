"""Interlock's engine: a fail-closed, event-sourced pipeline engine for asyncio.

Headless by contract: nothing here imports `textual`, `rich` or `tui` (a test and an
import-linter contract check it). Start with `load_file`, `RunManager` and `fold`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.api import PipelineBuilder, pipeline
    from engine.bus import EventSink, MemorySink
    from engine.errors import (
        InterlockError,
        NodeError,
        NodeTimeoutError,
        PipelineTimeoutError,
        PipelineValidationError,
        ResumeRefusedError,
        RunCancelledError,
        RunFailedError,
        TransientError,
        UnknownRunError,
        ValidationIssue,
    )
    from engine.events import Event, EventType
    from engine.executor import Executor
    from engine.loader import load_dict, load_file, load_text
    from engine.manager import RunHandle, RunManager
    from engine.spec import Pipeline
    from engine.state import ErrorClass, NodeState, NodeStatus, RunState, RunStatus, apply, fold

# Imported on first use: `import engine` stays cheap, so `interlock validate` starts fast and a
# module half-way through development never breaks the others.
_LAZY = {
    "ErrorClass": "engine.state",
    "Event": "engine.events",
    "EventSink": "engine.bus",
    "EventType": "engine.events",
    "Executor": "engine.executor",
    "InterlockError": "engine.errors",
    "MemorySink": "engine.bus",
    "NodeError": "engine.errors",
    "NodeState": "engine.state",
    "NodeStatus": "engine.state",
    "NodeTimeoutError": "engine.errors",
    "Pipeline": "engine.spec",
    "PipelineBuilder": "engine.api",
    "PipelineTimeoutError": "engine.errors",
    "PipelineValidationError": "engine.errors",
    "ResumeRefusedError": "engine.errors",
    "RunCancelledError": "engine.errors",
    "RunFailedError": "engine.errors",
    "RunHandle": "engine.manager",
    "RunManager": "engine.manager",
    "RunState": "engine.state",
    "RunStatus": "engine.state",
    "TransientError": "engine.errors",
    "UnknownRunError": "engine.errors",
    "ValidationIssue": "engine.errors",
    "apply": "engine.state",
    "fold": "engine.state",
    "load_dict": "engine.loader",
    "load_file": "engine.loader",
    "load_text": "engine.loader",
    "pipeline": "engine.api",
}

__version__ = "0.1.0"

__all__ = [
    "ErrorClass",
    "Event",
    "EventSink",
    "EventType",
    "Executor",
    "InterlockError",
    "MemorySink",
    "NodeError",
    "NodeState",
    "NodeStatus",
    "NodeTimeoutError",
    "Pipeline",
    "PipelineBuilder",
    "PipelineTimeoutError",
    "PipelineValidationError",
    "ResumeRefusedError",
    "RunCancelledError",
    "RunFailedError",
    "RunHandle",
    "RunManager",
    "RunState",
    "RunStatus",
    "TransientError",
    "UnknownRunError",
    "ValidationIssue",
    "__version__",
    "apply",
    "fold",
    "load_dict",
    "load_file",
    "load_text",
    "pipeline",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
