"""The run's record: every state change of a run as an event, folded into its live state.

Contract: `_emit` stamps an event with the run's next `seq` and the injected clock, folds it
into the run's `RunState` (`engine.state.apply`) and publishes it to every sink, in that order,
so the live state is by construction the fold of the log. The record methods here write the
run's lifecycle outside of its nodes' attempts: `create` (`run.created`, with the definition
snapshot), `reuse` (retry from failure), `prepare_resume` (`run.resumed`, with what must run
again, and overrides of failed gates) and `record_interrupted`. `engine.executor.Executor` is a
`RunLog`; the attempt path (`engine.attempt`) emits its node events through it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.events import (
    EncodedData,
    Event,
    EventType,
    compact_json,
    json_hash,
    new_event,
    new_event_id,
)
from engine.state import NodeStatus, RunState, RunStatus, apply

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from engine.attempt import AttemptPath, Plan
    from engine.spec import Pipeline

_UNFINISHED = (NodeStatus.PENDING, NodeStatus.RUNNING, NodeStatus.RETRYING, NodeStatus.WAITING)


class RunLog:
    """The event-writing half of an executor (its attributes are set by `Executor`)."""

    pipeline: Pipeline
    run_id: str
    params: dict[str, Any]
    simulate: bool
    search_path: str | None
    state: RunState
    _seq: int
    _now: Callable[[], str]
    _publishers: tuple[Callable[[Event], None], ...]
    _plan: Plan
    _attempts: AttemptPath
    _done: bool
    # Told when the run starts or stops waiting for a decision (True: now waiting): the
    # manager lends the run's slot meanwhile (`engine.run_slots`). A hook, not a sink, so that
    # the other events cost nothing more.
    waiting_changed: Callable[[bool], object] = staticmethod(lambda waiting: None)

    def _emit(
        self,
        event_type: str,
        *,
        node_id: str | None = None,
        attempt: int | None = None,
        actor: str = "engine",
        error_class: str | None = None,
        reason: str | None = None,
        data: Mapping[str, Any] | None = None,
        inputs_hash: str | None = None,
        outputs_hash: str | None = None,
        timestamp: str | None = None,
    ) -> Event:
        self._seq += 1
        event = new_event(
            new_event_id(),
            self._seq,
            event_type,
            self.run_id,
            timestamp or self._now(),
            actor,
            self.state.run_attempt if attempt is None else attempt,
            node_id,
            error_class,
            reason,
            inputs_hash,
            outputs_hash,
            data,
        )
        apply(self.state, event)
        for publish in self._publishers:
            publish(event)
        return event

    def _emit_notification(self, event_type: str, reason: str | None, data: dict[str, Any]) -> None:
        if not self._done:  # nothing follows run.completed
            self._emit(event_type, reason=reason, data=data)

    def _emit_node(
        self,
        event_type: str,
        node_id: str,
        attempt: int,
        data: Mapping[str, Any],
        inputs_hash: str | None = None,
        outputs_hash: str | None = None,
    ) -> None:
        """`_emit` for the events every node emits (started, succeeded), without its options."""
        self._seq = seq = self._seq + 1
        event = new_event(
            new_event_id(), seq, event_type, self.run_id, self._now(), "engine", attempt, node_id,
            None, None, inputs_hash, outputs_hash, data,
        )
        apply(self.state, event)
        for publish in self._publishers:
            publish(event)

    def create(
        self, *, replay_of: str | None = None, actor: str = "engine", retry_of: str | None = None
    ) -> Event:
        """Emit `run.created`: the run exists (pending) from here on."""
        data: dict[str, Any] = {
            "pipeline_id": self.pipeline.id,
            "definition": self._plan.snapshot,
            "params": self.params,
        }
        if replay_of:
            data["replay_of"] = replay_of
        if retry_of:
            data["retry_of"] = retry_of
        if self.simulate:
            data["simulate"] = True
        if self.search_path:
            # Where `call:` modules and relative paths were found: resume and replay need it.
            data["search_path"] = self.search_path
        encoded = EncodedData.joined(data, {"definition": self._plan.snapshot_json})
        return self._emit(EventType.RUN_CREATED, actor=actor, attempt=1, data=encoded)

    def record_interrupted(self, reason: str, data: Mapping[str, Any]) -> None:
        """Record the interruption a take-over acts on (`run.state_changed` to
        `interrupted`): readers only ever work it out from the lease, never write it."""
        if self.state.is_terminal or self.state.state is RunStatus.INTERRUPTED:
            return
        self._emit(
            EventType.RUN_STATE_CHANGED,
            reason=reason,
            data={"from": self.state.state.value, "to": RunStatus.INTERRUPTED.value, **data},
        )

    def record_queued(self) -> None:
        """Before `execute`, when the run waits for a run slot: a run resumed from another
        state is `pending` again (a new run is already), so nobody takes it for interrupted."""
        if self.state.state is RunStatus.PENDING:
            return
        self._emit(
            EventType.RUN_STATE_CHANGED,
            data={"from": self.state.state.value, "to": RunStatus.PENDING.value, "queued": True},
        )

    def reuse(self, node_id: str, output: Any, *, reused_from: str) -> None:
        """Before `execute`: record `node_id` as succeeded with another run's stored output
        (retry from failure): attempt 0, no work done, so it takes no time."""
        text = compact_json(output) if output else "{}"
        outputs_hash = json_hash(text) if output else None
        self._attempts.remember_output(node_id, outputs_hash)
        self._emit(
            EventType.NODE_SUCCEEDED,
            node_id=node_id,
            attempt=0,
            data={"output": output, "reused_from": reused_from},
            outputs_hash=outputs_hash,
        )

    def prepare_resume(
        self, *, actor: str = "engine", override_reason: str | None = None
    ) -> list[str]:
        """Emit `run.resumed` (and `run.override_applied`): reset what must run again."""
        overridden = list(self.state.gate_failures) if override_reason else []
        reset: list[str] = []
        blocked = set(overridden)
        for gate in overridden:
            blocked |= self.pipeline.graph.descendants(gate)
        for node in self.state.nodes.values():
            if node.state in _UNFINISHED:
                reset.append(node.node_id)
            elif node.node_id in blocked and node.node_id not in overridden:
                if node.state is not NodeStatus.SUCCEEDED:
                    reset.append(node.node_id)
            elif node.state is NodeStatus.CANCELLED:
                reset.append(node.node_id)
        previous = self.state.state.value
        self._emit(
            EventType.RUN_RESUMED,
            actor=actor,
            attempt=self.state.run_attempt + 1,
            data={"reset": reset, "from": previous},
        )
        if overridden:
            self._emit(
                EventType.RUN_OVERRIDE_APPLIED,
                actor=actor,
                reason=override_reason,
                data={"nodes": overridden},
            )
            for gate in overridden:
                node = self.state.nodes[gate]
                self._emit(
                    EventType.NODE_SUCCEEDED,
                    node_id=gate,
                    attempt=max(node.attempts, 1),
                    actor=actor,
                    reason=f"overridden: {override_reason}",
                    data={"output": {"overridden": True, "reason": override_reason}},
                )
        return reset
