"""The hot path's speed tricks, in one module, each beside the plain version it must equal.

Contract: every fast function here returns exactly what its reference returns (for ids, which
are random, the same form); `tests/engine/test_encoding.py` checks each pair with hypothesis.
The rest of the engine calls the names that `engine.events` exports (and the fold calls
`definition_shape`) and never sees a trick.
A trick stays only while it pays for itself: each was measured against its reference in W1/W2
(figures in `benchmarks/NOTES.md`, "Events and the fold").

    fast                         reference                              what it saves
    compact_json(value)          json.dumps(value, separators=...)      a new encoder per call
    canonical_json(value)        the same with sort_keys=True           (idem)
    event_json(event)            compact_json(event.to_dict())          the dict built to encode
    EncodedData                  a dict, encoded when written           encoding it per run
    utc_now_iso()                utc_iso_reference(time.time_ns())      formatting the date
    new_id(), new_event_id()     os.urandom(...).hex() per id           a system call per id
    event_builder(Event)         Event(...)                             the frozen __init__
                                 (events.new_event and trusted_event build with it)
    definition_shape(d)          definition_shape_reference(d)          reading it per run

Everything here is pure but for the clock and the random bytes it is asked for, and the caches
it names (the per-second timestamp text, the id pools, the last definitions' shapes).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from json.encoder import encode_basestring_ascii
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from engine.graph import Graph

if TYPE_CHECKING:
    from collections.abc import Callable

    from engine.events import Event

__all__ = [
    "DefinitionShapes",
    "EncodedData",
    "EventBuilder",
    "Shape",
    "canonical_json",
    "canonical_json_reference",
    "compact_json",
    "compact_json_reference",
    "definition_shape",
    "definition_shape_reference",
    "event_builder",
    "event_json",
    "event_json_reference",
    "new_event_id",
    "new_event_id_reference",
    "new_id",
    "new_id_reference",
    "utc_iso_reference",
    "utc_now_iso",
]


# -- JSON --------------------------------------------------------------------------------------


def compact_json_reference(value: Any) -> str:
    """Compact JSON, keys in their order, anything else as its `str`: an event's body."""
    return json.dumps(value, separators=(",", ":"), default=str)


