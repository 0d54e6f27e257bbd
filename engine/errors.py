"""Exceptions of the engine's public API.

Every failure a caller can act on has its own class; each carries the facts a message needs
(node id, timeout, completed nodes) as attributes, not only as text.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class InterlockError(Exception):
    """Base class of every error the engine raises on purpose."""


@dataclass(frozen=True)
class ValidationIssue:
    """One problem found in a pipeline definition."""

    reason: str
    file: str | None = None
    line: int | None = None
    node_id: str | None = None

    def __str__(self) -> str:
        where = self.file or "<pipeline>"
        if self.line is not None:
            where += f":{self.line}"
        node = f" node '{self.node_id}':" if self.node_id else ""
        return f"{where}:{node} {self.reason}"


class PipelineValidationError(InterlockError):
    """A pipeline definition was rejected; `issues` lists every problem found."""

    def __init__(self, issues: list[ValidationIssue]) -> None:
        self.issues = list(issues)
        super().__init__(self._message())

    def _message(self) -> str:
        if len(self.issues) == 1:
            return str(self.issues[0])
        lines = [f"{len(self.issues)} problems:"]
        lines += [f"  - {issue}" for issue in self.issues]
        return "\n".join(lines)


class TransientError(InterlockError):
    """Raised by a node's work to say "try again later": class `transient`, retried by default."""


class NodeTimeoutError(InterlockError):
    """One attempt of a node ran past its timeout."""

    def __init__(self, node_id: str, timeout: float) -> None:
        self.node_id = node_id
        self.timeout = timeout
        super().__init__(f"node '{node_id}' timed out after {timeout:g}s")


class PipelineTimeoutError(InterlockError):
    """A run reached its whole-run deadline."""

    def __init__(self, pipeline_id: str, timeout: float, completed_nodes: list[str]) -> None:
        self.pipeline_id = pipeline_id
        self.timeout = timeout
        self.completed_nodes = list(completed_nodes)
        super().__init__(
            f"pipeline '{pipeline_id}' timed out after {timeout:g}s "
            f"({len(self.completed_nodes)} nodes completed)"
        )


class RunCancelledError(InterlockError):
    """A run was cancelled before it finished."""

    def __init__(self, run_id: str, reason: str | None = None) -> None:
        self.run_id = run_id
        self.reason = reason
        super().__init__(f"run {run_id} was cancelled" + (f": {reason}" if reason else ""))


class RunFailedError(InterlockError):
    """A run ended `failed`; `failed_nodes` names the nodes whose failure decided it."""

    def __init__(self, run_id: str, failed_nodes: list[str]) -> None:
        self.run_id = run_id
        self.failed_nodes = list(failed_nodes)
        super().__init__(f"run {run_id} failed: {', '.join(failed_nodes) or 'see events'}")


class UnknownRunError(InterlockError):
    """No run with that id exists."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"no run with id '{run_id}'")


class ResumeRefusedError(InterlockError):
    """A run cannot be resumed (terminal, owned by a live process, or a gate needs an override)."""


@dataclass
class NodeError(InterlockError):
    """An attempt failed with a known error class (used inside the executor and by handlers)."""

    error_class: str
    reason: str
    output: dict[str, object] | None = field(default=None)

    def __post_init__(self) -> None:
        super().__init__(self.reason)

    def __str__(self) -> str:
        return self.reason
