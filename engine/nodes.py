"""Node handlers: what each node type does for one attempt, and what a handler may use.

Contract: a handler is `async def handler(node, ctx) -> dict` returning the node's output, or
raising `TransientError` (class `transient`), `NodeError(error_class, reason)`, or any other
exception (class `error`). Handlers never touch the store; they report through `ctx`
(`NodeContext`: log lines, artifacts, approval waits). Timeouts and cancellation arrive as
`asyncio.CancelledError`; a handler that owns resources releases them before re-raising it,
within `ctx.cleanup_grace`. The built-in types live by job: `engine.shell` (commands in process
groups), `engine.callables` (python and agent callables), `engine.control_nodes` (condition,
delay, approval, trigger, parallel, action); this module re-exports their public names. More
types plug in through the `interlock.nodes` entry-point group: the entry point names an object
called as `await obj(node, ctx)`.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine import capture
from engine.errors import NodeError

if TYPE_CHECKING:
    from engine.spec import (
        Pipeline,
    )

from engine.callables import (
    abandoned_threads,
    register_inline,
    resolve,
    run_agent,
    run_callable,
    run_python,
)
from engine.control_nodes import (
    expression_namespace,
    run_action,
    run_approval,
    run_condition,
    run_delay,
    run_parallel,
    run_trigger,
)
from engine.shell import EX_TEMPFAIL, MAX_LINE_CHARS, MAX_LOG_LINES, MAX_OUTPUT_LINE, run_shell

__all__ = [
    "BUILTIN_HANDLERS", "EX_TEMPFAIL", "MAX_LINE_CHARS", "MAX_LOG_LINES", "MAX_OUTPUT_LINE",
    "Handler", "NodeContext", "abandoned_threads", "expression_namespace", "handler_for",
    "register_inline", "resolve", "run_action", "run_agent", "run_approval", "run_condition",
    "run_delay", "run_parallel", "run_python", "run_shell", "run_trigger", "secret_forms",
    "secret_names",
]


@dataclass
class NodeContext:
    """What a handler may know and do during one attempt."""

    run_id: str
    node_id: str
    attempt: int
    params: Mapping[str, Any]
    inputs: Mapping[str, Any]
    outputs: Mapping[str, Any]
    cleanup_grace: float
    pipeline: Pipeline
    simulate: bool = False
    search_path: str | None = None
    log: Callable[[str, str], None] = lambda stream, line: None
    emit_artifact: Callable[[dict[str, Any]], None] = lambda data: None
    wait_for_decision: Callable[[], Awaitable[dict[str, Any]]] | None = None
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    # What to mask in whatever the attempt reports: every secret of the pipeline, in each form
    # it may take in output, longest first (filled in by the executor: see `secret_forms`).
    secrets: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # facts the failure reason must mention
    # Told where a shell node's command runs (`containment.process_record`), to be stored, so
    # that whoever cancels or resumes the run after this process died can kill what is left.
    process_started: Callable[[dict[str, Any]], None] = lambda record: None

    @property
    def payload(self) -> dict[str, Any]:
        """The node input of DESIGN section 2."""
        return {
            "params": dict(self.params),
            "inputs": dict(self.inputs),
            "run_id": self.run_id,
            "node_id": self.node_id,
            "attempt": self.attempt,
        }

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "***")
        return text

    def redact_value(self, value: Any) -> Any:
        """`value` (parsed JSON) with every secret masked in its strings, keys included."""
        if not self.secrets:
            return value
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {self.redact(str(k)): self.redact_value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.redact_value(v) for v in value]
        return value


Handler = Callable[[Any, NodeContext], Awaitable[dict[str, Any]]]

def _secret_forms(secret: str) -> list[str]:
    """What to mask for one secret: itself, as it reads inside a JSON string, and each of its
    lines (a multi-line secret, e.g. a key, is printed, and so logged, line by line)."""
    forms = [secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]]
    forms += [line for line in secret.splitlines() if line.strip()]
    return list(dict.fromkeys(form for form in forms if form))


def secret_names(pipeline: Pipeline) -> tuple[str, ...]:
    """The environment variables that any node of the pipeline reads as a secret."""
    # `__dict__`, not `getattr(node, "env", {})`: on a node type without `env` that raised and
    # caught an AttributeError inside pydantic, a fifth of a 1,000-node run's plan (W10).
    return tuple(
        dict.fromkeys(
            value.from_env
            for node in pipeline.nodes
            for value in node.__dict__.get("env", _NO_ENV).values()
            if not isinstance(value, str) and value.secret
        )
    )


_NO_ENV: dict[str, Any] = {}


def secret_forms(names: Iterable[str]) -> list[str]:
    """What `NodeContext.secrets` holds for the secrets `names` as the environment has them now.

    Every secret of the pipeline is masked in every node's output: a shell node inherits the
    environment and a python node shares it, so one that does not declare a secret can still
    print it. Longest first, so that whole secrets go before the lines they contain.
    """
    forms = [
        form for name in names if (secret := os.environ.get(name)) for form in _secret_forms(secret)
    ]
    masked = list(dict.fromkeys(forms))
    masked.sort(key=len, reverse=True)
    # A line printed by a node's thread that outlived it has no node to mask it: this does.
    capture.remember_secrets(masked)
    return masked


BUILTIN_HANDLERS: dict[str, Handler] = {
    "shell": run_shell,
    "python": run_python,
    "agent": run_agent,
    "condition": run_condition,
    "delay": run_delay,
    "approval": run_approval,
    "trigger": run_trigger,
    "action": run_action,
    "parallel": run_parallel,
}


def handler_for(node_type: str) -> Handler:
    handler = BUILTIN_HANDLERS.get(node_type)
    if handler is not None:
        return handler
    from engine.registry import resolve_node_type

    try:
        plugin = resolve_node_type(node_type)
    except LookupError as exc:
        raise NodeError("config", str(exc)) from None

    async def run_plugin(node: Any, ctx: NodeContext) -> dict[str, Any]:
        return await run_callable(plugin, (node, ctx), ctx)

    return run_plugin