def canonical_json_reference(value: Any) -> str:
    """`compact_json_reference` with the keys sorted: the same data always gives one text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _encoder(*, sort_keys: bool) -> Callable[[Any], str]:
    """The C encoder `json.dumps` ends up in, made once (with options, `json.dumps` makes a
    `JSONEncoder` per call, in Python: a third of an event's cost). Without the circular-
    reference check a cycle is found by the recursion limit instead, as the same ValueError."""
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


compact_json = _encoder(sort_keys=False)
compact_json.__doc__ = compact_json_reference.__doc__
canonical_json = _encoder(sort_keys=True)
canonical_json.__doc__ = canonical_json_reference.__doc__


class EncodedData(dict[str, Any]):
    """Event data that carries its compact JSON text (`json`), worked out once: `event_json`
    writes the text as it is instead of encoding the data again.

    For data the executor encodes anyway or shares between runs: a node's `node.started` data,
    a pipeline's definition snapshot, a `node.succeeded`'s output (encoded for its hash). It
    equals, and encodes as, the plain dict. Made as a dict is (`EncodedData(output=...)`, then
    `json` set) or by `encode` and `joined`; without its text it is encoded as a dict. Like all
    event data it must not be changed.
    """

    __slots__ = ("json",)
    json: str

    @classmethod
    def encode(cls, data: Mapping[str, Any]) -> EncodedData:
        """`data`, with its text."""
        made = cls(data)
        made.json = compact_json(made)
        return made

    @classmethod
    def joined(cls, data: Mapping[str, Any], known: Mapping[str, str]) -> EncodedData:
        """`encode(data)`, with the texts of some values already known (by key): the text is
        put together as the encoder would write it, encoding only the other values."""
        get = known.get
        parts = [
            f"{encode_basestring_ascii(key)}:{get(key) or compact_json(value)}"
            for key, value in data.items()
        ]
        made = cls(data)
        made.json = "{" + ",".join(parts) + "}"
        return made


def event_json_reference(event: Event) -> str:
    """An event's JSONL line: its contract dict, encoded."""
    return compact_json_reference(event.to_dict())


def event_json(event: Event) -> str:
    """`event_json_reference`, written field by field rather than by encoding a dict built for
    the purpose (half the cost; the store writes every event). Anything but the usual field
    types takes the encoder's own way, so the text is the same in every case."""
    seq, attempt = event.seq, event.attempt
    if type(seq) is not int or type(attempt) is not int:
        return compact_json(event.to_dict())
    quote = encode_basestring_ascii
    try:
        text = (
            f'{{"event_id":{quote(event.event_id)},"seq":{seq},'
            f'"event_type":{quote(event.event_type)},"run_id":{quote(event.run_id)},'
            f'"timestamp_utc":{quote(event.timestamp_utc)},"actor":{quote(event.actor)},'
            f'"attempt":{attempt}'
        )
        if event.node_id is not None:
            text += f',"node_id":{quote(event.node_id)}'
        if event.error_class is not None:
            text += f',"error_class":{quote(event.error_class)}'
        if event.reason is not None:
            text += f',"reason":{quote(event.reason)}'
        if event.inputs_hash is not None:
            text += f',"inputs_hash":{quote(event.inputs_hash)}'
        if event.outputs_hash is not None:
            text += f',"outputs_hash":{quote(event.outputs_hash)}'
    except TypeError:  # a field that is not a string
        return compact_json(event.to_dict())
    data = event.data
    if data is not None:
        encoded = getattr(data, "json", None) if type(data) is EncodedData else None
        text += f',"data":{encoded if encoded is not None else compact_json(data)}'
    return text + "}"


# -- timestamps and ids ------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_iso_reference(ns: int) -> str:
    """`ns` (nanoseconds since the epoch, as `time.time_ns()`) as ISO 8601 UTC to the
    microsecond, with a `Z`."""
    return (_EPOCH + timedelta(microseconds=ns // 1000)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# The last second a timestamp fell in, and its text ("2026-11-22T10:00:00."): one tuple, so
# that a thread reads the pair another wrote, never half of it.
_second: tuple[int, str] = (-1, "")


def utc_now_iso() -> str:
    """`utc_iso_reference(time.time_ns())`: the date and time formatted once per second, the
    microseconds per call (six times cheaper than `strftime`; several events per node)."""
    global _second
    micros = time.time_ns() // 1000
    second, text = _second
    if micros // 1_000_000 != second:
        second = micros // 1_000_000
        text = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
        _second = (second, text)
    # Padded by adding a million and dropping the leading 1: a format spec is parsed per call.
    return f"{text}{str(micros % 1_000_000 + 1_000_000)[1:]}Z"


def new_id_reference() -> str:
    """A random 128-bit id as 32 hex characters."""
    return os.urandom(16).hex()


def new_event_id_reference() -> str:
    """An event id: the time in milliseconds (12 hex characters), then 80 random bits.

    Time first, so that the events a run writes together sit together in the store's unique
    index on `event_id` (wholly random ids put each event of a batch on a page of its own).
    """
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"


# Random ids drawn from the OS 256 at a time: one getrandom() per id costs more than the rest
# of making it. A forked child empties the pools, so it never repeats a parent's ids.
_ids: list[str] = []
_tails: list[str] = []  # 80 random bits each, for event ids
_millis: tuple[int, str] = (-1, "")  # the millisecond of the last event id, and its hex


def _forget_pools() -> None:
    _ids.clear()
    _tails.clear()


os.register_at_fork(after_in_child=_forget_pools)


def new_id() -> str:
    """`new_id_reference()`, from a pool."""
    while True:
        try:
            return _ids.pop()
        except IndexError:
            raw = os.urandom(16 * 256).hex()
            _ids.extend(raw[i : i + 32] for i in range(0, len(raw), 32))


def new_event_id() -> str:
    """`new_event_id_reference()`: the random part from a pool, the time's hex written once
    per millisecond (several events are made in each)."""
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


# -- building events ---------------------------------------------------------------------------


class EventBuilder(Protocol):
    """`Event(...)` with every field given, in field order."""

    def __call__(
        self,
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
    ) -> Event: ...


def event_builder(event_class: type[Event]) -> EventBuilder:
    """A builder of `event_class` (the frozen, slotted `Event`) equal to its constructor and
    about four times cheaper: the frozen dataclass's `__init__` sets each field through
    `object.__setattr__`; this fills in an unfrozen twin with the same slots, then assigns
    `__class__` (which Python refuses, loudly, if the two layouts ever stop matching). The
    executor makes several events per node, and reading a 100,000-event run back builds one
    per event."""

    class Unfrozen:
        __slots__ = event_class.__slots__

    def build(
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
        event: Any = object.__new__(Unfrozen)
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
        event.__class__ = event_class
        built: Event = event
        return built

    return build


# -- a run definition's shape -----------------------------------------------------------------


class Shape(NamedTuple):
    """What the fold reads from a run's definition: its DAG, and each node as (id, type,
    parents) in file order. `graph` is None for a definition with a cycle (never written by
    this engine, but an event log can come from anywhere): its nodes then have no parents."""

    graph: Graph | None
    nodes: tuple[tuple[str, str, tuple[str, ...]], ...]


def definition_shape_reference(
    definition: Mapping[str, Any], graph: Graph | None = None
) -> Shape:
    """The shape of a `run.created` definition, its parents from `Graph.from_definition` (or
    from `graph`, the definition's graph built already)."""
    types = {
        raw["id"]: str(raw.get("type", ""))
        for raw in definition.get("nodes") or ()
        if isinstance(raw, Mapping) and isinstance(raw.get("id"), str)
    }
    if graph is None:
        try:
            graph = Graph.from_definition(definition)
        except ValueError:
            graph = None
    parents: Mapping[str, tuple[str, ...]] = graph.parents if graph is not None else {}
    return Shape(graph, tuple((node, kind, parents.get(node, ())) for node, kind in types.items()))


class DefinitionShapes:
    """`definition_shape_reference`, remembered for the last `size` definitions, by identity.

    The fold reads the shape of every run it folds from `run.created`. The executor shares one
    definition object among a pipeline's runs (its snapshot), and reading it again for each run
    (the graph alone is about 3 us a node) costs a seventh of a W1 run. A definition is event
    data, which is never changed, so the same object always has the same shape; each
    remembered definition is held, so that its identity cannot pass to another object
    meanwhile. (A dict cannot be weakly referenced, hence no WeakKeyDictionary.) A definition
    read back from the store is a new object each time and is read again.
    """

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._held: list[tuple[Mapping[str, Any], Shape]] = []

    def __call__(self, definition: Mapping[str, Any]) -> Shape:
        for held, shape in self._held:
            if held is definition:
                return shape
        return self.remember(definition)

    def remember(self, definition: Mapping[str, Any], graph: Graph | None = None) -> Shape:
        """Read `definition` now, taking `graph` as its graph if given: the executor can hand
        over its pipeline's graph with the snapshot it made of that pipeline, so that the fold
        of its runs uses the one graph built for the pipeline."""
        shape = definition_shape_reference(definition, graph)
        self._held = [(definition, shape), *self._held[: self.size - 1]]
        return shape

    def clear(self) -> None:
        self._held = []


definition_shape = DefinitionShapes()
