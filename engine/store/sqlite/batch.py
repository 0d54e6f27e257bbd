"""A batch of the group-commit writer, and its transaction on the connection's thread.

Contract: the writer's queue holds published events and the other items defined here (an
`append`'s group, a `flush` marker, a claim, a breaker outcome, a job, the stop). `transact(db,
batch, fences, path)` writes a batch in ONE transaction on the connection's thread and returns
the events committed:
- Failure isolation: when the batch breaks a constraint (a duplicate `(run_id, seq)` or
  `event_id`), it is written again unit by unit inside the same transaction, so only the
  offending unit (one published event, or one `append`, all-or-nothing) fails (recorded in
  `batch.failed`); the rest commits.
- The runs index is updated in the same transaction from the committed events, each run's update
  carrying the writer's fencing number (the lease check, `SQL_UPDATE_RUN`). A run refused there
  (taken over, or completed: nothing is stored after `run.completed`) has all its events of the
  batch refused (`batch.refused`): the transaction is rolled back and written again without them.
- Then the batch's claims (a run's `run.created` and its claim take one commit) and its breaker
  outcomes, then COMMIT. An error that is no constraint (lock timeout, disk full) rolls back and
  raises: the writer fails the whole batch.
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.breaker import BreakerRecord
from engine.dbfile import describe
from engine.events import Event, EventType
from engine.state import RunStatus
from engine.store.rows import StoreError
from engine.store.sqlite.sql import (
    INSERT_CHUNK,
    SQL_BEGIN,
    SQL_BREAKERS,
    SQL_CLAIM_RUN,
    SQL_COMMIT,
    SQL_INSERT_RUN,
    SQL_LEASE,
    SQL_RELEASE,
    SQL_ROLLBACK,
    SQL_ROLLBACK_TO,
    SQL_SAVEPOINT,
    SQL_UPDATE_RUN,
    sql_insert_events,
)

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from pathlib import Path

__all__ = ["Batch", "Claim", "Group", "Item", "Job", "Marker", "Outcome", "Stop", "transact"]

@dataclass(slots=True)
class Group:
    """The events of one `append` call: committed together or not at all."""

    events: tuple[Event, ...]
    future: asyncio.Future[None]


@dataclass(slots=True)
class Marker:
    """A `flush` call: resolved once everything queued before it is committed. A quiet marker
    (`caught_up`) reports no failure: it only waits."""

    future: asyncio.Future[None]
    quiet: bool = False


@dataclass(slots=True)
class Job:
    """A write other than events: its own transaction, in queue order."""

    run: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]


@dataclass(slots=True)
class Claim:
    """A `claim_run` call. It joins the batch being collected and is written in the batch's
    transaction, after its events: a run's `run.created` and its claim commit together (one
    fsync where there were two, before a run can start). It fails, claiming nothing, when an
    event of its run in the same batch failed. It resolves to the stored breakers, read in
    the same transaction."""

    run_id: str
    params: tuple[Any, ...]  # SQL_CLAIM_RUN's, but for its last, the fence (read when written)
    future: asyncio.Future[dict[str, BreakerRecord]]


@dataclass(slots=True)
class Outcome:
    """An attempt's outcome for a breaker (`record_breaker_outcome`): written in the batch's
    transaction, after its events, with one counting statement. Nobody waits on it."""

    sql: str
    params: tuple[Any, ...]


class Stop:
    """Queued by `close`: the writer ends once everything before it is written."""


Item = Event | Group | Marker | Claim | Outcome | Job | Stop


@dataclass(slots=True)
class Batch:
    """Queue items taken together, ready to write.

    A unit `(start, end, item)` is one published event or one append: `rows[start:end]` of
    `items[item]`. `failed` maps item positions to their error; `claimed` maps the positions of
    claims to the number of runs they claimed (0: no such run).
    """

    items: list[Item]
    events: list[Event] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    units: list[tuple[int, int, int]] = field(default_factory=list)
    failed: dict[int, StoreError] = field(default_factory=dict)
    claimed: dict[int, int] = field(default_factory=dict)
    breakers: dict[str, BreakerRecord] = field(default_factory=dict)  # read by the claims
    # Runs whose events this batch must not write: refused by the lease check (the writer's
    # fencing number is not the run's any more, or the run has completed), with the error.
    refused: dict[str, StoreError] = field(default_factory=dict)
    fences: dict[str, int] = field(default_factory=dict)  # the fences the claims took


def event_row(event: Event) -> tuple[Any, ...]:
    return (
        event.event_id,
        event.run_id,
        event.seq,
        event.event_type,
        event.node_id,
        event.timestamp_utc,
        event.to_json(),
    )


def insert_rows(db: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert event rows, in order, a chunk of them per statement (on the connection's thread).

    Not `executemany`: it lets go of the GIL around every row and must take it back for the
    next, and while the event loop's thread runs a pipeline that takes long (the loop lets go
    of it only when it polls), so a batch written during a run crawled, a row per turn of the
    loop, and was still being written when the run ended. A statement binds its chunk with the
    GIL held, then SQLite inserts the chunk without it.
    """
    start, total = 0, len(rows)
    size = INSERT_CHUNK
    while start < total:
        while size > total - start:
            size //= 2
        chunk = rows[start : start + size]
        db.execute(sql_insert_events(size), list(itertools.chain.from_iterable(chunk)))
        start += size


