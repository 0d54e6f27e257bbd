"""One node alone (`interlock test`): its inputs from a stored run or given, nothing else runs.

Contract:
- `inputs_for(pipeline, node_id, source=..., given=...)` works out the node's inputs: for each of
  its needs, the output given (`given[need]`) or, else, the output that need produced in the
  source run. A need with neither, a need that did not succeed in the source, or a given input
  the node does not need raises `SingleNodeError` with one sentence naming the node and what it
  needs.
- `seed_events(...)` are the first events of a run of only that node: `run.created` (data
  `test_of: {"run": source or null, "node": id}`), then each need `node.succeeded` with its
  input as output and `data.reused_from` (the source run, or `"given"`) at attempt 0 (no work
  done), then every other node `node.skipped` with reason `not_under_test`. An executor started
  from `fold(seed)` runs the node under test and nothing else.
- `under_test(pipeline, node_id)` is the pipeline the executor runs: the node's `when` is
  cleared and its trigger is `all_done` (its inputs are given, so no branch or rule can skip
  it), and the `notify:` targets are dropped (a test pages nobody).
- `check_unrecorded(pipeline, node_id)` refuses an approval node (`SingleNodeError`): without
  a store nobody could decide it.
- `run_alone(...)` runs it without a store (nothing is recorded anywhere; breakers are fresh,
  so a stored open breaker does not refuse it), publishing events to the sinks given.
  Recording goes through `RunManager.start_seeded` instead, as a normal run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.errors import InterlockError
from engine.events import Event, EventType, new_event_id, new_id, utc_now_iso
from engine.state import NodeStatus, fold

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from engine.breaker import BreakerRegistry
    from engine.bus import EventSink
    from engine.executor import Executor
    from engine.spec import Pipeline
    from engine.state import RunState

NOT_UNDER_TEST = "not_under_test"


class SingleNodeError(InterlockError):
    """The node cannot run alone as asked (unknown node, missing or unexpected inputs)."""


class MissingInputsError(SingleNodeError):
    """Needs of the node have no output to give it. The message says what to do with the
    CLI's flags; `missing` (need id, its state in the source run, or None without a source)
    lets another front end (the console) say it in its own terms."""

    def __init__(self, message: str, node_id: str, missing: list[tuple[str, str | None]]) -> None:
        super().__init__(message)
        self.node_id = node_id
        self.missing = missing


class ApprovalNotTestableError(SingleNodeError):
    """The node is an approval: only a stored run can receive its decision."""

    def __init__(self, message: str, node_id: str) -> None:
        super().__init__(message)
        self.node_id = node_id


def needs_of(pipeline: Pipeline, node_id: str) -> tuple[str, ...]:
    try:
        node = pipeline.node(node_id)
    except KeyError:
        known = ", ".join(n.id for n in pipeline.nodes)
        raise SingleNodeError(
            f"pipeline '{pipeline.id}' has no node '{node_id}' (its nodes: {known})"
        ) from None
    return pipeline.needs_of(node)


def check_unrecorded(pipeline: Pipeline, node_id: str) -> None:
    """An approval waits for a decision that only a stored run can receive: refuse it here."""
    needs_of(pipeline, node_id)
    if pipeline.node(node_id).type == "approval":
        raise ApprovalNotTestableError(
            f"node '{node_id}' is an approval: it waits for a decision, which only a stored run "
            f"can receive; test it with --record and decide it with `interlock approve RUN "
            f"{node_id}`",
            node_id,
        )


def inputs_for(
    pipeline: Pipeline,
    node_id: str,
    *,
    source: RunState | None = None,
    given: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The node's inputs by need id; raises `SingleNodeError` naming what is missing."""
    needs = needs_of(pipeline, node_id)
    given = dict(given or {})
    unexpected = sorted(set(given) - set(needs))
    if unexpected:
        wanted = ", ".join(needs) if needs else "no inputs"
        raise SingleNodeError(
            f"node '{node_id}' does not need {', '.join(repr(u) for u in unexpected)} "
            f"(it needs: {wanted})"
        )
    inputs: dict[str, Any] = {}
    missing: list[str] = []
    lacking: list[tuple[str, str | None]] = []
    for need in needs:
        if need in given:
            inputs[need] = given[need]
            continue
        node = source.nodes.get(need) if source is not None else None
        if node is not None and node.state is NodeStatus.SUCCEEDED:
            inputs[need] = node.output if node.output is not None else {}
        elif source is not None:
            state = node.state.value if node is not None else "not in that run"
            missing.append(f"'{need}' ({state} in run {source.run_id})")
            lacking.append((need, state))
        else:
            missing.append(f"'{need}'")
            lacking.append((need, None))
    if missing:
        raise MissingInputsError(
            f"node '{node_id}' needs the output of {', '.join(missing)}: take it from a run "
            f"where it succeeded with --inputs-from RUN, or give it with --input "
            f"'{{\"{missing[0].split(chr(39))[1]}\": {{...}}}}'",
            node_id,
            lacking,
        )
    return inputs


