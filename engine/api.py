"""Build a pipeline in Python, without YAML: for embedding and tests.

    flow = PipelineBuilder("demo")
    flow.python("extract", extract)               # async or sync callable(inputs, ctx) -> dict
    flow.python("load", load, needs=["extract"], retry={"max_attempts": 3})
    flow.condition("enough", "extract.rows > 0", needs=["extract"])
    pipeline = flow.build()                       # the same checks as a pipeline file

A callable with an importable `module:qualname` is referenced by that name (so the run's
definition snapshot can be replayed in another process); any other callable (a closure, a
lambda) is registered in this process under a generated reference.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from engine.nodes import register_inline

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from engine.spec import Pipeline

_counter = 0


def callable_ref(fn: Callable[..., Any]) -> str:
    """`module:qualname` if that finds `fn` again, else a process-local reference."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if module and qualname and "<" not in qualname:
        try:
            target: Any = importlib.import_module(module)
            for part in qualname.split("."):
                target = getattr(target, part)
            if target is fn:
                return f"{module}:{qualname}"
        except (ImportError, AttributeError):
            pass
    global _counter
    _counter += 1
    name = getattr(fn, "__name__", "fn")
    safe = "".join(c if c.isalnum() or c == "_" else "_" for c in name) or "fn"
    ref = f"interlock_inline:{safe}_{_counter}"
    register_inline(ref, fn)
    return ref


class PipelineBuilder:
    """Collects nodes, then `build()` validates them exactly like a pipeline file."""

    def __init__(self, pipeline_id: str, **settings: Any) -> None:
        self._raw: dict[str, Any] = {"id": pipeline_id, **settings, "nodes": []}

    def node(
        self, node_id: str, node_type: str, *, needs: Sequence[str] = (), **fields: Any
    ) -> str:
        entry: dict[str, Any] = {"id": node_id, "type": node_type, **fields}
        if needs:
            entry["needs"] = list(needs)
        self._raw["nodes"].append(entry)
        return node_id

    def python(self, node_id: str, fn: Callable[..., Any], **fields: Any) -> str:
        return self.node(node_id, "python", call=callable_ref(fn), **fields)

    def shell(self, node_id: str, command: str | Sequence[str], **fields: Any) -> str:
        cmd = command if isinstance(command, str) else list(command)
        return self.node(node_id, "shell", command=cmd, **fields)

    def condition(self, node_id: str, expr: str, **fields: Any) -> str:
        return self.node(node_id, "condition", expr=expr, **fields)

    def delay(self, node_id: str, duration: float | str, **fields: Any) -> str:
        return self.node(node_id, "delay", duration=duration, **fields)

    def approval(self, node_id: str, **fields: Any) -> str:
        return self.node(node_id, "approval", **fields)

    def action(self, node_id: str, **fields: Any) -> str:
        return self.node(node_id, "action", **fields)

    def build(self) -> Pipeline:
        from engine.loader import load_dict

        return load_dict(self._raw, file=f"<builder {self._raw['id']}>")


def pipeline(pipeline_id: str, **settings: Any) -> PipelineBuilder:
    return PipelineBuilder(pipeline_id, **settings)