def run_index_updates(
    events: Iterable[Event], fences: Mapping[str, int]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], set[str]]:
    """What `events` (in commit order) change in the `runs` index: rows to insert, updates
    (`SQL_UPDATE_RUN`'s parameters, with the writer's fence of each run from `fences`), and the
    runs with an event after their run.completed in these very events (refused)."""
    created: list[tuple[Any, ...]] = []
    # run_id -> [state, started_at, set ended_at?, ended_at, highest seq, completed?]
    updates: dict[str, list[Any]] = {}
    ended: set[str] = set()
    after_end: set[str] = set()
    for event in events:
        update = updates.get(event.run_id)
        if update is None:
            update = updates[event.run_id] = [None, None, 0, None, event.seq, 0]
        else:
            if event.seq > update[4]:
                update[4] = event.seq
            if ended and event.run_id in ended:
                after_end.add(event.run_id)
        etype = event.event_type
        if not etype.startswith("run."):
            continue
        data = event.data or {}
        if etype == EventType.RUN_CREATED:
            created.append(
                (
                    event.run_id,
                    str(data.get("pipeline_id", "")),
                    event.timestamp_utc,
                    data.get("replay_of"),
                    data.get("retry_of"),
                )
            )
        elif etype == EventType.RUN_STATE_CHANGED:
            to = data.get("to")
            if to is not None:
                update[0] = str(to)
                if to in (RunStatus.RUNNING, RunStatus.WAITING) and update[1] is None:
                    update[1] = event.timestamp_utc
        elif etype == EventType.RUN_COMPLETED:
            if data.get("state") is not None:
                update[0] = str(data["state"])
            update[2], update[3], update[5] = 1, event.timestamp_utc, 1
            ended.add(event.run_id)
        elif etype == EventType.RUN_RESUMED:
            update[2], update[3], update[5] = 1, None, 0
    rows = [
        (*update[:5], run_id, update[5], fences.get(run_id, 0))
        for run_id, update in updates.items()
    ]
    return created, rows, after_end



def transact(
    db: sqlite3.Connection, batch: Batch, fences: Mapping[str, int], path: Path
) -> list[Event]:
    """Write `batch` in one transaction; the events committed (see the module's contract).

    The lease check rides on the runs index update. A refused run's events are taken out and
    the transaction written again (rare: only a writer that lost its run, or wrote after the
    end, pays for it)."""
    while True:
        db.execute(SQL_BEGIN)
        try:
            committed = _write_units(db, batch, path)
            refused = _refused_runs(db, committed, fences)
            if refused:
                db.execute(SQL_ROLLBACK)
                batch.refused.update(refused)
                _refuse_units(batch, refused)
                continue
            _claim(db, batch, fences)
            for item in batch.items:
                if type(item) is Outcome:
                    db.execute(item.sql, item.params)
            db.execute(SQL_COMMIT)
        except BaseException:
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute(SQL_ROLLBACK)
            raise
        return committed


def _write_units(db: sqlite3.Connection, batch: Batch, path: Path) -> list[Event]:
    committed = batch.events
    try:
        insert_rows(db, batch.rows)
    except sqlite3.IntegrityError:
        # Some unit breaks a constraint: undo, then insert unit by unit so that only the
        # offending units fail (still one transaction, one fsync).
        db.execute(SQL_ROLLBACK)
        db.execute(SQL_BEGIN)
        committed = []
        for start, end, position in batch.units:
            db.execute(SQL_SAVEPOINT)
            try:
                insert_rows(db, batch.rows[start:end])
            except sqlite3.IntegrityError as exc:
                db.execute(SQL_ROLLBACK_TO)
                batch.failed[position] = unit_error(batch.events[start:end], exc, path)
            else:
                committed.extend(batch.events[start:end])
            db.execute(SQL_RELEASE)
    return committed


