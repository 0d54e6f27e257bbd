"""The attempt path: a node's attempts, from breaker admission to its final event.

Contract (DESIGN section 4): `AttemptPath.run(step)` is the whole life of one started node, in
the node's own task: attempt after attempt until one succeeds or the retry policy
(`engine.retry.RetryDecider`, tenacity's strategies) says no more, `node.retried` with the delay
between them. Each attempt: the node's circuit breaker admits it (else it fails as
`circuit_open`), `node.started`, then the work under the node's timeout; the work of a node
that does work goes through the run's `Runner` (`engine.runner`), a built-in control node's
runs here (simulate mode replaces work with `{"simulated": true}`). The node ends with exactly
one of `node.succeeded`, `node.failed` (with `gate.failed` for a hard gate) or
`node.timed_out`; a cancellation of the task (the run stops) propagates for the driver to
record. Errors are classified here: `NodeError` keeps its class, `TransientError` is
`transient`, anything else `error`.

A node's timeout is decided here and nowhere else: `_attempt` arms it on the run's deadline
timer (`engine.deadlines.Deadlines`) around the work's awaitable and turns that deadline's
cancellation, and only that one, into `timeout` (the work gets the pipeline's `cleanup_grace`
to stop, then is forced: `NodeContext.cleanup_grace`).
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from engine.breaker import BreakerState, CircuitBreaker, CircuitOpenError
from engine.encoding import definition_shape
from engine.errors import NodeError, NodeTimeoutError, TransientError
from engine.events import EncodedData, EventType, compact_json, json_hash, stable_hash
from engine.nodes import BUILTIN_HANDLERS, Handler, NodeContext, secret_forms, secret_names
from engine.retry import RetryDecider
from engine.state import NodeState, NodeStatus
from engine.traits import traits_of

if TYPE_CHECKING:
    from engine.breaker import BreakerChange
    from engine.executor import Executor
    from engine.spec import NodeBase, Pipeline, RetryPolicy

__all__ = ["AttemptPath", "Plan", "Step", "error_class"]

_SUCCEEDED = NodeStatus.SUCCEEDED
_HALF_OPEN = BreakerState.HALF_OPEN
_EMPTY_HASH = stable_hash({})
_NOT_FIRED = 1 << 62  # `_disarm` when the deadline cancelled nothing
# Retry jitter's generator when none is given: one per process, not one per run (seeding a
# `random.Random` from the OS costs a tenth of a one-node run).
JITTER = random.Random()


@functools.lru_cache(maxsize=256)
def _started_data(timeout: float) -> tuple[EncodedData, EncodedData]:
    """`node.started`'s data for a timeout, plain and simulated: shared by every node with that
    timeout (most nodes of a pipeline share one), as encoding it per node was a third of what
    reading a 1,000-node pipeline into a plan cost (`interlock run`, W10)."""
    return (
        EncodedData.encode({"timeout": timeout}),
        EncodedData.encode({"timeout": timeout, "simulated": True}),
    )


class Step:
    """What running one node needs to know about it, read off the pipeline once."""

    __slots__ = (
        "breaker", "does_work", "handler", "hard_gate", "node_id", "parents",
        "reads_all_outputs", "retry", "spec", "started", "started_simulated", "task_name",
        "timeout",
    )

    def __init__(self, pipeline: Pipeline, node: NodeBase) -> None:
        traits = traits_of(node.type)
        self.spec = node
        self.node_id = node.id
        self.parents: tuple[str, ...] = pipeline.graph.parents[node.id]
        self.timeout = pipeline.timeout_for(node)
        self.retry: RetryPolicy = pipeline.retry_for(node)
        self.breaker: tuple[str, int, float] | None = (
            pipeline.breaker_terms(node) if node.has_breaker else None
        )
        self.reads_all_outputs = traits.reads_all_outputs
        self.does_work = traits.does_work
        self.hard_gate = node.gate == "hard"
        self.task_name = f"interlock:{node.id}"
        # A control node's handler runs here; a work node's work goes through the runner.
        self.handler: Handler | None = None if traits.does_work else BUILTIN_HANDLERS[node.type]
        # `node.started`'s data, shared by every attempt (event data is read-only).
        self.started, self.started_simulated = _started_data(self.timeout)


class Plan:
    """What the executor derives from a pipeline alone, worked out once per pipeline object
    (`of`) rather than once per run: pipelines are frozen models, so it cannot go stale."""

    __slots__ = ("secret_names", "snapshot", "snapshot_json", "steps")

    def __init__(self, pipeline: Pipeline) -> None:
        self.steps = {node.id: Step(pipeline, node) for node in pipeline.nodes}
        self.secret_names = secret_names(pipeline)  # the variables the pipeline reads as secrets
        # `run.created`'s definition, shared by the pipeline's runs (event data is read-only):
        # dumping a 1,000-node pipeline costs more than running one of its nodes.
        self.snapshot: dict[str, Any] = pipeline.snapshot()
        self.snapshot_json = EncodedData.encode(self.snapshot).json
        # The runs of this pipeline fold through its one graph, not one rebuilt from the
        # snapshot (`engine.encoding.definition_shape` knows the snapshot by identity).
        definition_shape.remember(self.snapshot, pipeline.graph)

    @classmethod
    def of(cls, pipeline: Pipeline) -> Plan:
        """Kept on the pipeline object (trusted only for that object: `model_copy` copies it)."""
        kept = pipeline.__dict__.get("_interlock_plan")
        if kept is not None and kept[0] is pipeline:
            plan: Plan = kept[1]
            return plan
        plan = cls(pipeline)
        pipeline.__dict__["_interlock_plan"] = (pipeline, plan)
        return plan


def error_class(exc: BaseException) -> str:
    if isinstance(exc, NodeError):
        return exc.error_class
    if isinstance(exc, TransientError):
        return "transient"
    return "error"


class AttemptPath:
    """The attempts of one run's nodes (see the module's contract)."""

    def __init__(self, run: Executor, plan: Plan, rng: random.Random | None) -> None:
        self._run = run
        self._plan = plan
        self._rng = rng or JITTER
        self._params_hash: str | None = None
        self._output_hashes: dict[str, str] = {}  # node id -> its outputs_hash
        self._single_input_hashes: dict[str, str] = {}  # input node id -> inputs hash

    def remember_output(self, node_id: str, outputs_hash: str | None) -> None:
        self._output_hashes[node_id] = outputs_hash or _EMPTY_HASH

    async def run(
        self,
        step: Step,
        ended: Callable[[str, bool, Exception | None], None],
        task: asyncio.Task[Any] | None = None,
    ) -> None:
        """A started node's life, in its task (the node's own, or `task`, the driver's, for a
        node the driver runs itself): its attempts and its final event. `ended(node_id,
        cancelled, fault)` is told as the task ends: after the final event, on a cancellation
        (which then propagates), or with a fault of the engine's (taken here: the driver
        records it). The node's task is this coroutine, not one wrapped around it: every node
        runs it."""
        node_id = step.node_id
        try:
            if task is None:
                task = asyncio.current_task()
                assert task is not None
            run = self._run
            prior = run.state.nodes[node_id].attempts
            decider: RetryDecider | None = None  # made at the first failure: most never fail
            attempt = prior
            while True:
                attempt += 1
                try:
                    output = await self._attempt(step, attempt, task)
                except NodeError as err:
                    if decider is None:
                        decider = RetryDecider(
                            step.retry, classify=error_class, prior_attempts=prior,
                            rng=self._rng,
                        )
                    # A hard gate's verdict is final: it is never retried.
                    delay = None if step.hard_gate else decider.delay_after(err, attempt)
                    if delay is None:
                        self._failed(step.spec, attempt, err)
                        break
                    run._emit(
                        EventType.NODE_RETRIED, node_id=node_id, attempt=attempt,
                        error_class=err.error_class, reason=err.reason,
                        data={"delay": round(delay, 6)},
                    )
                    await run._sleep(delay)
                else:
                    self._succeeded(step, attempt, output)
                    break
        except asyncio.CancelledError:
            ended(node_id, True, None)
            raise
        except Exception as exc:
            ended(node_id, False, exc)
            return
        ended(node_id, False, None)

    async def _attempt(self, step: Step, attempt: int, task: asyncio.Task[Any]) -> dict[str, Any]:
        """One attempt: breaker, `node.started`, the work under the node's timeout. Raises
        NodeError.

        The timeout is decided here and nowhere else, as `asyncio.timeout_at` would on the
        run's shared deadline timer: the deadline, and nothing else, turns a cancellation of
        `task` into a TimeoutError. A deadline past the run's own is not armed (the run's
        deadline comes first and stops the run). Written out here, not in a helper coroutine
        or context manager, because every node runs it."""
        run = self._run
        node_id = step.node_id
        spec = step.spec
        breaker: CircuitBreaker | None = None
        if step.breaker is not None:
            breaker = run._breakers.get(*step.breaker)
            if not breaker.admits_freely:
                try:
                    breaker.acquire(self._breaker_listener(node_id))
                    if breaker.state is _HALF_OPEN and run._claim_trial is not None:
                        # One trial across processes: the store says whose it is.
                        await run._claim_trial(breaker)
                except CircuitOpenError as exc:
                    raise NodeError("circuit_open", str(exc)) from None
        timeout = step.timeout
        inputs = self._inputs(step.parents)
        secrets = self._plan.secret_names
        hooks = _AttemptHooks(run, spec, attempt)
        # Positional: the dataclass's field order (half the cost of naming the arguments).
        ctx = NodeContext(
            run.run_id, node_id, attempt, run.params, inputs,
            _SucceededOutputs(run.state.nodes) if step.reads_all_outputs else inputs,
            run.pipeline.cleanup_grace, run.pipeline, run.simulate, run.search_path,
            hooks.log, hooks.emit_artifact, hooks.wait_for_decision, run._sleep,
            secret_forms(secrets) if secrets else [],
        )
        ctx.process_started = hooks.process_started
        simulated = run.simulate and step.does_work
        run._emit_node(
            EventType.NODE_STARTED, node_id, attempt,
            step.started_simulated if simulated else step.started,
            self._inputs_hash(inputs) if inputs else None,
        )
        entry: list[Any] | None = None
        cancelling = 0
        try:
            if simulated:
                output: dict[str, Any] = {"simulated": True}
            else:
                handler = step.handler  # a control node's; a work node's goes to the runner
                work = handler(spec, ctx) if handler else run._runner.start(spec, ctx)
                deadline = run._loop.time() + timeout
                if deadline <= run._run_deadline:
                    assert run._deadlines is not None
                    cancelling = task.cancelling()
                    entry = run._deadlines.arm(deadline, task)
                try:
                    output = await work
                except asyncio.CancelledError as exc:
                    if entry is not None and self._disarm(entry, task) <= cancelling:
                        raise TimeoutError from exc
                    raise
                except BaseException:
                    if entry is not None:
                        self._disarm(entry, task)
                    raise
                if entry is not None:
                    self._disarm(entry, task)
        except TimeoutError:
            reason = str(NodeTimeoutError(node_id, timeout))
            if ctx.notes:
                reason += "; " + "; ".join(ctx.notes)
            err = NodeError("timeout", reason)
        except NodeError as exc:
            err = exc
        except TransientError as exc:
            err = NodeError("transient", str(exc) or "transient error")
        except asyncio.CancelledError:
            if breaker is not None:
                breaker.release()
            raise
        except Exception as exc:
            err = NodeError("error", f"{type(exc).__name__}: {exc}")
        else:
            if breaker is not None and not breaker.admits_freely:
                breaker.record_success(self._breaker_listener(node_id))
            return output
        if breaker is not None:
            if err.error_class in ("cancelled", "config"):
                breaker.release()
            else:
                breaker.record_failure(self._breaker_listener(node_id))
        raise err

    def _disarm(self, entry: list[Any], task: asyncio.Task[Any]) -> int:
        """The attempt's work is over: disarm its deadline. If the deadline had cancelled the
        task, take that cancellation back (`Task.uncancel`) and return how many are left; else
        a count above any `cancelling()`, so that no TimeoutError is made up."""
        deadlines = self._run._deadlines
        assert deadlines is not None
        if deadlines.disarm(entry):
            return task.uncancel()
        return _NOT_FIRED

    def _succeeded(self, step: Step, attempt: int, output: dict[str, Any]) -> None:
        """Emit `node.succeeded`. Its `outputs_hash` is the hash of the output's JSON text as
        the event holds it, and the event carries that text (`EncodedData`): the output is
        encoded once, not once for the hash and again when the store writes the event."""
        node_id = step.node_id
        text = compact_json(output) if output else "{}"
        if self._run.simulate and step.does_work:
            data = EncodedData(output=output, simulated=True)
            data.json = f'{{"output":{text},"simulated":true}}'
        else:
            data = EncodedData(output=output)
            data.json = f'{{"output":{text}}}'
        outputs_hash = json_hash(text) if output else None
        self._output_hashes[node_id] = outputs_hash or _EMPTY_HASH
        self._run._emit_node(EventType.NODE_SUCCEEDED, node_id, attempt, data, None, outputs_hash)

    def _failed(self, spec: NodeBase, attempt: int, err: NodeError) -> None:
        emit = self._run._emit
        node_id = spec.id
        if spec.gate == "hard" and err.error_class != "cancelled":
            reason = f"gate verdict: {err.reason} ({err.error_class})"
            emit(EventType.NODE_FAILED, node_id=node_id, attempt=attempt, error_class="gate",
                 reason=reason)
            emit(EventType.GATE_FAILED, node_id=node_id, attempt=attempt, error_class="gate",
                 reason=reason)
            return
        event_type = (
            EventType.NODE_TIMED_OUT if err.error_class == "timeout" else EventType.NODE_FAILED
        )
        emit(
            event_type, node_id=node_id, attempt=attempt, error_class=err.error_class,
            reason=err.reason, data={"output": err.output} if err.output is not None else None,
        )

    def _inputs(self, parents: tuple[str, ...]) -> dict[str, Any]:
        nodes = self._run.state.nodes
        inputs = {}
        for parent_id in parents:
            parent = nodes[parent_id]
            if parent.state is _SUCCEEDED:
                inputs[parent_id] = parent.output
        return inputs

    def _inputs_hash(self, inputs: Mapping[str, Any]) -> str:
        """sha256 over the params' hash and each input's output hash: the same inputs always
        hash the same, and no output is serialised again for each of its children.

        The nodes whose one input is the same node share the hash, worked out once (a node
        succeeds at most once per execution): the 1,000 children of a fan-out's source."""
        if len(inputs) != 1:
            return self._hash_inputs(inputs)
        (parent,) = inputs
        known = self._single_input_hashes.get(parent)
        if known is None:
            known = self._single_input_hashes[parent] = self._hash_inputs(inputs)
        return known

    def _hash_inputs(self, inputs: Mapping[str, Any]) -> str:
        text = self._params_hash
        if text is None:
            text = self._params_hash = stable_hash(self._run.params)
        hashes = self._output_hashes
        # The lines "parent:hash" after the params' hash, in parent order.
        for parent in inputs if len(inputs) == 1 else sorted(inputs):
            known = hashes.get(parent)
            if known is None:  # succeeded before a resume: its hash is worked out here
                output = inputs[parent]
                known = hashes[parent] = json_hash(compact_json(output)) if output else _EMPTY_HASH
            text += f"\n{parent}:{known}"
        return json_hash(text)

    def _breaker_listener(self, node_id: str) -> Callable[[BreakerChange], None]:
        run = self._run

        def report(change: BreakerChange) -> None:
            run._emit(
                EventType.BREAKER_STATE_CHANGED,
                node_id=node_id,
                attempt=run.state.nodes[node_id].attempts,
                data={
                    "key": change.key,
                    "from": change.from_state.value,
                    "to": change.to_state.value,
                    "failures": change.failures,
                    "recovery_timeout": change.recovery_timeout,
                },
            )

        return report


