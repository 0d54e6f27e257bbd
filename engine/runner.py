"""The runner seam: where a node's work runs.

Contract: a `Runner` starts one attempt of a work node (`engine.traits`: shell, python, agent,
action and plugin types; control nodes run in the attempt path itself) and returns an
awaitable of its output, a JSON object. The awaitable raises what a handler raises
(`engine.nodes`: `NodeError`, `TransientError`, anything else as `error`). Cancelling the task
that awaits it cancels the work: the runner gives the work `ctx.cleanup_grace` seconds to stop,
then forces it, and lets the cancellation through once the work is over. The attempt path
(`engine.attempt`) owns everything around the call: breaker, events, the timeout (a
cancellation it turns into `timeout`) and retries. `start` may raise `NodeError` at once
(`config`: the node type has no handler).

`LocalRunner`, the default, is this process: handlers awaited in the attempt's task, shell
commands in process groups of their own, sync callables in threads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from engine.nodes import BUILTIN_HANDLERS, handler_for

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from engine.nodes import NodeContext
    from engine.spec import NodeBase

__all__ = ["LocalRunner", "Runner"]


class Runner(Protocol):
    """Starts one attempt of a work node: an awaitable of its output (see the module)."""

    def start(self, node: NodeBase, ctx: NodeContext) -> Awaitable[dict[str, Any]]: ...


class LocalRunner:
    """Today's behaviour: the node type's handler, awaited in the attempt's own task."""

    def start(self, node: NodeBase, ctx: NodeContext) -> Awaitable[dict[str, Any]]:
        handler = BUILTIN_HANDLERS.get(node.type) or handler_for(node.type)
        return handler(node, ctx)