def _refused_runs(
    db: sqlite3.Connection, committed: list[Event], fences: Mapping[str, int]
) -> dict[str, StoreError]:
    """Update the runs index for `committed` under the lease check; the runs refused."""
    created, updates, after_end = run_index_updates(committed, fences)
    if created:
        db.executemany(SQL_INSERT_RUN, created)
    refused: dict[str, StoreError] = {}
    for run_id in after_end:
        refused[run_id] = lease_error(run_id, None)
    for params in updates:
        run_id = params[5]
        if run_id in refused or db.execute(SQL_UPDATE_RUN, params).rowcount:
            continue
        row = db.execute(SQL_LEASE, (run_id,)).fetchone()
        if row is not None:  # no row: events of a run never created are stored as they are
            refused[run_id] = lease_error(run_id, row)
    return refused


def _refuse_units(batch: Batch, refused: Mapping[str, StoreError]) -> None:
    """Take the refused runs' units out of the batch, failing them."""
    rows: list[tuple[Any, ...]] = []
    events: list[Event] = []
    units: list[tuple[int, int, int]] = []
    for start, end, position in batch.units:
        run_id = batch.events[start].run_id
        if run_id in refused:
            batch.failed[position] = refused[run_id]
            continue
        begin = len(rows)
        rows += batch.rows[start:end]
        events += batch.events[start:end]
        units.append((begin, len(rows), position))
    batch.rows, batch.events, batch.units = rows, events, units


def _claim(db: sqlite3.Connection, batch: Batch, fences: Mapping[str, int]) -> None:
    """Write the batch's claims (in its transaction), except those of runs whose events in the
    batch failed: they fail with the same error."""
    failed_runs: dict[str, StoreError] = dict(batch.refused)
    for position, error in batch.failed.items():
        item = batch.items[position]
        events = (item,) if type(item) is Event else getattr(item, "events", ())
        for event in events:
            failed_runs.setdefault(event.run_id, error)
    for position, item in enumerate(batch.items):
        if type(item) is not Claim:
            continue
        failure = failed_runs.get(item.run_id)
        if failure is not None:
            batch.failed[position] = failure
            continue
        held = fences.get(item.run_id, 0)
        if db.execute(SQL_CLAIM_RUN, (*item.params, held)).rowcount:
            batch.claimed[position] = 1
            batch.fences[item.run_id] = max(held, 1)
            continue
        row = db.execute(SQL_LEASE, (item.run_id,)).fetchone()
        if row is not None:
            batch.failed[position] = lease_error(item.run_id, row)
    if batch.claimed:
        batch.breakers = {row[0]: BreakerRecord(*row) for row in db.execute(SQL_BREAKERS)}


def lease_error(run_id: str, row: Sequence[Any] | None) -> StoreError:
    """Why a run's events are refused: completed (`row` None or ended), or taken over."""
    from engine.lease import LeaseLostError

    if row is None or row[1] is not None:
        text = f"run {run_id} has already completed; the store takes no events after its end"
    else:
        owner = f"pid {row[3]} on {row[2]}" if row[3] is not None else "another process"
        text = (
            f"run {run_id} was taken over by another process ({owner}); this process "
            "stopped its nodes and wrote nothing more"
        )
    error = StoreError(text)
    error.__cause__ = LeaseLostError(run_id, text)
    return error


def unit_error(events: Sequence[Event], exc: Exception, path: Path) -> StoreError:
    first = events[0]
    what = f"event seq {first.seq}" if len(events) == 1 else f"{len(events)} events"
    if "events.run_id, events.seq" in str(exc):
        problem = "that run already has an event with that seq"
    elif "events.event_id" in str(exc):
        problem = "an event with that event_id is already stored"
    elif not isinstance(exc, sqlite3.Error):
        problem = f"it cannot be written as JSON ({exc})"
    else:
        problem = describe(exc, path)
    error = StoreError(f"could not store {what} of run {first.run_id} in {path}: {problem}")
    error.__cause__ = exc
    return error
