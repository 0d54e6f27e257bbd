"""Each speed trick of `engine.encoding` gives exactly what its plain reference gives (for random
ids, the same form), whatever it is handed."""

from __future__ import annotations

import dataclasses
import os
import re
import time
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import encoding
from engine.encoding import (
    DefinitionShapes,
    EncodedData,
    canonical_json,
    canonical_json_reference,
    compact_json,
    compact_json_reference,
    definition_shape_reference,
    event_builder,
    event_json,
    event_json_reference,
    new_event_id,
    new_event_id_reference,
    new_id,
    new_id_reference,
    utc_iso_reference,
    utc_now_iso,
)
from engine.events import Event, EventType
from engine.loader import load_dict

TEXT = st.text(max_size=12)  # any characters: quotes, escapes, non-ASCII, surrogates
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | TEXT
JSON_DATA = st.recursive(
    SCALARS | st.builds(object) | st.decimals(allow_nan=False),  # not JSON: written as str
    lambda children: st.lists(children, max_size=3)
    | st.tuples(children, children)
    | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=8,
)
DATA = st.dictionaries(TEXT, JSON_DATA, max_size=4)
ODD = st.integers() | st.floats() | st.none() | st.booleans() | st.lists(TEXT, max_size=2)
EVENTS = st.builds(
    Event,
    event_id=TEXT,
    seq=st.integers(min_value=1) | ODD,
    event_type=st.sampled_from(list(EventType)) | TEXT,
    run_id=TEXT | ODD,
    timestamp_utc=TEXT,
    actor=TEXT,
    attempt=st.integers(min_value=0) | ODD,
    node_id=st.none() | TEXT | ODD,
    error_class=st.none() | TEXT,
    reason=st.none() | TEXT | ODD,
    inputs_hash=st.none() | TEXT,
    outputs_hash=st.none() | TEXT,
    data=st.none() | DATA | DATA.map(EncodedData.encode) | DATA.map(EncodedData),
)
HEX32 = re.compile(r"[0-9a-f]{32}")


@settings(max_examples=300, deadline=None, database=None)
@given(JSON_DATA)
def test_compact_and_canonical_json_are_json_dumps(value: Any) -> None:
    assert compact_json(value) == compact_json_reference(value)
    try:
        expected = canonical_json_reference(value)
    except TypeError:  # keys of different types cannot be sorted: neither can sort them
        with pytest.raises(TypeError):
            canonical_json(value)
    else:
        assert canonical_json(value) == expected


def test_a_cycle_is_refused_by_both_with_a_value_error() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    for dumps in (compact_json, compact_json_reference, canonical_json, canonical_json_reference):
        with pytest.raises(ValueError, match="Circular reference"):
            dumps(cycle)


@settings(max_examples=400, deadline=None, database=None)
@given(EVENTS)
def test_an_events_line_is_its_dict_encoded(event: Event) -> None:
    assert event_json(event) == event_json_reference(event)


@settings(max_examples=200, deadline=None, database=None)
@given(DATA, st.data())
def test_encoded_data_carries_the_text_of_the_plain_data(
    data: dict[str, Any], draw: st.DataObject
) -> None:
    keys = draw.draw(st.sets(st.sampled_from(list(data)))) if data else set()
    known = {key: compact_json_reference(data[key]) for key in keys}
    for ready in (EncodedData.encode(data), EncodedData.joined(data, known)):
        assert ready == data
        assert ready.json == compact_json_reference(data)


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(st.integers(min_value=0, max_value=253_402_300_799_999_999_999), max_size=6))
def test_a_timestamp_is_the_reference_formatting_of_the_clock(readings: list[int]) -> None:
    # One after another, as the per-second text is kept between calls.
    for ns in readings:
        with mock.patch.object(time, "time_ns", return_value=ns):
            assert utc_now_iso() == utc_iso_reference(ns)


@settings(max_examples=50, deadline=None, database=None)
@given(st.lists(st.integers(min_value=0, max_value=2**48 - 1), min_size=1, max_size=5))
def test_an_event_id_has_the_reference_form_and_its_millisecond(milliseconds: list[int]) -> None:
    for ms in milliseconds:
        with mock.patch.object(time, "time_ns", return_value=ms * 1_000_000 + 999_999):
            fast, plain = new_event_id(), new_event_id_reference()
        assert HEX32.fullmatch(fast) and HEX32.fullmatch(plain)
        assert fast[:12] == plain[:12] == f"{ms:012x}"