class _AttemptHooks:
    """What an attempt's handler reports through (`NodeContext.log`, `.emit_artifact`,
    `.wait_for_decision`): the bound methods of one small object per attempt (three
    `functools.partial`s cost more)."""

    __slots__ = ("_attempt", "_run", "_spec")

    def __init__(self, run: Executor, spec: NodeBase, attempt: int) -> None:
        self._run, self._spec, self._attempt = run, spec, attempt

    def log(self, stream: str, line: str) -> None:
        self._run._log(self._spec.id, self._attempt, stream, line)

    def emit_artifact(self, data: dict[str, Any]) -> None:
        self._run._emit_artifact(self._spec.id, self._attempt, data)

    def process_started(self, record: dict[str, Any]) -> None:
        # A `node.log` line: whoever cancels or resumes the run after this process died reads
        # the record back (`containment.kill_run_orphans`).
        line = "command started in a process group of its own (recorded for cleanup)"
        self._run._log(self._spec.id, self._attempt, "process", line, record)

    def wait_for_decision(self) -> Awaitable[dict[str, Any]]:
        return self._run._wait_for_decision(self._spec, self._attempt)


class _SucceededOutputs(Mapping[str, Any]):
    """The outputs of the nodes that have succeeded, by node id: a view of the run state, made
    in O(1) (a condition or action node used to copy every output of the run)."""

    __slots__ = ("_nodes",)

    def __init__(self, nodes: Mapping[str, NodeState]) -> None:
        self._nodes = nodes

    def __getitem__(self, node_id: str) -> Any:
        node = self._nodes.get(node_id)
        if node is None or node.state is not NodeStatus.SUCCEEDED:
            raise KeyError(node_id)
        return node.output

    def __iter__(self) -> Iterator[str]:
        return (n.node_id for n in self._nodes.values() if n.state is NodeStatus.SUCCEEDED)

    def __len__(self) -> int:
        return sum(1 for n in self._nodes.values() if n.state is NodeStatus.SUCCEEDED)
