"""The bridge's `t`: one node of a run tested alone, in the console's loop, recording nothing.

Contract: `run_node_alone(pipeline, node_id, source, ...)` runs the node with the outputs its
needs produced in `source` (a run's folded state) and the run's params (those the pipeline still
takes), through `engine.single_node.run_alone`: nothing is written to the store, no breaker is
shared. Events go to `sink` as they happen (the screen shows them); missing inputs raise
`CommandError` with the engine's sentence. The pipeline is the file as it is now (that is what
a test is for: the edited code), else the run's stored definition.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tui.bridge.commands import CommandError

if TYPE_CHECKING:
    from collections.abc import Callable

    from engine.bus import EventSink
    from engine.executor import Executor
    from engine.single_node import SingleNodeError
    from engine.spec import Pipeline
    from engine.state import RunState


def console_sentence(error: SingleNodeError, source: RunState) -> str:
    """The engine's refusal, with what to do in the console rather than the CLI's flags."""
    from engine.single_node import ApprovalNotTestableError, MissingInputsError

    short = source.run_id[:8]
    if isinstance(error, MissingInputsError):
        needs = ", ".join(
            f"'{need}' ({state or 'no output'} in run {short})" for need, state in error.missing
        )
        which = "it" if len(error.missing) == 1 else "they"
        return (
            f"node '{error.node_id}' needs the output of {needs}: open a run of this pipeline "
            f"where {which} succeeded and press t on '{error.node_id}' there"
        )
    if isinstance(error, ApprovalNotTestableError):
        return (
            f"node '{error.node_id}' is an approval: it waits for a decision, which only a "
            "stored run can receive; launch the pipeline (l) and decide it there (a or x)"
        )
    return str(error)


async def run_node_alone(
    pipeline: Pipeline,
    node_id: str,
    source: RunState,
    *,
    sink: EventSink,
    search_path: str | None,
    on_executor: Callable[[Executor], None] | None = None,
) -> RunState:
    from engine.single_node import SingleNodeError, check_unrecorded, inputs_for, run_alone

    try:
        check_unrecorded(pipeline, node_id)
        inputs = inputs_for(pipeline, node_id, source=source)
    except SingleNodeError as exc:
        raise CommandError(console_sentence(exc, source)) from None
    params: dict[str, Any] = {name: spec.default for name, spec in pipeline.params.items()}
    params.update({k: v for k, v in source.params.items() if k in pipeline.params})
    return await run_alone(
        pipeline, node_id, params=params, inputs=inputs, source_run=source.run_id,
        sinks=[sink], search_path=search_path, on_executor=on_executor,
    )
