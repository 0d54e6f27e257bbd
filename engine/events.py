"""Events: the immutable facts a run is made of, and the single module that names them.

Contract (DESIGN section 5): an event is a compact JSON object with null fields omitted:
`event_id`, `seq` (per run, from 1, gap-free), `event_type`, `run_id`, `timestamp_utc` (ISO 8601,
Z), `actor`, `attempt`, and optionally `node_id`, `error_class`, `reason`, `inputs_hash`,
`outputs_hash`, `data`. Event type names are past-tense and fixed; scripts depend on them.

`Event` is a frozen, slotted dataclass rather than a pydantic model: the engine creates several per
node on its hot path and they are valid by construction, so validating each one would be pure
cost. Events read back from outside (JSONL, the store) go through `Event.from_dict`, which checks.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from json.encoder import encode_basestring_ascii
from typing import Any, cast


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


# The last second a timestamp fell in, and its text ("2026-11-22T10:00:00."): one tuple, so
# that a thread reads the pair another wrote, never half of it.
_second: tuple[int, str] = (-1, "")


def utc_now_iso() -> str:
    """The current time as ISO 8601 UTC with a `Z` suffix and microseconds."""
    # Several events per node take a timestamp: formatting the date and time once per second
    # and only the microseconds per call is about six times cheaper than `strftime`. The
    # microseconds are padded by adding a million and dropping the leading 1 (a format spec is
    # parsed on every call).
    global _second
    micros = time.time_ns() // 1000
    second, text = _second
    if micros // 1_000_000 != second:
        second = micros // 1_000_000
        text = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
        _second = (second, text)
    return f"{text}{str(micros % 1_000_000 + 1_000_000)[1:]}Z"


def parse_timestamp(value: str) -> float:
    """Seconds since the epoch for a `timestamp_utc` value."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


_ids: list[str] = []


def new_id() -> str:
    """A random 128-bit id as 32 hex characters (cheaper than uuid4 and just as unique)."""
    # Drawn from the OS 256 at a time: one getrandom() call per event costs more than the
    # rest of making the id. A forked child empties the pool, so it never repeats a parent's.
    while True:
        try:
            return _ids.pop()
        except IndexError:
            raw = os.urandom(16 * 256).hex()
            _ids.extend(raw[i : i + 32] for i in range(0, len(raw), 32))


os.register_at_fork(after_in_child=_ids.clear)


def new_event_id() -> str:
    """An event's id: 32 hex characters, the time in milliseconds (12) then 80 random bits.

    Time first, so that the events a run writes together sit together in the store's unique
    index on `event_id`. With wholly random ids each event of a batch lands on its own page of
    that index once the index is larger than a batch, so a batch wrote a page per event and
    cost more the more the database held: a 1,000-node run's batch took from 11 ms to 24 ms over
    20 runs, and stays at 8 ms with these. Eighty random bits keep ids from different processes
    (or the same millisecond) apart as well as a random id does.
    """
    # The time's hex is written once per millisecond: several events are made in each.
    global _millis
    millis = time.time_ns() // 1_000_000
    last, prefix = _millis
    if millis != last:
        prefix = f"{millis:012x}"
        _millis = (millis, prefix)
    while True:
        try:
            return prefix + _tails.pop()
        except IndexError:
            raw = os.urandom(10 * 256).hex()
            _tails.extend(raw[i : i + 20] for i in range(0, len(raw), 20))


_millis: tuple[int, str] = (-1, "")  # the millisecond of the last event id, and its hex
_tails: list[str] = []  # 80 random bits each, drawn as `new_id` draws its ids
os.register_at_fork(after_in_child=_tails.clear)


