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
    from engine.spec import Pipeline
    from engine.state import RunState


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
        raise CommandError(str(exc)) from None
    params: dict[str, Any] = {name: spec.default for name, spec in pipeline.params.items()}
    params.update({k: v for k, v in source.params.items() if k in pipeline.params})
    return await run_alone(
        pipeline, node_id, params=params, inputs=inputs, source_run=source.run_id,
        sinks=[sink], search_path=search_path, on_executor=on_executor,
    )
