"""The store's hot-path encodings agree with their plain versions (property tests).

Three tricks keep the SQLite store fast, each beside an obvious way to do the same:
- events cross from SQLite as ONE JSON array per query (`group_concat`), parsed with one
  `json.loads` and `trusted_event`; plainly: a row per event, each validated by
  `Event.from_json` (the store's own fallback past SQLite's string limit reads rows, too);
- a batch is inserted in multi-row statements of 256, 128, ... 1 rows (`batch.insert_rows`);
  plainly: `executemany` of the one-row statement;
- the runs index is updated from a batch by a hand-rolled pass (`batch.run_index_updates`);
  plainly: the fold of the run's events (`engine.state.fold`), which every view uses.
"""

from __future__ import annotations

import contextlib
import sqlite3
import string
import warnings
from typing import TYPE_CHECKING, Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.events import Event, EventType
from engine.state import fold
from engine.store.sqlite.batch import event_row, insert_rows, run_index_updates
from engine.store.sqlite.reads import parse_array
from engine.store.sqlite.schema import migrations
from engine.store.sqlite.sql import (
    SQL_EVENTS,
    SQL_EVENTS_ARRAY,
    SQL_INSERT_EVENT,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

# Hypothesis imports its patch writer (libcst, which warns on import) only when an example fails;
# under `filterwarnings = error` that turned a falsifying example into an INTERNALERROR.
with warnings.catch_warnings(), contextlib.suppress(ImportError):
    warnings.simplefilter("ignore", DeprecationWarning)
    import hypothesis.extra._patching  # noqa: F401

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(string.ascii_letters + "é_", max_size=6), inner, max_size=4),
    max_leaves=12,
)
_STATES = ["running", "waiting", "succeeded", "failed", "cancelled", "timeout"]


@st.composite
def runs(draw: st.DrawFn) -> list[Event]:
    """A run's events with consecutive seqs: created, then node logs and run state changes
    with arbitrary data, maybe a completion last."""
    run_id = draw(st.sampled_from(["r1", "run-ü", "x" * 30]))
    clock = iter(range(1, 10_000))

    def stamp() -> str:
        return f"2026-01-01T00:00:{next(clock) % 60:02d}.{next(clock):06d}Z"

    definition = {"id": "p", "nodes": [{"id": "a", "type": "shell"}]}
    events = [
        Event(
            f"{run_id}-1", 1, EventType.RUN_CREATED, run_id, stamp(),
            data={"pipeline_id": "p", "definition": definition, "params": {}},
        )
    ]
    for _ in range(draw(st.integers(0, 30))):
        seq = len(events) + 1
        if draw(st.booleans()):
            to = draw(st.sampled_from(_STATES[:2]))
            events.append(
                Event(f"{run_id}-{seq}", seq, EventType.RUN_STATE_CHANGED, run_id, stamp(),
                      data={"to": to})
            )
        else:
            events.append(
                Event(f"{run_id}-{seq}", seq, EventType.NODE_LOG, run_id, stamp(), node_id="a",
                      data={"line": draw(st.text(max_size=20)), "extra": draw(_json)})
            )
    if draw(st.booleans()):
        seq = len(events) + 1
        state = draw(st.sampled_from(_STATES[2:]))
        events.append(
            Event(f"{run_id}-{seq}", seq, EventType.RUN_COMPLETED, run_id, stamp(),
                  data={"state": state})
        )
    return events


def _database() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:", isolation_level=None)
    for statements in migrations():
        for statement in statements:
            db.execute(statement)
    return db


def _rows(db: sqlite3.Connection) -> Iterator[tuple[Any, ...]]:
    return db.execute("SELECT * FROM events ORDER BY run_id, seq")


@SETTINGS
@given(runs(), st.integers(1, 600))
def test_a_batch_inserted_in_chunks_equals_a_row_per_statement(
    events: list[Event], padding: int
) -> None:
    # Padding with other runs' logs makes batches of every size around the chunk boundaries.
    other = [
        Event(f"pad-{i}", i + 1, EventType.NODE_LOG, "pad", "2026-01-01T00:00:00Z", node_id="a")
        for i in range(padding)
    ]
    rows = [event_row(event) for event in [*events, *other]]
    fast, plain = _database(), _database()
    insert_rows(fast, rows)
    plain.executemany(SQL_INSERT_EVENT, rows)
    assert list(_rows(fast)) == list(_rows(plain))


@SETTINGS
@given(runs(), st.integers(0, 5), st.sampled_from([-1, 1, 3, 1000]))
def test_events_read_as_one_array_equal_events_read_row_by_row(
    events: list[Event], after: int, limit: int
) -> None:
    db = _database()
    db.executemany(SQL_INSERT_EVENT, [event_row(event) for event in events])
    params = (events[0].run_id, after, limit)
    fast = parse_array(db.execute(SQL_EVENTS_ARRAY, params).fetchone()[0])
    plain = [Event.from_json(body) for (body,) in db.execute(SQL_EVENTS, params)]
    assert fast == plain
    assert [e.to_json() for e in fast] == [e.to_json() for e in plain]


@SETTINGS
@given(runs())
def test_the_runs_index_update_agrees_with_the_fold(events: list[Event]) -> None:
    created, updates, after_end = run_index_updates(events, {})
    assert after_end == set()
    assert [row[0] for row in created] == [events[0].run_id]
    assert created[0][2] == events[0].timestamp_utc
    (update,) = updates
    state, started_at, sets_end, ended_at, last_seq, run_id, completed, fence = update
    folded = fold(events)
    assert run_id == events[0].run_id and fence == 0
    assert (state or "pending") == folded.state.value
    assert started_at == folded.started_at
    assert last_seq == len(events)
    assert bool(completed) == bool(sets_end) == (folded.ended_at is not None)
    assert ended_at == folded.ended_at