def under_test(pipeline: Pipeline, node_id: str) -> Pipeline:
    """The pipeline as a test runs it: the node under test starts whatever its inputs say (no
    `when`, trigger `all_done`: a condition input on the other branch does not skip it) and no
    `notify:` (a test pages nobody, recorded or not)."""
    node = pipeline.node(node_id)
    alone = node.model_copy(update={"when": None, "trigger": "all_done"})
    nodes = tuple(alone if n.id == node_id else n for n in pipeline.nodes)
    return pipeline.model_copy(update={"notify": (), "nodes": nodes})


def seed_events(
    pipeline: Pipeline,
    node_id: str,
    *,
    params: Mapping[str, Any],
    inputs: Mapping[str, Any],
    source_run: str | None,
    run_id: str | None = None,
    search_path: str | None = None,
    actor: str = "cli",
    now: Callable[[], str] = utc_now_iso,
) -> list[Event]:
    """The events a run of only `node_id` starts from (see the module docstring)."""
    run_id = run_id or new_id()
    events: list[Event] = []

    def add(event_type: str, **fields: Any) -> None:
        events.append(
            Event(new_event_id(), len(events) + 1, event_type, run_id, now(), **fields)
        )

    created: dict[str, Any] = {
        "pipeline_id": pipeline.id,
        "definition": pipeline.snapshot(),
        "params": dict(params),
        "test_of": {"run": source_run, "node": node_id},
    }
    if search_path:
        created["search_path"] = search_path
    add(EventType.RUN_CREATED, actor=actor, attempt=1, data=created)
    reused_from = source_run or "given"
    for need, output in inputs.items():
        add(
            EventType.NODE_SUCCEEDED,
            actor=actor,
            attempt=0,
            node_id=need,
            reason=f"input for testing {node_id}",
            data={"output": output, "reused_from": reused_from},
        )
    for node in pipeline.nodes:
        if node.id != node_id and node.id not in inputs:
            add(EventType.NODE_SKIPPED, actor=actor, attempt=0, node_id=node.id,
                reason=NOT_UNDER_TEST)
    return events


def executor_for(
    pipeline: Pipeline,
    seed: Sequence[Event],
    *,
    sinks: Sequence[EventSink] = (),
    search_path: str | None = None,
    breakers: BreakerRegistry | None = None,
) -> Executor:
    """An executor that goes on from `seed` (already published): it runs the node under test.
    Without `breakers`, fresh ones: a breaker stored open does not refuse a test."""
    from engine.breaker import BreakerRegistry
    from engine.executor import Executor

    state = fold(seed)
    return Executor(
        pipeline,
        run_id=state.run_id,
        params=state.params,
        sinks=sinks,
        breakers=breakers if breakers is not None else BreakerRegistry(),
        search_path=search_path,
        state=state,
    )


async def run_alone(
    pipeline: Pipeline,
    node_id: str,
    *,
    params: Mapping[str, Any],
    inputs: Mapping[str, Any],
    source_run: str | None = None,
    sinks: Sequence[EventSink] = (),
    search_path: str | None = None,
    on_executor: Callable[[Executor], None] | None = None,
) -> RunState:
    """Run the node alone, recording nothing; the final state (the node's is `nodes[node_id]`).

    `on_executor` is handed the executor before it runs (to cancel it on a signal)."""
    check_unrecorded(pipeline, node_id)
    pipeline = under_test(pipeline, node_id)
    seed = seed_events(
        pipeline, node_id, params=params, inputs=inputs, source_run=source_run,
        search_path=search_path,
    )
    for sink in sinks:
        for event in seed:
            sink.publish(event)
    executor = executor_for(pipeline, seed, sinks=sinks, search_path=search_path)
    if on_executor is not None:
        on_executor(executor)
    return await executor.execute()
