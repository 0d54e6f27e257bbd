"""Retry from failure: a new run that reuses what an old run got right and runs the rest.

Contract:
- `plan_retry(state, pipeline, nodes)` is pure. It refuses (`RetryRefusedError`, one sentence)
  a run that has not finished (an interrupted run is resumed, not retried), a node the run does
  not have, and a succeeded run with no node named (nothing would run). Otherwise the nodes to
  run again are those that did not succeed (failed, timed out, cancelled, never started; a
  skipped node is decided again, its parents being what they were), the named `nodes`, and
  everything downstream of any of those; every other succeeded node is reused.
- Why downstream of every re-run node, not just of the failed ones: a node that succeeded
  downstream of a failure (`all_done`, `one_failed`, an optional parent) saw that failure; once
  the failed node runs again its inputs differ, so its old output is no longer its output.
- `start_retry` starts the new run through `RunManager.start`: `run.created` carries
  `retry_of` (the old run id, indexed by the store so the old run lists its retries), then each
  reused node is one `node.succeeded` with attempt 0, the old output and `data.reused_from`, and
  no `node.started` (no work, no time), before the run starts running the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.errors import InterlockError
from engine.graph import Graph
from engine.lease import shown_state
from engine.state import NodeStatus, RunStatus

if TYPE_CHECKING:
    from collections.abc import Sequence

    from engine.executor import Executor
    from engine.manager import RunHandle, RunManager
    from engine.spec import Pipeline
    from engine.state import RunState
    from engine.store import Store

__all__ = ["RetryPlan", "RetryRefusedError", "plan_retry", "preview_retry", "start_retry"]

# Nodes whose old state does not make them run again by itself (a skipped node is decided again
# without being a reason to re-run what is downstream of it).
_KEPT = (NodeStatus.SUCCEEDED, NodeStatus.SKIPPED)


class RetryRefusedError(InterlockError):
    """The run cannot be retried (not finished, an unknown node, nothing to run). `why` says
    which ("interrupted", "unfinished", "unknown_node", "nothing"), for callers that word it
    their own way (the HTTP API names no CLI flag); `unknown` lists the unknown nodes."""

    def __init__(self, message: str, why: str = "", unknown: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.why = why
        self.unknown = tuple(unknown)


@dataclass(frozen=True)
class RetryPlan:
    """What a retry of `source` does: the nodes it reuses and those it runs, in graph order."""

    source: str
    reused: tuple[str, ...]
    rerun: tuple[str, ...]


def plan_retry(state: RunState, pipeline: Pipeline, nodes: Sequence[str] = ()) -> RetryPlan:
    """The nodes a retry of the finished run `state` reuses and runs again (see the module)."""
    run_id = state.run_id
    if not state.is_terminal:
        if state.state is RunStatus.INTERRUPTED:
            raise RetryRefusedError(
                f"run {run_id} is interrupted, not finished; resume it instead "
                f"(`interlock resume {run_id}`)", "interrupted"
            )
        raise RetryRefusedError(
            f"run {run_id} is {state.state.value}; only a finished run can be retried",
            "unfinished",
        )
    graph = Graph.from_pipeline(pipeline)
    unknown = [n for n in nodes if n not in graph]
    if unknown:
        raise RetryRefusedError(
            f"run {run_id} has no node {', '.join(unknown)} (its nodes: {', '.join(graph.order)})",
            "unknown_node", unknown,
        )
    roots = {n for n in graph.order if _old_state(state, n) not in _KEPT} | set(nodes)
    if not roots and state.state is RunStatus.SUCCEEDED:
        raise RetryRefusedError(
            f"run {run_id} succeeded: a retry would run nothing; name a node to run again "
            "(`--node N`)", "nothing",
        )
    rerun = set(roots)
    for root in roots:
        rerun |= graph.descendants(root)
    reused = tuple(
        n for n in graph.order if n not in rerun and _old_state(state, n) is NodeStatus.SUCCEEDED
    )
    return RetryPlan(run_id, reused, tuple(n for n in graph.order if n not in reused))


def _old_state(state: RunState, node_id: str) -> NodeStatus:
    node = state.nodes.get(node_id)
    return node.state if node is not None else NodeStatus.PENDING


async def _finished_state(store: Store, run_id: str) -> RunState:
    """The run's folded state, `interrupted` when its lease says so (worked out, not written:
    reading a run never writes to it), so a run whose owner died is refused as interrupted
    (resume it), not as running."""
    state = await store.fold_run(run_id)
    if not state.is_terminal:
        row = await store.run_row(run_id)
        if row is not None and shown_state(row) == RunStatus.INTERRUPTED.value:
            state.state = RunStatus.INTERRUPTED
    return state


async def preview_retry(store: Store, run_id: str, nodes: Sequence[str] = ()) -> RetryPlan:
    """What `start_retry` would do now (the console shows it before asking)."""
    from engine.control import pipeline_from_state

    state = await _finished_state(store, run_id)
    return plan_retry(state, pipeline_from_state(state), nodes)


async def start_retry(
    manager: RunManager,
    store: Store,
    run_id: str,
    *,
    nodes: Sequence[str] = (),
    actor: str = "engine",
    search_path: str | None = None,
) -> RunHandle:
    """Start the retry of `run_id` in `manager`; returns the new run's handle at once."""
    from engine.control import pipeline_from_state, stored_search_path

    if manager.is_running(run_id):
        raise RetryRefusedError(f"run {run_id} is still running in this process")
    state = await _finished_state(store, run_id)
    pipeline = pipeline_from_state(state)
    plan = plan_retry(state, pipeline, nodes)
    outputs = {n: state.nodes[n].output for n in plan.reused}

    def reuse(executor: Executor) -> None:
        for node_id, output in outputs.items():
            executor.reuse(node_id, output, reused_from=run_id)

    return await manager.start(
        pipeline,
        params=state.params,
        simulate=state.simulate,
        retry_of=run_id,
        actor=actor,
        search_path=search_path or await stored_search_path(store, run_id),
        prepare=reuse,
    )
