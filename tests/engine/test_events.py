"""Events as values: the executor's cheap way of building one gives the same frozen `Event` as
its constructor, and an event's JSON line is its contract dict encoded, whatever it holds; its
timestamp and id read the clock they say they do."""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.events import EncodedData, Event, EventType, new_event, new_event_id, utc_now_iso

TEXT = st.text(max_size=12)  # any characters: quotes, escapes, non-ASCII, surrogates
JSON_DATA = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=8,
)
EVENTS = st.builds(
    Event,
    event_id=TEXT,
    seq=st.integers(min_value=1),
    event_type=st.sampled_from(list(EventType)) | TEXT,
    run_id=TEXT,
    timestamp_utc=TEXT,
    actor=TEXT,
    attempt=st.integers(min_value=0),
    node_id=st.none() | TEXT,
    error_class=st.none() | TEXT,
    reason=st.none() | TEXT,
    inputs_hash=st.none() | TEXT,
    outputs_hash=st.none() | TEXT,
    data=st.none() | st.dictionaries(TEXT, JSON_DATA, max_size=4),
)


def encoded(fields: dict[str, Any]) -> str:
    return json.dumps(fields, separators=(",", ":"), default=str)


@settings(max_examples=300, deadline=None, database=None)
@given(EVENTS)
def test_an_events_json_line_is_its_dict_encoded(event: Event) -> None:
    assert event.to_json() == encoded(event.to_dict())


@pytest.mark.parametrize(
    "odd",
    [
        {"seq": True},  # a bool is an int to Python, not to JSON
        {"attempt": 2.0},
        {"node_id": 5},
        {"run_id": None},
        {"reason": ["a", "list"]},
        {"data": {"when": object()}},  # encoded as its str, as `default=str` says
    ],
)
def test_an_event_holding_odd_values_is_encoded_the_same_way(odd: dict[str, Any]) -> None:
    event = dataclasses.replace(Event("e1", 1, EventType.NODE_LOG, "r1", "t"), **odd)
    assert event.to_json() == encoded(event.to_dict())


@settings(max_examples=100, deadline=None, database=None)
@given(EVENTS)
def test_an_event_the_executor_builds_is_the_event_its_constructor_builds(event: Event) -> None:
    built = new_event(*(getattr(event, f.name) for f in dataclasses.fields(Event)))
    assert type(built) is Event
    assert built == event
    if event.data is None:  # an event holding a dict is not hashable, as a value
        assert hash(built) == hash(event)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.seq = 2  # type: ignore[misc]  # the point: it is frozen


DATA = st.dictionaries(TEXT, JSON_DATA, max_size=4)


@settings(max_examples=200, deadline=None, database=None)
@given(DATA, st.data())
def test_data_encoded_beforehand_is_written_exactly_as_the_plain_data(
    data: dict[str, Any], draw: st.DataObject
) -> None:
    keys = draw.draw(st.sets(st.sampled_from(list(data)))) if data else set()
    known = {key: encoded(data[key]) for key in keys}
    plain = Event("e1", 1, EventType.NODE_STARTED, "r1", "t", data=data)
    without_text = EncodedData(data)  # made as a dict is: encoded like one
    for ready in (EncodedData.encode(data), EncodedData.joined(data, known), without_text):
        assert ready == data
        assert dataclasses.replace(plain, data=ready).to_json() == plain.to_json()
        assert copy.deepcopy(ready) == data
    assert EncodedData.encode(data).json == encoded(data)
    assert EncodedData.joined(data, known).json == encoded(data)


@pytest.mark.parametrize(
    "ns",
    [
        1_700_000_000_000_042_999,  # 42 us into a second: zero-padded
        1_700_000_000_999_999_999,  # the last microsecond of it
        1_700_000_001_000_000_000,  # the next second: its text is written anew
        1_700_000_000_500_000_000,  # and a clock set back to the second before
        1_783_000_000_123_456_000,
    ],
)
def test_a_timestamp_is_the_clocks_time_to_the_microsecond(
    ns: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One after another in a process, as the per-second text is kept between calls.
    monkeypatch.setattr(time, "time_ns", lambda: ns)
    expected = datetime.fromtimestamp(ns // 1000 / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert utc_now_iso() == expected


def test_an_event_id_starts_with_its_millisecond_in_hex(monkeypatch: pytest.MonkeyPatch) -> None:
    ids = []
    for ms in (1_700_000_000_000, 1_700_000_000_000, 1_700_000_000_001, 1_699_999_999_999):
        monkeypatch.setattr(time, "time_ns", lambda ms=ms: ms * 1_000_000 + 999_999)
        ids.append(new_event_id())
    assert [int(i[:12], 16) for i in ids] == [
        1_700_000_000_000, 1_700_000_000_000, 1_700_000_000_001, 1_699_999_999_999
    ]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert len(set(ids)) == 4  # the same millisecond, different ids
