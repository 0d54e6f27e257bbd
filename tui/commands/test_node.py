"""`interlock test FILE NODE [--inputs-from RUN] [--input JSON] [--param K=V]... [--record]`.

Contract (DESIGN section 6): runs one node of FILE alone (`engine.single_node`), its inputs the
outputs its needs produced in RUN, or given as a JSON object by need id (`--input` wins per
need). Its log and progress stream on stderr; its output is printed on stdout as one JSON line
(on failure too, when the node reported one). Exit 0 when the node succeeds, 1 when it does not,
4 when SIGINT, SIGTERM or SIGHUP cancelled it (as `interlock run` exits on a cancelled run: a
second signal forces); bad input (unknown node, missing inputs, bad JSON, unknown run) is one
sentence and exit 2. Like `run`, the process is a child subreaper: nothing the node started
outlives it (`engine.containment`).
Params: the source run's, overlaid with `--param`; without a source, the pipeline's defaults.

Nothing is written to the store unless `--record`: then it is a normal run in the store (the run
id first on stdout, as `interlock run` prints it), `run.created` carries `test_of: {run, node}`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from tui.cli_common import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    _err,
    _find_run,
    _folder_of,
    _load,
    _open_store,
    _parse_params,
    _say,
)
from tui.cli_run import _Progress, cancel_on_signals
from tui.escape import printable

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

    from engine.events import Event
    from engine.executor import Executor
    from engine.spec import Pipeline
    from engine.state import RunState


class _LogPrinter(_Progress):
    """Progress lines of the node under test, and its log lines as they come, on stderr."""

    def __init__(self, node_id: str) -> None:
        super().__init__()
        self._node_id = node_id

    def publish_all(self, events: Sequence[Event]) -> None:
        for event in events:
            self.publish(event)

    def publish(self, event: Event) -> None:
        if event.node_id != self._node_id and event.event_type != "run.completed":
            return
        if event.event_type == "node.log":
            _err(printable((event.data or {}).get("line", "")))
            return
        if event.event_type != "run.completed":
            super().publish(event)


def _given_inputs(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--input is not valid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(value, dict):
        raise UsageError('--input must be a JSON object by need id, e.g. {"extract": {"rows": 3}}')
    return value


async def cmd_test(args: argparse.Namespace) -> int:
    from engine.manager import resolve_params
    from engine.single_node import SingleNodeError, check_unrecorded, inputs_for

    pipeline = _load(args.file)
    given = _given_inputs(args.input)
    source = None
    if args.inputs_from:
        async with _open_store(args, create=False, read=True) as store:
            row = await _find_run(store, args.inputs_from)
            source = await store.fold_run(row.run_id)
        if source.pipeline_id != pipeline.id:
            raise UsageError(
                f"run {source.run_id} is of pipeline '{source.pipeline_id}', not "
                f"'{pipeline.id}'; its outputs are not this pipeline's inputs"
            )
    try:
        if not args.record:
            check_unrecorded(pipeline, args.node)
        inputs = inputs_for(pipeline, args.node, source=source, given=given)
    except SingleNodeError as exc:
        raise UsageError(str(exc)) from None
    base = {k: v for k, v in (source.params if source else {}).items() if k in pipeline.params}
    try:
        params = resolve_params(pipeline, {**base, **_parse_params(args.param)})
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    search_path = _folder_of(args.file)
    source_run = source.run_id if source else None
    from engine.containment import become_subreaper, kill_adopted

    become_subreaper()  # what the node's command leaves behind comes back to us, to be killed
    try:
        if args.record:
            state = await _recorded(args, pipeline, inputs, params, source_run, search_path)
        else:
            state = await _alone(args.node, pipeline, inputs, params, source_run, search_path)
    finally:
        kill_adopted()  # the node is over: its unmarked escapees go with it
    node = state.nodes[args.node]
    if node.output is not None:
        _say(json.dumps(node.output, separators=(",", ":"), default=str))
    if node.state.value == "succeeded":
        return EXIT_OK
    if node.state.value not in _SHOWN:  # its progress line said it already otherwise
        _err(printable(f"{args.node} {node.state.value}" + (
            f": {node.reason}" if node.reason else "")))
    return EXIT_CANCELLED if state.state.value == "cancelled" else EXIT_FAILED


# The node states whose event prints a progress line (`_LogPrinter`).
_SHOWN = frozenset({"failed", "timed_out", "skipped", "cancelled"})


async def _alone(
    node_id: str,
    pipeline: Pipeline,
    inputs: dict[str, Any],
    params: dict[str, Any],
    source_run: str | None,
    search_path: str,
) -> RunState:
    from engine.single_node import run_alone

    executors: list[Executor] = []

    def cancel(reason: str) -> None:
        for executor in executors:
            executor.cancel(reason, "cli")

    def force() -> None:
        for executor in executors:
            executor.force()

    remove = cancel_on_signals("the test", cancel, force)
    try:
        return await run_alone(
            pipeline, node_id, params=params, inputs=inputs, source_run=source_run,
            sinks=[_LogPrinter(node_id)], search_path=search_path,
            on_executor=executors.append,
        )
    finally:
        remove()


async def _recorded(
    args: argparse.Namespace,
    pipeline: Pipeline,
    inputs: dict[str, Any],
    params: dict[str, Any],
    source_run: str | None,
    search_path: str,
) -> RunState:
    from engine.manager import RunManager
    from engine.single_node import seed_events, under_test

    pipeline = under_test(pipeline, args.node)
    seed = seed_events(
        pipeline, args.node, params=params, inputs=inputs, source_run=source_run,
        search_path=search_path,
    )
    async with (
        _open_store(args) as store,
        RunManager(store=store, sinks=[_LogPrinter(args.node)]) as manager,
    ):
        handle = await manager.start_seeded(pipeline, seed, search_path=search_path)
        _say(handle.run_id)
        remove = cancel_on_signals(
            "the test",
            lambda reason: manager.cancel(handle.run_id, reason, actor="cli"),
            handle.executor.force,
        )
        try:
            return await handle
        finally:
            remove()