def test_ids_from_the_pools_have_the_reference_form_and_do_not_repeat() -> None:
    ids = [new_id() for _ in range(1000)]  # past a pool's 256
    assert all(HEX32.fullmatch(i) for i in ids) and HEX32.fullmatch(new_id_reference())
    assert len(set(ids)) == len(ids)
    tails = [new_event_id()[12:] for _ in range(1000)]
    assert len(set(tails)) == len(tails)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_draws_ids_of_its_own() -> None:
    new_id(), new_event_id()  # the pools hold ids the child would otherwise share
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover  (the child)
        os.write(write, (new_id() + new_event_id()[12:]).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert child != new_id() + new_event_id()[12:]


@settings(max_examples=200, deadline=None, database=None)
@given(EVENTS)
def test_a_built_event_is_the_event_its_constructor_builds(event: Event) -> None:
    build = event_builder(Event)
    built = build(*(getattr(event, f.name) for f in dataclasses.fields(Event)))
    assert type(built) is Event
    assert built == event
    try:
        expected = hash(event)
    except TypeError:  # an event holding a dict (or a list) is not hashable, as a value
        with pytest.raises(TypeError):
            hash(built)
    else:
        assert hash(built) == expected
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.seq = 2  # type: ignore[misc]  # the point: it is frozen


@st.composite
def definitions(draw: st.DrawFn) -> dict[str, Any]:
    """Run definitions: a DAG by needs and edges (to earlier nodes), with what a definition
    from elsewhere may hold: a repeated id, a need naming no node, entries that are not nodes,
    and now and then a cycle."""
    count = draw(st.integers(0, 8))
    ids = [f"n{i}" for i in range(count)]
    nodes: list[Any] = []
    for i, node in enumerate(ids):
        needs = draw(st.lists(st.sampled_from(ids[:i]), max_size=3)) if i else []
        if draw(st.booleans()):
            needs.append("ghost")
        raw: dict[str, Any] = {"id": node, "needs": needs}
        if draw(st.booleans()):
            raw["type"] = draw(st.sampled_from(["python", "shell", "approval"]))
        nodes.append(raw)
    if count and draw(st.booleans()):
        nodes.append({"id": draw(st.sampled_from(ids)), "type": "again"})
    nodes += draw(st.lists(st.sampled_from([None, 3, {"type": "no id"}, {"id": 7}]), max_size=2))
    pairs = [(a, b) for b in range(count) for a in range(b)]
    chosen = draw(st.lists(st.sampled_from(pairs), max_size=4)) if pairs else []
    edges: list[Any] = [{"from": ids[a], "to": ids[b]} for a, b in chosen]
    if count and draw(st.integers(0, 4)) == 0:
        node = draw(st.sampled_from(ids))
        edges.append({"from": node, "to": node})  # a cycle
    edges += draw(st.lists(st.sampled_from([None, {"from": "x"}, {"from": 1, "to": "n0"}])))
    return {"id": "p", "nodes": nodes, "edges": edges}


@settings(max_examples=300, deadline=None, database=None)
@given(definitions())
def test_a_remembered_shape_is_the_shape_read_afresh(definition: dict[str, Any]) -> None:
    shapes = DefinitionShapes(size=2)
    first = shapes(definition)
    assert shapes(definition) is first  # the same object: remembered
    plain = definition_shape_reference(definition)
    assert first.nodes == plain.nodes
    assert (first.graph is None) == (plain.graph is None)
    if first.graph is not None and plain.graph is not None:
        assert first.graph.nodes == plain.graph.nodes == [n for n, _, _ in first.nodes]
        assert dict(first.graph.parents) == dict(plain.graph.parents)
    else:
        assert all(parents == () for _, _, parents in first.nodes)
        edges = [e for e in definition["edges"] if isinstance(e, dict)]
        assert any(e.get("from") == e.get("to") for e in edges)  # only a cycle has no graph


def test_a_shape_is_remembered_by_identity_for_the_last_few_definitions_only() -> None:
    shapes = DefinitionShapes(size=2)
    a = {"nodes": [{"id": "a", "type": "python"}]}
    b, c = dict(a), dict(a)  # equal, but other objects: read afresh
    first = shapes(a)
    assert shapes(b) is not first and shapes(b).nodes == first.nodes
    assert shapes(a) is first
    shapes(c)  # a is now the oldest of more than two: forgotten
    assert shapes(a) is not first


def test_a_definition_can_be_given_the_graph_built_for_its_pipeline() -> None:
    pipeline = load_dict(
        {"id": "p", "nodes": [{"id": "a", "type": "shell", "command": "x"},
                              {"id": "b", "type": "shell", "command": "x", "needs": ["a"]}]}
    )
    snapshot = pipeline.snapshot()
    shapes = DefinitionShapes()
    shapes.remember(snapshot, pipeline.graph)
    assert shapes(snapshot).graph is pipeline.graph
    assert shapes(snapshot).nodes == definition_shape_reference(snapshot).nodes
    assert isinstance(encoding.definition_shape, DefinitionShapes)  # the fold's
