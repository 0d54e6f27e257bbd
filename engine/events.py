"""Events: the immutable facts a run is made of, and the single module that names them.

Contract (DESIGN section 5): an event is a compact JSON object with null fields omitted:
`event_id`, `seq` (per run, from 1, gap-free), `event_type`, `run_id`, `timestamp_utc` (ISO 8601,
Z), `actor`, `attempt`, and optionally `node_id`, `error_class`, `reason`, `inputs_hash`,
`outputs_hash`, `data`. Event type names are past-tense and fixed; scripts depend on them.

`Event` is a frozen, slotted dataclass rather than a pydantic model: the engine creates several per
node on its hot path and they are valid by construction, so validating each one would be pure
cost. Events read back from outside (JSONL, the store) go through `Event.from_dict`, which checks;
the executor builds them with `new_event`, the store reads its own back with `trusted_event`.
How an event is encoded and built fast is `engine.encoding`'s business.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

# The encodings and ids of the hot path live in `engine.encoding`, each beside its plain
# version; they are used, and imported by other modules, from here.
from engine.encoding import (
    EncodedData,
    canonical_json,
    compact_json,
    event_builder,
    event_json,
    new_event_id,
    new_id,
    utc_now_iso,
)

__all__ = [
    "EVENT_TYPES",
    "EncodedData",
    "Event",
    "EventType",
    "compact_json",
    "json_hash",
    "new_event",
    "new_event_id",
    "new_id",
    "parse_timestamp",
    "stable_hash",
    "trusted_event",
    "utc_now_iso",
]


class EventType(StrEnum):
    RUN_CREATED = "run.created"
    RUN_STATE_CHANGED = "run.state_changed"
    RUN_COMPLETED = "run.completed"
    RUN_RESUMED = "run.resumed"
    RUN_OVERRIDE_APPLIED = "run.override_applied"
    NODE_STARTED = "node.started"
    NODE_SUCCEEDED = "node.succeeded"
    NODE_FAILED = "node.failed"
    NODE_RETRIED = "node.retried"
    NODE_TIMED_OUT = "node.timed_out"
    NODE_SKIPPED = "node.skipped"
    NODE_CANCELLED = "node.cancelled"
    NODE_LOG = "node.log"
    GATE_FAILED = "gate.failed"
    BREAKER_STATE_CHANGED = "breaker.state_changed"
    APPROVAL_REQUESTED = "approval.requested"
    APPROVAL_GRANTED = "approval.granted"
    APPROVAL_REJECTED = "approval.rejected"
    ARTIFACT_EMITTED = "artifact.emitted"
    NOTIFICATION_SENT = "notification.sent"
    NOTIFICATION_FAILED = "notification.failed"


EVENT_TYPES: frozenset[str] = frozenset(t.value for t in EventType)

_REQUIRED = ("event_id", "seq", "event_type", "run_id", "timestamp_utc", "actor", "attempt")
_OPTIONAL_STR = ("node_id", "error_class", "reason", "inputs_hash", "outputs_hash")


def parse_timestamp(value: str) -> float:
    """Seconds since the epoch for a `timestamp_utc` value."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def json_hash(text: str) -> str:
    """sha256 of a JSON text, as 64 hex digits."""
    return hashlib.sha256(text.encode()).hexdigest()


def stable_hash(value: Any) -> str:
    """sha256 of the canonical JSON of `value`: the same data always hashes the same."""
    return json_hash(canonical_json(value))


@dataclass(frozen=True, slots=True)
class Event:
    """One immutable fact about a run. Treat `data` as read-only."""

    event_id: str
    seq: int
    event_type: str
    run_id: str
    timestamp_utc: str
    actor: str = "engine"
    attempt: int = 1
    node_id: str | None = None
    error_class: str | None = None
    reason: str | None = None
    inputs_hash: str | None = None
    outputs_hash: str | None = None
    data: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The contract's JSON object: null fields omitted, keys in schema order."""
        out: dict[str, Any] = {
            "event_id": self.event_id,
            "seq": self.seq,
            "event_type": self.event_type,
            "run_id": self.run_id,
            "timestamp_utc": self.timestamp_utc,
            "actor": self.actor,
            "attempt": self.attempt,
        }
        if self.node_id is not None:
            out["node_id"] = self.node_id
        if self.error_class is not None:
            out["error_class"] = self.error_class
        if self.reason is not None:
            out["reason"] = self.reason
        if self.inputs_hash is not None:
            out["inputs_hash"] = self.inputs_hash
        if self.outputs_hash is not None:
            out["outputs_hash"] = self.outputs_hash
        if self.data is not None:
            out["data"] = self.data
        return out

    def to_json(self) -> str:
        """Compact JSON on one line (JSONL): the text of `to_dict()` encoded."""
        return event_json(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Event:
        """Check and build an event read from outside; raises ValueError naming the bad field."""
        if not isinstance(raw, Mapping):
            raise ValueError("an event must be a JSON object")
        for key in _REQUIRED:
            if key not in raw:
                raise ValueError(f"event is missing '{key}'")
        unknown = set(raw) - set(_REQUIRED) - set(_OPTIONAL_STR) - {"data"}
        if unknown:
            raise ValueError(f"event has unknown fields: {', '.join(sorted(unknown))}")
        if raw["event_type"] not in EVENT_TYPES:
            raise ValueError(f"unknown event type '{raw['event_type']}'")
        seq, attempt = raw["seq"], raw["attempt"]
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise ValueError("event 'seq' must be an integer >= 1")
        if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 0:
            raise ValueError("event 'attempt' must be an integer >= 0")
        for key in ("event_id", "run_id", "timestamp_utc", "actor", *_OPTIONAL_STR):
            value = raw.get(key)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"event '{key}' must be a string")
        data = raw.get("data")
        if data is not None and not isinstance(data, Mapping):
            raise ValueError("event 'data' must be an object")
        return cls(
            event_id=raw["event_id"],
            seq=seq,
            event_type=raw["event_type"],
            run_id=raw["run_id"],
            timestamp_utc=raw["timestamp_utc"],
            actor=raw["actor"],
            attempt=attempt,
            node_id=raw.get("node_id"),
            error_class=raw.get("error_class"),
            reason=raw.get("reason"),
            inputs_hash=raw.get("inputs_hash"),
            outputs_hash=raw.get("outputs_hash"),
            data=dict(data) if data is not None else None,
        )

    @classmethod
    def from_json(cls, text: str) -> Event:
        return cls.from_dict(json.loads(text))


new_event = event_builder(Event)
"""`Event(...)` with every field given, in order: the executor's way (valid by construction)."""


def trusted_event(fields: Mapping[str, Any]) -> Event:
    """An event from a body the store wrote itself (a missing optional field is None), built
    without checks by `new_event` (reading a 100,000-event run spends most of its time here)."""
    get = fields.get
    return new_event(
        fields["event_id"], fields["seq"], fields["event_type"], fields["run_id"],
        fields["timestamp_utc"], fields["actor"], fields["attempt"], get("node_id"),
        get("error_class"), get("reason"), get("inputs_hash"), get("outputs_hash"), get("data"),
    )
