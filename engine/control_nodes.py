"""The built-in control nodes (condition, delay, approval, trigger, parallel) and actions.

Contract: a condition evaluates its expression over the params and the succeeded outputs
(`{"result": bool}`; a non-finite value is an error); a delay sleeps through the run's injected
sleep; an approval waits for a decision and fails as `rejected` when it is not approved; a
trigger outputs the params, parallel nothing; an action renders its message and artifact path,
hashes the artifact (a regular file) and reports it as `artifact.emitted`.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import NodeError
from engine.expr import ExpressionError, compile_expression, compile_template
from engine.strictjson import non_finite_path

if TYPE_CHECKING:
    from collections.abc import Mapping

    from engine.nodes import NodeContext
    from engine.spec import (
        ActionNode,
        ConditionNode,
        DelayNode,
        NodeBase,
    )


def expression_namespace(
    params: Mapping[str, Any], outputs: Mapping[str, Any]
) -> Mapping[str, Any]:
    # A view, not a copy: a condition reads a few outputs of a run that may have thousands.
    return collections.ChainMap({"params": params}, outputs)  # type: ignore[arg-type]


async def run_condition(node: ConditionNode, ctx: NodeContext) -> dict[str, Any]:
    namespace = expression_namespace(ctx.params, ctx.outputs)
    try:
        value = compile_expression(node.expr).evaluate(namespace)
    except ExpressionError as exc:
        if ctx.simulate:
            ctx.log("interlock", f"simulate: '{node.expr}' not evaluable ({exc}); true branch")
            return {"result": True, "simulated": True}
        raise NodeError("error", f"expression failed: {exc}") from None
    if non_finite_path(value) is not None:  # NaN is truthy: it must not pick a branch
        raise NodeError("error", f"expression '{node.expr}' gave {value!r}, not a finite value")
    return {"result": bool(value)}


async def run_delay(node: DelayNode, ctx: NodeContext) -> dict[str, Any]:
    await ctx.sleep(node.duration)
    return {"waited": node.duration}


async def run_approval(node: NodeBase, ctx: NodeContext) -> dict[str, Any]:
    if ctx.wait_for_decision is None:
        raise NodeError("config", "approvals need a run manager")
    decision = await ctx.wait_for_decision()
    if decision.get("decision") != "approved":
        raise NodeError("rejected", decision.get("reason") or "rejected")
    return {"approved": True, "by": decision.get("actor"), "reason": decision.get("reason")}


async def run_trigger(node: NodeBase, ctx: NodeContext) -> dict[str, Any]:
    return dict(ctx.params)


async def run_parallel(node: NodeBase, ctx: NodeContext) -> dict[str, Any]:
    return {}


def _artifact_problem(path: Path) -> str | None:
    """Why `path` cannot be an artifact (hashing a FIFO would wait forever), or None."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "not found"
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    if stat.S_ISFIFO(mode):
        return "is a FIFO, not a file"
    if not stat.S_ISREG(mode):
        return "is not a regular file"
    return None


def _sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


async def run_action(node: ActionNode, ctx: NodeContext) -> dict[str, Any]:
    namespace = expression_namespace(ctx.params, ctx.outputs)
    output: dict[str, Any] = {}
    try:
        if node.message is not None:
            output["message"] = compile_template(node.message).render(namespace)
        artifact = compile_template(node.artifact).render(namespace) if node.artifact else None
    except ExpressionError as exc:
        raise NodeError("error", f"template failed: {exc}") from None
    if output.get("message"):
        ctx.log("message", output["message"])
    if artifact is not None:
        path = Path(artifact)
        if not path.is_absolute() and ctx.search_path is not None:
            path = Path(ctx.search_path) / path
        problem = _artifact_problem(path)
        if problem is not None:
            raise NodeError("error", f"artifact {path} {problem}")
        try:
            sha, size = await asyncio.to_thread(_sha256, path)
        except OSError as exc:  # unreadable though it stats as a file (`/proc/self/mem`: EIO)
            raise NodeError(
                "error", f"artifact {path} cannot be read: {exc.strerror or exc}"
            ) from None
        output.update({"artifact": str(path), "sha256": sha, "size": size})
        ctx.emit_artifact({"path": str(path), "sha256": sha, "size": size})
    return output