def _encoder(*, sort_keys: bool) -> Callable[[Any], str]:
    """`json.dumps(value, sort_keys=..., separators=(",", ":"), default=str)`, made once.

    `json.dumps` with options builds a new encoder on every call, in Python; this calls the C
    encoder directly (a third of the cost for an event). Without the circular-reference check,
    a cycle is found by the recursion limit instead, and raises the same ValueError.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator (another Python implementation)
        return json.JSONEncoder(sort_keys=sort_keys, separators=(",", ":"), default=str).encode
    encode = make(None, str, encode_basestring_ascii, None, ":", ",", sort_keys, False, True)

    def dumps(value: Any) -> str:
        try:
            return "".join(encode(value, 0))
        except RecursionError:
            raise ValueError("Circular reference detected (or data nested too deeply)") from None

    return dumps


_canonical = _encoder(sort_keys=True)
_compact = _encoder(sort_keys=False)


class EncodedData(dict[str, Any]):
    """Event data that carries its compact JSON text, worked out once: `Event.to_json` puts
    the text in as it is instead of encoding the data again.

    The executor's: a node's `node.started` data (one object for each of its attempts in every
    run), a pipeline's definition snapshot in `run.created` (one per pipeline), and each
    `node.succeeded`'s (whose output was encoded for its hash anyway). The store serialises
    every event it commits, and at the end of a run that is on the path to the run's last
    commit. Like all event data it must not be changed; it equals, and encodes as, the plain
    dict.
    """

    __slots__ = ("json",)
    # Made as a dict is (no __init__ of its own: the executor makes one per node), then `json`
    # set; `encode` and `joined` do both.
    json: str

    @classmethod
    def encode(cls, data: Mapping[str, Any]) -> EncodedData:
        """`data`, with its text."""
        made = cls(data)
        made.json = _compact(made)
        return made

    @classmethod
    def joined(cls, data: Mapping[str, Any], known: Mapping[str, str]) -> EncodedData:
        """`encode(data)`, with the texts of some values already known (by key): the text is
        put together as the encoder would write it, encoding only the other values."""
        get = known.get
        parts = [
            f"{encode_basestring_ascii(key)}:{get(key) or _compact(value)}"
            for key, value in data.items()
        ]
        made = cls(data)
        made.json = "{" + ",".join(parts) + "}"
        return made


def json_hash(text: str) -> str:
    """sha256 of a JSON text, as 64 hex digits."""
    return hashlib.sha256(text.encode()).hexdigest()


def stable_hash(value: Any) -> str:
    """sha256 of the canonical JSON of `value`: the same data always hashes the same."""
    return json_hash(_canonical(value))


# `value` as an event's body holds it: compact JSON, keys in their order (`to_json`'s).
compact_json = _compact


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
        """Compact JSON on one line (JSONL): the text of `to_dict()` encoded.

        The store serialises every event it commits, so the text is put together here rather
        than by encoding a dict built for the purpose (half the cost); anything but the usual
        field types takes the encoder's own way, so the text is the same in every case.
        """
        seq, attempt = self.seq, self.attempt
        if type(seq) is not int or type(attempt) is not int:
            return _compact(self.to_dict())
        quote = encode_basestring_ascii
        try:
            text = (
                f'{{"event_id":{quote(self.event_id)},"seq":{seq},'
                f'"event_type":{quote(self.event_type)},"run_id":{quote(self.run_id)},'
                f'"timestamp_utc":{quote(self.timestamp_utc)},"actor":{quote(self.actor)},'
                f'"attempt":{attempt}'
            )
            if self.node_id is not None:
                text += f',"node_id":{quote(self.node_id)}'
            if self.error_class is not None:
                text += f',"error_class":{quote(self.error_class)}'
            if self.reason is not None:
                text += f',"reason":{quote(self.reason)}'
            if self.inputs_hash is not None:
                text += f',"inputs_hash":{quote(self.inputs_hash)}'
            if self.outputs_hash is not None:
                text += f',"outputs_hash":{quote(self.outputs_hash)}'
        except TypeError:  # a field that is not a string
            return _compact(self.to_dict())
        data = self.data
        if data is not None:
            if type(data) is EncodedData:
                try:
                    encoded = data.json
                except AttributeError:  # made as a plain dict is, its text never set
                    encoded = _compact(data)
            else:
                encoded = _compact(data)
            text += f',"data":{encoded}'
        return text + "}"

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


class _Unfrozen:
    """An `Event`'s slots without its frozen `__setattr__`: the same layout, so an instance
    filled in here becomes an `Event` by assigning `__class__` (which Python refuses, loudly,
    if the two ever stop matching)."""

    __slots__ = Event.__slots__


def trusted_event(fields: Mapping[str, Any]) -> Event:
    """An event from a body the store wrote itself (a missing optional field is None).

    No checks, and no frozen-dataclass `__init__` (which sets each field through
    `object.__setattr__`): plain slot stores on an unfrozen twin, then the class swapped. About
    three times as fast, and reading a 100,000-event run spends most of its time here.
    """
    get = fields.get
    return new_event(
        fields["event_id"], fields["seq"], fields["event_type"], fields["run_id"],
        fields["timestamp_utc"], fields["actor"], fields["attempt"], get("node_id"),
        get("error_class"), get("reason"), get("inputs_hash"), get("outputs_hash"), get("data"),
    )


def new_event(
    event_id: str,
    seq: int,
    event_type: str,
    run_id: str,
    timestamp_utc: str,
    actor: str,
    attempt: int,
    node_id: str | None,
    error_class: str | None,
    reason: str | None,
    inputs_hash: str | None,
    outputs_hash: str | None,
    data: Mapping[str, Any] | None,
) -> Event:
    """`Event(...)` with every field given, built as `trusted_event` builds one: for the
    executor, which makes several per node and whose events are valid by construction (about
    four times cheaper than the frozen dataclass's `__init__`)."""
    event: Any = object.__new__(_Unfrozen)
    event.event_id = event_id
    event.seq = seq
    event.event_type = event_type
    event.run_id = run_id
    event.timestamp_utc = timestamp_utc
    event.actor = actor
    event.attempt = attempt
    event.node_id = node_id
    event.error_class = error_class
    event.reason = reason
    event.inputs_hash = inputs_hash
    event.outputs_hash = outputs_hash
    event.data = data
    event.__class__ = Event
    return cast("Event", event)
