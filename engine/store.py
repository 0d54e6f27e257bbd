"""The durable event store: SQLite through one aiosqlite connection, and the only owner of SQL.

Contract:
- `Store` is an async context manager owning one aiosqlite connection (one worker thread) and
  every SQL statement of the project; the schema is `schema.sql`, versioned through
  `PRAGMA user_version` and upgraded on open by its ordered `-- migration N` sections. A database
  written by a newer Interlock, a file that is not an Interlock database, or a path that cannot
  be created raises `StoreError` with one sentence naming the path and the problem; no raw
  sqlite3 error escapes. The database file is created 0600, directories the store creates 0700.
- Durability: WAL, `synchronous=FULL` by default (`NORMAL` on request), a busy timeout, foreign
  keys, and every write in `BEGIN IMMEDIATE ... COMMIT`.
- Writing is group commit through ONE writer task per store. `publish(event)` only appends to a
  queue and never blocks. The writer takes what is queued in batches (closed at `batch_size`
  events, after `batch_window` seconds, or at once when somebody is waiting on the batch and
  nothing more is queued) and writes each batch in one transaction. "Acknowledged" means
  committed: `flush()` returns, and `append()` returns, only after the COMMIT that made durable
  everything published before the call (for `append`, its own events) has succeeded.
- Why one writer task: it gives publish order = commit order without callers coordinating, one
  fsync for many events (the only way past a few hundred commits per second with FULL), no
  contention between writers of one process for SQLite's write lock, and cancellation safety:
  callers await shielded futures, so cancelling a caller never abandons a half-written batch. Other
  writes (ownership, commands, breakers) go through the same queue, so they are ordered after the
  events published before them; a `claim_run` joins the batch being collected, so a new run's
  `run.created` and its claim take one commit, not two. The default batch cap is 2048 events rather
  than 512: batches only grow that large under bulk load, where the unique `event_id` index (random
  keys, so every batch dirties pages all over it; the executor's ids begin with the time, see
  `new_event_id`, which keeps a run's events together) makes bigger batches write far fewer pages
  per event; measured, about 40% more events per second with FULL. The default window is 10 ms
  rather than 2: a run publishes events in bursts, and a commit in the middle of one competes with
  it for the GIL and the CPU (the connection's thread binds rows in Python); measured on 2 cores, a
  200-node chain took a fifth longer with 2 ms. Waiters are not kept waiting by it.
- Failure isolation: when a batch breaks a constraint (a duplicate `(run_id, seq)` or
  `event_id`), the batch is retried unit by unit inside the same transaction, so only the
  offending unit (one published event, or one `append` call, which is all-or-nothing) fails,
  with `StoreError`; everything else in the batch commits and the writer goes on. A failed
  published event is reported to the `append` that owns it, else to the next `flush()`.
- The `runs` table is an index over the events, maintained by the store in the same transaction
  as the events it is derived from; events stay the source of truth (`fold_run` folds them).
  Ownership (`claim_run`, `take_over`, `heartbeat`, `release_run`) is not derived from events,
  except that the commit of a `run.completed` also releases the run.
- Leases with fencing (`engine.lease`): the store writes each run's events with the fencing
  number it holds for the run (0 for a run it never claimed), checked by the runs-index update
  of every batch, in the batch's transaction. A run refused there (taken over by another
  process, or already completed: no event is ever stored after a `run.completed`) has all its
  events of the batch refused. `take_over` is a compare-and-set on the fence: of racing takers
  exactly one wins. All of it is plain SQL, for the PostgreSQL store to reuse.
- Fail-closed: once a batch holding a run's published events fails (lock past the 12 s busy
  timeout, disk full, I/O error) or is refused by the lease check, the store writes nothing more
  of that run (so its log has no seq gap) and tells `write_failure_listeners`. `lagging()` says
  whether something published over a second ago is still unacknowledged (the executor starts no
  node meanwhile); `commit_listeners` see the events of every commit (what the CLI prints as
  done is what is stored).
- Breakers: `record_breaker_outcome` counts an attempt's outcome in the stored breaker with one
  atomic statement in the batch's transaction, so attempts in every process count;
  `claim_breaker_trial` gives a half-open breaker's one trial to one process (compare-and-set).
- Reading trusts what the store wrote: bodies are parsed with `json.loads` and `trusted_event`,
  without the validation `Event.from_dict` applies to input from outside.
- `readonly=True` opens the file read-only (`mode=ro`), for followers in other processes; WAL
  lets them read while a writer commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import importlib.resources
import itertools
import json
import logging
import operator
import os
import re
import socket
import sqlite3
import time
import warnings
import weakref
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

import aiosqlite
import psutil

from engine import dbfile
from engine.breaker import BreakerRecord
from engine.errors import InterlockError, UnknownRunError
from engine.events import Event, EventType, trusted_event
from engine.run_filter import RunFilter, RunPage
from engine.state import RunState, RunStatus, fold

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
    from types import TracebackType

__all__ = [
    "SCHEMA_VERSION",
    "BreakerRecord",
    "Command",
    "Owner",
    "RunRow",
    "Store",
    "StoreError",
]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

# "ILK1": marks the file as an Interlock database (`PRAGMA application_id`).
APPLICATION_ID: Final = 0x494C4B31
COMMAND_KINDS: Final = frozenset({"cancel", "approve", "reject"})
_SYNCHRONOUS: Final = frozenset({"NORMAL", "FULL", "EXTRA"})
_MIN_PREFIX: Final = 4
# Same-host liveness: how far two readings of one process's create time may differ (psutil
# derives it from the boot time, which moves by up to a second when the clock is adjusted).
_CREATE_TIME_TOLERANCE: Final = 1.0


class StoreError(InterlockError):
    """The store could not do what was asked; the message names the database and the problem."""


# ---------------------------------------------------------------------------------------------
# rows


@dataclass(frozen=True)
class RunRow:
    """A run as indexed in the `runs` table (timestamps of events are ISO 8601 strings)."""

    run_id: str
    pipeline_id: str
    state: str
    created_at: str
    started_at: str | None
    ended_at: str | None
    last_seq: int
    replay_of: str | None
    owner_host: str | None
    owner_pid: int | None
    owner_started_at: float | None
    heartbeat_at: float | None
    owner_id: str | None = None
    fence: int = 0
    lease_expires_at: float | None = None
    retry_of: str | None = None

    @property
    def owner(self) -> Owner | None:
        """The process that claimed the run, if any."""
        if self.owner_host is None or self.owner_pid is None:
            return None
        return Owner(self.owner_host, self.owner_pid, self.owner_started_at or 0.0)

    def shown_state(self, now: float | None = None) -> str:
        """The state to show: `interrupted` when the lease says so (`engine.lease`), else the
        stored one. Pure apart from the same-host pid check: reading never writes."""
        from engine.lease import UNSETTLED, is_interrupted

        if self.state in UNSETTLED and is_interrupted(self, time.time() if now is None else now):
            return "interrupted"
        return self.state


@dataclass(frozen=True)
class Owner:
    """A process that owns runs: its host, pid and process create time (epoch seconds).

    The create time tells a live owner from a later process that was given the same pid.
    """

    host: str
    pid: int
    started_at: float

    @classmethod
    def current(cls) -> Owner:
        process = psutil.Process()
        return cls(socket.gethostname(), process.pid, process.create_time())

    @property
    def id(self) -> str:
        """The owner's id in leases: host, pid and create time, so one per process ever."""
        return f"{self.host}/{self.pid}/{self.started_at:.3f}"

    def is_alive(self, *, heartbeat_at: float | None = None, stale_after: float = 15.0) -> bool:
        """On this host: the pid exists and is the same process. Elsewhere: a fresh heartbeat."""
        if self.host != socket.gethostname():
            return heartbeat_at is not None and time.time() - heartbeat_at < stale_after
        try:
            process = psutil.Process(self.pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                return False
            created = process.create_time()
        except psutil.NoSuchProcess:
            return False
        except psutil.AccessDenied:
            return True  # it exists; someone else's process is still a live owner
        if self.started_at <= 0:
            return True  # create time unknown: the pid is all there is to go on
        return abs(created - self.started_at) <= _CREATE_TIME_TOLERANCE


@dataclass(frozen=True)
class Command:
    """A request from another process (`cancel`, `approve`, `reject`) to a run's owner."""

    id: int
    run_id: str
    kind: str
    node_id: str | None
    reason: str | None
    actor: str
    created_at: float
    acked_at: float | None
    result: str | None


# ---------------------------------------------------------------------------------------------
# schema

_MIGRATION_HEADER = re.compile(r"^-- migration (\d+)[ \t]*$", re.MULTILINE)


def _split_statements(script: str) -> list[str]:
    """The SQL statements of `script`, in order (comments between statements dropped)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        if not buffer and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        raise RuntimeError(f"schema.sql ends inside a statement: {buffer.strip()[:60]!r}")
    return statements


def _parse_migrations(text: str) -> tuple[tuple[str, ...], ...]:
    """`schema.sql` as its migrations: entry N-1 holds the statements that make version N."""
    parts = _MIGRATION_HEADER.split(text)
    numbers = [int(n) for n in parts[1::2]]
    if numbers != list(range(1, len(numbers) + 1)):
        raise RuntimeError(f"schema.sql migrations must be numbered 1, 2, 3...; found {numbers}")
    return tuple(tuple(_split_statements(body)) for body in parts[2::2])


@functools.cache
def migrations() -> tuple[tuple[str, ...], ...]:
    text = importlib.resources.files("engine").joinpath("schema.sql").read_text("utf-8")
    return _parse_migrations(text)


SCHEMA_VERSION: Final = len(migrations())


# ---------------------------------------------------------------------------------------------
# SQL (all of it, besides schema.sql)

_EVENT_COLUMNS = "event_id, run_id, seq, event_type, node_id, timestamp_utc, body"
_RUN_COLUMNS = (
    "run_id, pipeline_id, state, created_at, started_at, ended_at, last_seq, replay_of, "
    "owner_host, owner_pid, owner_started_at, heartbeat_at, owner_id, fence, lease_expires_at, "
    "retry_of"
)
_COMMAND_COLUMNS = "id, run_id, kind, node_id, reason, actor, created_at, acked_at, result"
_BREAKER_COLUMNS = "key, state, failures, opened_at, recovery_timeout, updated_at"

SQL_INSERT_EVENT = f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"


@functools.cache
def _sql_insert_events(count: int) -> str:
    """`SQL_INSERT_EVENT` for `count` rows at once."""
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * count)
    return f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES {values}"


# Rows per INSERT: the largest of the few statement sizes a batch is cut into (256, 128, ... 1
# rows, so that every statement is prepared once and then found in sqlite3's statement cache).
_INSERT_CHUNK: Final = 256
SQL_INSERT_RUN = (
    "INSERT OR IGNORE INTO runs (run_id, pipeline_id, state, created_at, replay_of, retry_of) "
    "VALUES (?, ?, 'pending', ?, ?, ?)"
)
# ?1 new state or NULL, ?2 a start time (kept only if none yet), ?3 whether to set ended_at,
# ?4 the new ended_at (NULL after a resume), ?5 the batch's highest seq, ?6 the run, ?7 whether
# the run completed: a completed run has no owner, from the very commit that completes it (its
# owner then has no `release_run` left to do). ?8 the writer's fencing number: the lease check
# of every batch, in its transaction. A run whose run.completed is committed (`ended_at` set)
# takes no more events: that is how the store, not only the executor, keeps the end the end
# (an override resume reopens the run in its take-over first). No row updated: the batch's
# events of that run are refused (unless the run has no row at all: see `_refused_runs`).
SQL_UPDATE_RUN = """
UPDATE runs SET
    state = coalesce(?1, state),
    started_at = coalesce(started_at, ?2),
    ended_at = CASE WHEN ?3 THEN ?4 ELSE ended_at END,
    last_seq = max(last_seq, ?5),
    owner_id = CASE WHEN ?7 THEN NULL ELSE owner_id END,
    owner_host = CASE WHEN ?7 THEN NULL ELSE owner_host END,
    owner_pid = CASE WHEN ?7 THEN NULL ELSE owner_pid END,
    owner_started_at = CASE WHEN ?7 THEN NULL ELSE owner_started_at END,
    heartbeat_at = CASE WHEN ?7 THEN NULL ELSE heartbeat_at END,
    lease_expires_at = CASE WHEN ?7 THEN NULL ELSE lease_expires_at END
WHERE run_id = ?6 AND fence = ?8 AND ended_at IS NULL
"""
SQL_LEASE = "SELECT fence, ended_at, owner_host, owner_pid FROM runs WHERE run_id = ?"

SQL_EVENTS = "SELECT body FROM events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?"
SQL_EVENTS_OF_TYPE = (
    "SELECT body FROM events WHERE run_id = ? AND seq > ? AND substr(event_type, 1, ?) = ? "
    "ORDER BY seq LIMIT ?"
)
SQL_TAIL_EVENTS = "SELECT body FROM events WHERE run_id = ? ORDER BY seq DESC LIMIT ?"


def _as_json_array(select_bodies: str) -> str:
    """The same rows as one JSON array text, concatenated by SQLite (NULL if there are none).

    One string crosses from SQLite to Python instead of a row per event: the cheapest way to
    read 100,000 events. Before SQLite 3.44 group_concat's order is unspecified, so readers
    sort by seq afterwards (a linear pass over data that is already in order).
    """
    return f"SELECT '[' || group_concat(body, ',') || ']' FROM ({select_bodies})"


SQL_EVENTS_ARRAY = _as_json_array(SQL_EVENTS)
SQL_EVENTS_OF_TYPE_ARRAY = _as_json_array(SQL_EVENTS_OF_TYPE)
SQL_TAIL_EVENTS_ARRAY = _as_json_array(SQL_TAIL_EVENTS)
# A chunk of a run's events to fold: as one array, with how many there are and the last seq.
SQL_EVENTS_CHUNK_ROWS = (
    "SELECT body, seq FROM events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?"
)
SQL_EVENTS_CHUNK = (
    "SELECT '[' || group_concat(body, ',') || ']', count(*), coalesce(max(seq), 0) "
    f"FROM ({SQL_EVENTS_CHUNK_ROWS})"
)
# Events per chunk when folding a run: small enough that a chunk's dicts and events are freed
# and their memory reused (still in cache) before the next is parsed; large enough that the
# round trips to the connection's thread cost little.
_FOLD_CHUNK: Final = 2048
SQL_LAST_SEQ = "SELECT coalesce(max(seq), 0) FROM events WHERE run_id = ?"

SQL_RUN = f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?"
SQL_RUNS = f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY created_at DESC, rowid DESC LIMIT ?"
SQL_RUNS_IN_STATES = (
    f"SELECT {_RUN_COLUMNS} FROM runs WHERE state IN (SELECT value FROM json_each(?)) "
    "ORDER BY created_at DESC, rowid DESC LIMIT ?"
)
# The whole history, a page at a time: newest first, the next page after a (created_at, rowid)
# keyset; the WHERE clause comes from `_runs_where`.
SQL_RUNS_PAGE = (
    f"SELECT {_RUN_COLUMNS}, rowid FROM runs{{}} ORDER BY created_at DESC, rowid DESC LIMIT ?"
)
SQL_COUNT_RUNS = "SELECT count(*) FROM runs{}"
SQL_LINKED_RUNS = (
    "SELECT run_id, 'retry', created_at FROM runs WHERE retry_of = ?1 UNION ALL "
    "SELECT run_id, 'replay', created_at FROM runs WHERE replay_of = ?1 ORDER BY 3, 1"
)


def _runs_where(
    query: RunFilter | None,
    after: tuple[str, int] | None,
    down_to: tuple[str, int] | None = None,
) -> tuple[str, list[Any]]:
    """The WHERE clause (with its parameters) of a filtered page or count of runs."""
    clauses: list[str] = []
    params: list[Any] = []
    if query is not None:
        if "interrupted" in query.states:
            # Interrupted is worked out from the lease, never written by a reader: a run whose
            # lease has expired counts (the same-host dead-pid shortcut is not SQL's to see).
            clauses.append(
                "(state IN (SELECT value FROM json_each(?)) OR (state IN "
                "('pending', 'running', 'waiting') AND lease_expires_at < ?))"
            )
            params += [json.dumps(list(query.states)), time.time()]
        elif len(query.states) == 1:  # `=`: the (state, created_at) index gives the order too
            clauses.append("state = ?")
            params.append(query.states[0])
        elif query.states:
            clauses.append("state IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(list(query.states)))
        if query.pipeline is not None:
            clauses.append("pipeline_id = ?")
            params.append(query.pipeline)
        for word in query.words:
            # LIKE, not instr over lower(...): no string is built per row (4x faster measured).
            clauses.append(
                "(run_id LIKE ? ESCAPE '\\' OR pipeline_id LIKE ? ESCAPE '\\' "
                "OR state LIKE ? ESCAPE '\\')"
            )
            pattern = "%" + re.sub(r"([%_\\])", r"\\\1", word) + "%"
            params += [pattern, pattern, pattern]
    if after is not None:
        clauses.append("(created_at < ? OR (created_at = ? AND rowid < ?))")
        params += [after[0], after[0], after[1]]
    if down_to is not None:
        clauses.append("(created_at > ? OR (created_at = ? AND rowid >= ?))")
        params += [down_to[0], down_to[0], down_to[1]]
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


SQL_RUNS_BY_PREFIX = (
    f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id >= ? AND run_id < ? ORDER BY run_id LIMIT 3"
)

# A claim by the process that created the run (fence 0 -> 1) or that took it over (its fence
# stays): either way only with the fencing number it holds, on a run not completed.
SQL_CLAIM_RUN = """
UPDATE runs SET owner_id = ?1, owner_host = ?2, owner_pid = ?3, owner_started_at = ?4,
    heartbeat_at = ?5, lease_expires_at = ?6, fence = CASE WHEN fence = 0 THEN 1 ELSE fence END
WHERE run_id = ?7 AND fence = ?8 AND ended_at IS NULL
"""
# The take-over (resume; cancel of an interrupted run): a compare-and-set on the fencing number
# the taker read, allowed only while the run is still without a live owner as the taker judged
# it: no owner, an expired lease (?5 is now), or the very owner (?9 host, ?10 pid) the taker
# found dead on its own host. Of any number of racing takers exactly one updates the row. ?11:
# reopen a completed run (an override of a failed hard gate).
SQL_TAKE_OVER = """
UPDATE runs SET owner_id = ?1, owner_host = ?2, owner_pid = ?3, owner_started_at = ?4,
    heartbeat_at = ?5, lease_expires_at = ?6, fence = fence + 1,
    ended_at = CASE WHEN ?11 THEN NULL ELSE ended_at END
WHERE run_id = ?7 AND fence = ?8 AND (ended_at IS NULL OR ?11)
    AND (owner_id IS NULL OR lease_expires_at IS NULL OR lease_expires_at < ?5
         OR (owner_host = ?9 AND owner_pid = ?10))
"""
SQL_HEARTBEAT = (
    "UPDATE runs SET heartbeat_at = ?, lease_expires_at = ? "
    "WHERE run_id = ? AND owner_id = ? AND fence = ?"
)
SQL_RELEASE_RUN = (
    "UPDATE runs SET owner_id = NULL, owner_host = NULL, owner_pid = NULL, "
    "owner_started_at = NULL, heartbeat_at = NULL, lease_expires_at = NULL "
    "WHERE run_id = ? AND fence = ?"
)

SQL_POST_COMMAND = (
    "INSERT INTO commands (run_id, kind, node_id, reason, actor, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
SQL_PENDING_COMMANDS = (
    f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE acked_at IS NULL "
    "AND run_id IN (SELECT value FROM json_each(?)) ORDER BY id"
)
SQL_ACK_COMMAND = "UPDATE commands SET acked_at = ?, result = ? WHERE id = ? AND acked_at IS NULL"
SQL_COMMAND = f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE id = ?"

SQL_BREAKERS = f"SELECT {_BREAKER_COLUMNS} FROM breakers ORDER BY key"
SQL_SAVE_BREAKER = f"""
INSERT INTO breakers ({_BREAKER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (key) DO UPDATE SET
    state = excluded.state,
    failures = excluded.failures,
    opened_at = excluded.opened_at,
    recovery_timeout = excluded.recovery_timeout,
    updated_at = excluded.updated_at
"""
SQL_DELETE_BREAKER = "DELETE FROM breakers WHERE key = ?"
# An attempt's outcome, counted in the store with one statement (so attempts in any number of
# processes count exactly, where saving each process's own count would lose some): a failure
# adds one and opens the breaker at the threshold (?2), or re-opens it after a half-open trial;
# a success closes it and clears the count. ?1 key, ?3 recovery timeout, ?4 now.
SQL_BREAKER_FAILED = """
INSERT INTO breakers (key, state, failures, opened_at, recovery_timeout, updated_at)
VALUES (?1, CASE WHEN ?2 <= 1 THEN 'open' ELSE 'closed' END, 1,
        CASE WHEN ?2 <= 1 THEN ?4 END, ?3, ?4)
ON CONFLICT (key) DO UPDATE SET
    state = CASE WHEN breakers.state = 'closed' AND breakers.failures + 1 < ?2
                 THEN 'closed' ELSE 'open' END,
    opened_at = CASE WHEN breakers.state = 'closed' AND breakers.failures + 1 < ?2
                     THEN breakers.opened_at
                     WHEN breakers.state = 'open' THEN breakers.opened_at ELSE ?4 END,
    failures = breakers.failures + 1,
    recovery_timeout = ?3,
    updated_at = ?4,
    trial_owner = NULL
"""
SQL_BREAKER_SUCCEEDED = """
INSERT INTO breakers (key, state, failures, opened_at, recovery_timeout, updated_at)
VALUES (?1, 'closed', 0, NULL, ?2, ?3)
ON CONFLICT (key) DO UPDATE SET
    state = 'closed', failures = 0, opened_at = NULL, recovery_timeout = ?2, updated_at = ?3,
    trial_owner = NULL
"""
# A process claims a half-open breaker's one trial (compare-and-set): an open breaker whose
# cool-down is over, a half-open one whose trial is this process's own (a trial it cancelled),
# or one whose trial was claimed a whole cool-down ago and never reported (its process is gone).
# ?1 key, ?2 now, ?3 the claiming process's owner id.
SQL_CLAIM_TRIAL = """
UPDATE breakers SET state = 'half_open', updated_at = ?2, trial_owner = ?3
WHERE key = ?1 AND (
    (state = 'open' AND (opened_at IS NULL OR opened_at + recovery_timeout <= ?2))
    OR (state = 'half_open'
        AND (trial_owner IS NULL OR trial_owner = ?3 OR updated_at + recovery_timeout <= ?2)))
"""
SQL_BREAKER = f"SELECT {_BREAKER_COLUMNS} FROM breakers WHERE key = ?"
SQL_RESET_BREAKER = (
    "UPDATE breakers SET state = 'closed', failures = 0, opened_at = NULL, updated_at = ?2, "
    "trial_owner = NULL WHERE key = ?1"
)

SQL_CLAIM_FIRE = """
INSERT INTO schedule_fires
    (pipeline_id, schedule_key, fire_time, run_id, owner_host, owner_pid, claimed_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING
"""
SQL_LAST_FIRES = """
SELECT schedule_key, max(fire_time), run_id FROM schedule_fires WHERE pipeline_id = ?
GROUP BY schedule_key
"""

SQL_USER_VERSION = "PRAGMA user_version"
SQL_APPLICATION_ID = "PRAGMA application_id"
SQL_COUNT_OBJECTS = "SELECT count(*) FROM sqlite_master"
SQL_BEGIN = "BEGIN IMMEDIATE"
SQL_COMMIT = "COMMIT"
SQL_ROLLBACK = "ROLLBACK"
SQL_SAVEPOINT = "SAVEPOINT unit"
SQL_ROLLBACK_TO = "ROLLBACK TO unit"
SQL_RELEASE = "RELEASE unit"
# How long a write waits for another process's lock before the store gives up (fail-closed):
# over 10 s, so that a lock held for up to 10 s only delays a run (DESIGN section 4).
_BUSY_TIMEOUT_MS: Final = 12_000
BUSY_TIMEOUT_SECONDS: Final = _BUSY_TIMEOUT_MS / 1000


def _connection_pragmas(synchronous: str, readonly: bool) -> list[str]:
    # busy_timeout first, so that even switching to WAL waits for another process's lock.
    pragmas = [f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}", "PRAGMA foreign_keys = ON"]
    if readonly:
        return [*pragmas, "PRAGMA query_only = ON"]
    return [
        *pragmas,
        "PRAGMA journal_mode = WAL",  # the first statement to read the file: detects garbage
        f"PRAGMA synchronous = {synchronous}",
        # Checkpoint every 32 MB of WAL rather than every 4 MB: the unique event_id index takes
        # inserts at random places, so each batch dirties many pages; copying them back less
        # often is worth about a third more events per second. The file is trimmed to 64 MB.
        "PRAGMA wal_autocheckpoint = 8192",
        "PRAGMA journal_size_limit = 67108864",
    ]


# ---------------------------------------------------------------------------------------------
# the writer's queue


@dataclass(slots=True)
class _Group:
    """The events of one `append` call: committed together or not at all."""

    events: tuple[Event, ...]
    future: asyncio.Future[None]


@dataclass(slots=True)
class _Marker:
    """A `flush` call: resolved once everything queued before it is committed. A quiet marker
    (`caught_up`) reports no failure: it only waits."""

    future: asyncio.Future[None]
    quiet: bool = False


@dataclass(slots=True)
class _Job:
    """A write other than events: its own transaction, in queue order."""

    run: Callable[[aiosqlite.Connection], Awaitable[Any]]
    future: asyncio.Future[Any]


@dataclass(slots=True)
class _Claim:
    """A `claim_run` call. It joins the batch being collected and is written in the batch's
    transaction, after its events: a run's `run.created` and its claim commit together (one
    fsync where there were two, before a run can start). It fails, claiming nothing, when an
    event of its run in the same batch failed. It resolves to the stored breakers, read in
    the same transaction."""

    run_id: str
    params: tuple[Any, ...]  # SQL_CLAIM_RUN's, but for its last, the fence (read when written)
    future: asyncio.Future[dict[str, BreakerRecord]]


@dataclass(slots=True)
class _Outcome:
    """An attempt's outcome for a breaker (`record_breaker_outcome`): written in the batch's
    transaction, after its events, with one counting statement. Nobody waits on it."""

    sql: str
    params: tuple[Any, ...]


class _Stop:
    """Queued by `close`: the writer ends once everything before it is written."""


_Item = Event | _Group | _Marker | _Claim | _Outcome | _Job | _Stop


async def _writer_loop(ref: weakref.ref[Store], queue: deque[_Item], wakeup: asyncio.Event) -> None:
    """The store's writer. Holds the store only while it has work, so an open store that its
    owner drops can still be collected (and warn)."""
    while True:
        if not queue:
            wakeup.clear()
            await wakeup.wait()
            continue
        store = ref()
        if store is None:
            return
        try:
            if await store._write_next():
                return
        finally:
            del store


@dataclass(slots=True)
class _Batch:
    """Queue items taken together, ready to write.

    A unit `(start, end, item)` is one published event or one append: `rows[start:end]` of
    `items[item]`. `failed` maps item positions to their error; `claimed` maps the positions of
    claims to the number of runs they claimed (0: no such run).
    """

    items: list[_Item]
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


def _event_row(event: Event) -> tuple[Any, ...]:
    return (
        event.event_id,
        event.run_id,
        event.seq,
        event.event_type,
        event.node_id,
        event.timestamp_utc,
        event.to_json(),
    )


def _insert_rows(db: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert event rows, in order, a chunk of them per statement (on the connection's thread).

    Not `executemany`: it lets go of the GIL around every row and must take it back for the
    next, and while the event loop's thread runs a pipeline that takes long (the loop lets go
    of it only when it polls), so a batch written during a run crawled, a row per turn of the
    loop, and was still being written when the run ended. A statement binds its chunk with the
    GIL held, then SQLite inserts the chunk without it.
    """
    start, total = 0, len(rows)
    size = _INSERT_CHUNK
    while start < total:
        while size > total - start:
            size //= 2
        chunk = rows[start : start + size]
        db.execute(_sql_insert_events(size), list(itertools.chain.from_iterable(chunk)))
        start += size


def _run_index_updates(
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


_BY_SEQ = operator.attrgetter("seq")


def _parse_array(text: str | None) -> list[Event]:
    """Events from a JSON array of bodies the store wrote itself: trusted, so not validated.

    One `json.loads` over all of them shares the key strings between events; with the GC
    paused, about twice as fast as loading each body on its own.
    """
    if not text:
        return []
    events = [trusted_event(fields) for fields in json.loads(text)]
    events.sort(key=_BY_SEQ)
    return events


def _parse_arrays(texts: list[str]) -> Iterator[Event]:
    """The events of several arrays, in order, parsing each only when the one before is used
    up (and letting go of each text once parsed)."""
    texts.reverse()
    while texts:
        yield from _parse_array(texts.pop())


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while reading many events.

    Reading a long run allocates a few hundred thousand objects (rows, dicts, events), none of
    them in cycles; each allocation threshold would otherwise trigger a collection that scans
    them all again, which doubles the cost of reading and folding 100,000 events. Nesting and
    overlapping uses are safe: only the outermost one re-enables collection.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


async def _worker_ended(conn: aiosqlite.Connection) -> None:
    """Wait (briefly) for a connection that failed to open to end its worker thread: left to
    finish after the event loop closed, it prints a traceback ("Event loop is closed")."""
    thread = getattr(conn, "_thread", None)
    for _ in range(2000):
        if thread is None or not thread.is_alive():
            return
        await asyncio.sleep(0.0005)


def _describe(exc: BaseException, path: Path | None = None) -> str:
    full = dbfile.describe_os_error(exc, path)
    if full is not None:
        return full
    if isinstance(exc, sqlite3.Error):
        text = str(exc)
        if "disk is full" in text or getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL":
            return "the disk is full"
        if "database is locked" in text or "database table is locked" in text:
            return (
                "another process held the database's write lock for more than "
                f"{BUSY_TIMEOUT_SECONDS:g} s"
            )
        if "disk I/O error" in text:
            return "a disk I/O error"
        if "not a database" in text:
            return "the file is not a SQLite database (or is encrypted or corrupt)"
        if "malformed" in text:
            return "the database file is corrupt (database disk image is malformed)"
        if "unable to open" in text:
            return "SQLite cannot open the file there"
        return text
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


def _create_file(path: Path) -> None:
    """Create the database file 0600 (and any missing parent directories 0700)."""
    missing: list[Path] = []
    parent = path.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700)
            os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
    if path.is_dir():
        raise IsADirectoryError(21, "it is a directory")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# the store


class Store:
    """The SQLite event store. Use as `async with Store(path) as store:`."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "FULL",
        readonly: bool = False,
        batch_size: int = 2048,
        batch_window: float = 0.01,
    ) -> None:
        self._conn: aiosqlite.Connection | None = None
        self._path = Path(path).expanduser()
        sync = synchronous.upper()
        if sync not in _SYNCHRONOUS:
            choices = ", ".join(sorted(_SYNCHRONOUS))
            raise ValueError(f"synchronous must be one of {choices}, not {synchronous!r}")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if batch_window < 0:
            raise ValueError("batch_window must not be negative")
        self._synchronous = sync
        self.readonly = readonly
        self.batch_size = batch_size
        self.batch_window = batch_window
        self._lock = asyncio.Lock()  # one multi-statement transaction at a time on the connection
        self._queue: deque[_Item] = deque()
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._busy = False  # the writer holds items taken from the queue
        self._unreported: list[StoreError] = []  # failed published events no flush has reported
        self._closing = False
        self._closed = False
        self.batches_committed = 0
        self.events_committed = 0
        # Leases: the fencing number this store writes each run's events with (a run absent
        # writes with 0: it was never claimed), and the runs this store may not write any more
        # (fail-closed: a failed batch, or a lease lost), with why.
        self._fences: dict[str, int] = {}
        self._poisoned: dict[str, StoreError] = {}
        # Told when a run becomes unwritable here (the run id and why), and of the events of
        # every commit, in order (what is printed as done must be what is stored).
        self.write_failure_listeners: list[Callable[[str, StoreError], None]] = []
        self.commit_listeners: list[Callable[[Sequence[Event]], None]] = []
        # Monotonic time since when something published is unacknowledged (None: nothing is):
        # `lagging` lets the executor hold back new nodes while the record is behind.
        self._unacked_since: float | None = None

    @property
    def path(self) -> Path:
        return self._path

    @property
    def is_open(self) -> bool:
        return self._conn is not None and not self._closing

    def __repr__(self) -> str:
        mode = "closed" if self._conn is None else "read-only" if self.readonly else "open"
        return f"<Store {str(self._path)!r} {mode}>"

    def __del__(self) -> None:
        conn = getattr(self, "_conn", None)
        if conn is None:
            return
        # No `source=self`: a recorded warning would keep the store, and its connection's
        # thread, alive past this point.
        warnings.warn(
            f"{self!r} was garbage-collected while open; use 'async with Store(...)' "
            "or 'await store.close()'",
            ResourceWarning,
            stacklevel=2,
        )
        writer = self._writer
        if writer is not None and not writer.done():
            with contextlib.suppress(RuntimeError):  # the event loop may be closed already
                writer.cancel()
        with contextlib.suppress(Exception):
            conn.stop()  # ends the connection's worker thread, which would keep the process up

    # -- lifecycle ---------------------------------------------------------------------------------

    async def __aenter__(self) -> Store:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> Store:
        """Open (creating and migrating the database as needed). Idempotent while open."""
        if self._conn is not None:
            return self
        if self._closed:
            raise StoreError(f"the store for {self._path} was closed; open a new Store")
        if self.readonly:
            target = dbfile.readonly_uri(self._path)
            if not self._path.is_file():
                raise StoreError(f"there is no Interlock database at {self._path}")
        else:
            target = str(self._path)
            try:
                _create_file(self._path)
            except OSError as exc:
                raise StoreError(
                    f"cannot create the Interlock database at {self._path}: {_describe(exc)}"
                ) from exc
            # Before SQLite may write to it (switching to WAL writes): a stranger's file is
            # left byte for byte as it was.
            foreign = dbfile.foreign_reason(self._path, APPLICATION_ID)
            if foreign is not None:
                raise StoreError(f"refusing {self._path}: {foreign}; nothing was written to it")
        conn = aiosqlite.connect(target, isolation_level=None, uri=self.readonly)
        try:
            await conn
        except sqlite3.Error as exc:
            await _worker_ended(conn)
            where = " (read-only)" if self.readonly else ""
            raise StoreError(
                f"cannot open the Interlock database at {self._path}{where}: {_describe(exc)}"
            ) from exc
        try:
            for pragma in _connection_pragmas(self._synchronous, self.readonly):
                await conn.execute(pragma)
            await self._check_schema(conn)
        except BaseException as exc:
            await conn.close()
            if isinstance(exc, sqlite3.Error):
                raise StoreError(
                    f"cannot open the Interlock database at {self._path}: {_describe(exc)}"
                ) from exc
            raise
        self._conn = conn
        if not self.readonly:
            self._writer = asyncio.create_task(
                _writer_loop(weakref.ref(self), self._queue, self._wakeup),
                name=f"interlock-store-writer {self._path.name}",
            )
        return self

    async def close(self) -> None:
        """Write everything queued, stop the writer, close the connection. Idempotent."""
        conn = self._conn
        if conn is None:
            self._closed = True
            return
        self._closing = True
        writer = self._writer
        if writer is not None and not writer.done():
            self._enqueue(_Stop())
            await asyncio.shield(writer)
        self._conn = None
        self._closed = True
        await conn.close()

    async def _check_schema(self, conn: aiosqlite.Connection) -> None:
        steps = migrations()
        latest = len(steps)
        version = await _scalar(conn, SQL_USER_VERSION)
        app_id = await _scalar(conn, SQL_APPLICATION_ID)
        if app_id not in (0, APPLICATION_ID):
            raise StoreError(
                f"{self._path} is an SQLite database of another application, not Interlock's"
            )
        if version > latest:
            raise StoreError(
                f"the database at {self._path} was created by a newer interlock (schema version "
                f"{version}, this one knows up to {latest}); upgrade interlock to open it"
            )
        if version == latest:
            return
        if self.readonly:
            raise StoreError(
                f"the database at {self._path} is at schema version {version} and needs "
                f"upgrading to {latest}; open it once without read-only first"
            )
        for number, statements in enumerate(steps, start=1):
            if number > version:
                await self._migrate(conn, number, statements)

    async def _migrate(
        self, conn: aiosqlite.Connection, number: int, statements: Sequence[str]
    ) -> None:
        await conn.execute(SQL_BEGIN)
        try:
            # Another process may have migrated while we waited for the write lock.
            current = await _scalar(conn, SQL_USER_VERSION)
            if current < number:
                if current == 0 and await _scalar(conn, SQL_COUNT_OBJECTS):
                    raise StoreError(
                        f"{self._path} is an SQLite database but not an Interlock one "
                        "(it has tables and no Interlock schema version)"
                    )
                for statement in statements:
                    await conn.execute(statement)
                await conn.execute(f"PRAGMA user_version = {number:d}")
                await conn.execute(f"PRAGMA application_id = {APPLICATION_ID:d}")
            await conn.execute(SQL_COMMIT)
        except BaseException:
            await _rollback(conn)
            raise

    # -- writing -----------------------------------------------------------------------------------

    def publish(self, event: Event) -> None:
        """Queue `event` for the writer; returns at once (durable after the next `flush`)."""
        if self._closing or self._conn is None or self.readonly:
            raise self._not_writable()
        if self._poisoned and event.run_id in self._poisoned:
            return  # fail-closed: nothing more of this run is written (no seq gap)
        if self._unacked_since is None:
            self._unacked_since = time.monotonic()
        queue = self._queue
        queue.append(event)
        # The writer is woken when idle, or when a batch it is collecting is full; an event
        # that only joins the batch being collected does not wake it (its window closes it).
        if (not self._busy or len(queue) >= self.batch_size) and not self._wakeup.is_set():
            self._wakeup.set()

    async def flush(self) -> None:
        """Return once everything published before the call is committed.

        Raises StoreError if a published event failed to commit since the last flush.
        """
        if self._conn is None or self.readonly:
            return
        if self._closing and self._writer is not None:
            await asyncio.shield(self._writer)  # close is writing everything queued
        if (not self._queue and not self._busy) or self._closing:
            self._report_failures()
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(_Marker(future))
        await asyncio.shield(future)

    async def append(self, events: Sequence[Event]) -> None:
        """Publish `events` and return once they are committed (all of them, or none)."""
        group = tuple(events)
        if not group:
            return
        if self._closing or self._conn is None or self.readonly:
            raise self._not_writable()
        if self._poisoned and group[0].run_id in self._poisoned:
            raise self._poisoned[group[0].run_id]
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(_Group(group, future))
        await asyncio.shield(future)

    def _enqueue(self, item: _Item) -> None:
        self._queue.append(item)
        self._wakeup.set()

    def _not_writable(self) -> StoreError:
        if self.readonly:
            return StoreError(f"the store for {self._path} is read-only")
        if self._conn is None and not self._closed:
            return StoreError(f"the store for {self._path} is not open")
        return StoreError(f"the store for {self._path} is closed")

    def _report_failures(self) -> None:
        if not self._unreported:
            return
        failures, self._unreported = self._unreported, []
        if len(failures) == 1:
            raise failures[0]
        raise StoreError(f"{len(failures)} published writes failed; the first: {failures[0]}")

    async def _submit(self, job: Callable[[aiosqlite.Connection], Awaitable[_T]]) -> _T:
        if self._closing or self._conn is None or self.readonly:
            raise self._not_writable()
        future: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self._enqueue(_Job(job, future))
        return await asyncio.shield(future)

    async def _write_next(self) -> bool:
        """Write the next batch, or run the next job; True once the stop marker is reached."""
        self._busy = True
        try:
            head = self._queue[0]
            if isinstance(head, _Stop):
                self._queue.popleft()
                self._fail_queued()
                return True
            if isinstance(head, _Job):
                self._queue.popleft()
                await self._run_job(head)
            else:
                items = await self._collect_batch()
                try:
                    await self._write_batch(self._prepare(items))
                except Exception as exc:
                    # Whatever went wrong, the writer lives on and nobody waits forever: the
                    # batch's waiters get the error, and published events report it at flush.
                    error = StoreError(f"could not write to {self._path}: {exc}")
                    self._poison_items(items, error)
                    self._fail_items(items, error)
            return False
        finally:
            self._busy = False
            # What is still queued was published while this batch was written: its age is
            # counted from now (an underestimate by at most one batch's write).
            self._unacked_since = time.monotonic() if self._queue else None

    async def _collect_batch(self) -> list[_Item]:
        """Take events, appends and flush markers off the queue until the batch closes."""
        queue, items = self._queue, list[_Item]()
        count, waited_on, yielded = 0, False, False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.batch_window
        while True:
            while queue and count < self.batch_size:
                item = queue[0]
                if type(item) is Event:
                    count += 1
                elif isinstance(item, _Group):
                    count += len(item.events)
                    waited_on = True
                elif isinstance(item, _Marker | _Claim):
                    waited_on = True
                elif not isinstance(item, _Outcome):
                    return items  # a job or the stop marker goes after this batch
                items.append(queue.popleft())
            if count >= self.batch_size:
                return items
            if waited_on:
                # Somebody waits: give tasks that are ready one turn to join, then commit.
                if yielded:
                    return items
                yielded = True
                await asyncio.sleep(0)
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                return items
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                # Woken early by a full queue, a flush, an append or a job; else the window
                # closes, and what was published meanwhile joins on the next pass.
                async with asyncio.timeout(remaining):
                    await self._wakeup.wait()

    def _prepare(self, items: list[_Item]) -> _Batch:
        """Serialize the batch's events; an event that cannot be serialized fails its unit.
        The events of runs this store may no longer write (fail-closed) are dropped."""
        batch = _Batch(items)
        rows, events, units = batch.rows, batch.events, batch.units
        poisoned = self._poisoned
        for position, item in enumerate(items):
            if type(item) is Event:  # nearly every item: one published event, its own unit
                unit: Sequence[Event] = (item,)
            elif isinstance(item, _Group):
                unit = item.events
            else:
                continue
            if poisoned and unit and unit[0].run_id in poisoned:
                if isinstance(item, _Group):
                    batch.failed[position] = poisoned[unit[0].run_id]
                continue
            start = len(rows)
            try:
                for event in unit:  # a loop, not a comprehension: no function call per item
                    rows.append(_event_row(event))
            except (TypeError, ValueError) as exc:
                del rows[start:]
                batch.failed[position] = self._unit_error(unit, exc)
                continue
            units.append((start, len(rows), position))
            events += unit
        return batch

    async def _write_batch(self, batch: _Batch) -> None:
        """Write one batch and tell its callers (never raises: the writer must go on)."""
        failed = batch.failed
        claims = [position for position, item in enumerate(batch.items) if type(item) is _Claim]
        committed: list[Event] = []
        outcomes = any(type(item) is _Outcome for item in batch.items)
        if batch.units or claims or outcomes:
            try:
                async with self._lock:
                    committed = await self._insert(batch)
            except Exception as exc:  # the whole batch failed (I/O error, lock timeout...)
                error = self._batch_error(batch, exc)
                failed.update((position, error) for _, _, position in batch.units)
                failed.update((position, error) for position in claims)
                self._poison_items(batch.items, error)
        for run_id, error in batch.refused.items():
            self._poison(run_id, error)
        self._fences.update(batch.fences)
        for position, item in enumerate(batch.items):
            if type(item) is Event and not failed:  # a published event: nobody waits on it
                continue
            if isinstance(item, _Claim):
                if item.future.done():
                    continue
                failure = failed.get(position)
                if failure is not None:
                    item.future.set_exception(failure)
                elif not batch.claimed.get(position):
                    item.future.set_exception(UnknownRunError(item.run_id))
                else:
                    item.future.set_result(batch.breakers)
                continue
            if isinstance(item, _Marker):
                if item.future.done():
                    continue
                if self._unreported and not item.quiet:
                    try:
                        self._report_failures()
                    except StoreError as report:
                        item.future.set_exception(report)
                else:
                    item.future.set_result(None)
                continue
            failure = failed.get(position)
            if isinstance(item, _Group):
                if item.future.done():
                    continue
                if failure is None:
                    item.future.set_result(None)
                else:
                    item.future.set_exception(failure)
            elif failure is not None and failure not in self._unreported:
                _log.warning("%s", failure)
                self._unreported.append(failure)
        if committed and self.commit_listeners:
            for listener in list(self.commit_listeners):
                with contextlib.suppress(Exception):  # a listener never breaks the writer
                    listener(committed)

    async def _insert(self, batch: _Batch) -> list[Event]:
        """Insert the batch's units and update the runs index, in one transaction.

        A unit that breaks a constraint is recorded in `batch.failed`; the others commit.

        The whole transaction runs as one call on the connection's thread, not a statement per
        call: each call is a hand-over to that thread and a wake-up of the event loop on the
        way back, and while a pipeline runs those cost its nodes the loop and the GIL (a chain
        on the durable store ran about a third slower with five calls per batch). aiosqlite
        has no public way to run a function on its thread, hence `_execute`; the writer is its
        only caller, and nothing else uses the connection meanwhile (`_lock`).
        """
        conn = self._connection()
        run_on_thread = cast("Callable[..., Awaitable[list[Event]]]", conn._execute)
        committed = await run_on_thread(self._insert_on_thread, conn._conn, batch)
        self.batches_committed += 1
        self.events_committed += len(committed)
        return committed

    def _insert_on_thread(self, db: sqlite3.Connection, batch: _Batch) -> list[Event]:
        """`_insert`'s transaction, on the connection's thread; returns the events committed.

        The lease check rides on it: the runs index update of each run in the batch carries the
        writer's fencing number (`SQL_UPDATE_RUN`). A run whose update is refused has all its
        events in the batch refused: the transaction is rolled back and written again without
        them (rare: only a writer that lost its run, or wrote after the end, pays for it)."""
        while True:
            db.execute(SQL_BEGIN)
            try:
                committed = self._write_units(db, batch)
                refused = self._refused_runs(db, batch, committed)
                if refused:
                    db.execute(SQL_ROLLBACK)
                    batch.refused.update(refused)
                    self._refuse_units(batch, refused)
                    continue
                self._claim_on_thread(db, batch)
                for item in batch.items:
                    if type(item) is _Outcome:
                        db.execute(item.sql, item.params)
                db.execute(SQL_COMMIT)
            except BaseException:
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute(SQL_ROLLBACK)
                raise
            return committed

    def _write_units(self, db: sqlite3.Connection, batch: _Batch) -> list[Event]:
        committed = batch.events
        try:
            _insert_rows(db, batch.rows)
        except sqlite3.IntegrityError:
            # Some unit breaks a constraint: undo, then insert unit by unit so that only the
            # offending units fail (still one transaction, one fsync).
            db.execute(SQL_ROLLBACK)
            db.execute(SQL_BEGIN)
            committed = []
            for start, end, position in batch.units:
                db.execute(SQL_SAVEPOINT)
                try:
                    _insert_rows(db, batch.rows[start:end])
                except sqlite3.IntegrityError as exc:
                    db.execute(SQL_ROLLBACK_TO)
                    batch.failed[position] = self._unit_error(batch.events[start:end], exc)
                else:
                    committed.extend(batch.events[start:end])
                db.execute(SQL_RELEASE)
        return committed

    def _refused_runs(
        self, db: sqlite3.Connection, batch: _Batch, committed: list[Event]
    ) -> dict[str, StoreError]:
        """Update the runs index for `committed` under the lease check; the runs refused."""
        created, updates, after_end = _run_index_updates(committed, self._fences)
        if created:
            db.executemany(SQL_INSERT_RUN, created)
        refused: dict[str, StoreError] = {}
        for run_id in after_end:
            refused[run_id] = self._lease_error(run_id, None)
        for params in updates:
            run_id = params[5]
            if run_id in refused or db.execute(SQL_UPDATE_RUN, params).rowcount:
                continue
            row = db.execute(SQL_LEASE, (run_id,)).fetchone()
            if row is not None:  # no row: events of a run never created are stored as they are
                refused[run_id] = self._lease_error(run_id, row)
        return refused

    def _lease_error(self, run_id: str, row: tuple[Any, ...] | None) -> StoreError:
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

    @staticmethod
    def _refuse_units(batch: _Batch, refused: Mapping[str, StoreError]) -> None:
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

    def _claim_on_thread(self, db: sqlite3.Connection, batch: _Batch) -> None:
        """Write the batch's claims (in its transaction), except those of runs whose events in
        the batch failed: they fail with the same error."""
        failed_runs: dict[str, StoreError] = dict(batch.refused)
        for position, error in batch.failed.items():
            item = batch.items[position]
            events = (item,) if type(item) is Event else getattr(item, "events", ())
            for event in events:
                failed_runs.setdefault(event.run_id, error)
        for position, item in enumerate(batch.items):
            if type(item) is not _Claim:
                continue
            failure = failed_runs.get(item.run_id)
            if failure is not None:
                batch.failed[position] = failure
                continue
            held = self._fences.get(item.run_id, 0)
            if db.execute(SQL_CLAIM_RUN, (*item.params, held)).rowcount:
                batch.claimed[position] = 1
                batch.fences[item.run_id] = max(held, 1)
                continue
            row = db.execute(SQL_LEASE, (item.run_id,)).fetchone()
            if row is not None:
                batch.failed[position] = self._lease_error(item.run_id, row)
        if batch.claimed:
            batch.breakers = {row[0]: BreakerRecord(*row) for row in db.execute(SQL_BREAKERS)}

    def _unit_error(self, events: Sequence[Event], exc: Exception) -> StoreError:
        first = events[0]
        what = f"event seq {first.seq}" if len(events) == 1 else f"{len(events)} events"
        if "events.run_id, events.seq" in str(exc):
            problem = "that run already has an event with that seq"
        elif "events.event_id" in str(exc):
            problem = "an event with that event_id is already stored"
        elif not isinstance(exc, sqlite3.Error):
            problem = f"it cannot be written as JSON ({exc})"
        else:
            problem = _describe(exc, self._path)
        error = StoreError(
            f"could not store {what} of run {first.run_id} in {self._path}: {problem}"
        )
        error.__cause__ = exc
        return error

    def _batch_error(self, batch: _Batch, exc: BaseException) -> StoreError:
        count = len(batch.events)
        error = StoreError(
            f"could not write {count} events to {self._path}: {_describe(exc, self._path)}"
        )
        error.__cause__ = exc
        return error

    async def _run_job(self, job: _Job) -> None:
        conn = self._connection()
        try:
            async with self._lock:
                await conn.execute(SQL_BEGIN)
                try:
                    result = await job.run(conn)
                    await conn.execute(SQL_COMMIT)
                except BaseException:
                    await _rollback(conn)
                    raise
        except sqlite3.Error as exc:
            error = StoreError(f"could not write to {self._path}: {_describe(exc, self._path)}")
            error.__cause__ = exc
            if not job.future.done():
                job.future.set_exception(error)
        except Exception as exc:
            if not job.future.done():
                job.future.set_exception(exc)
        else:
            if not job.future.done():
                job.future.set_result(result)

    def _poison_items(self, items: Sequence[_Item], error: StoreError) -> None:
        """A batch failed as a whole: none of the runs whose published events it held is
        written any more (fail-closed: a later batch of such a run would leave a seq gap where
        this one failed). An `append` is all-or-nothing and its caller is told: its run is not
        poisoned by it."""
        runs: dict[str, None] = {}
        for item in items:
            if type(item) is Event:
                runs[item.run_id] = None
        for run_id in runs:
            self._poison(run_id, error)

    def _poison(self, run_id: str, error: StoreError) -> None:
        if run_id in self._poisoned:
            return
        self._poisoned[run_id] = error
        for listener in list(self.write_failure_listeners):
            with contextlib.suppress(Exception):  # a listener never breaks the writer
                listener(run_id, error)

    def write_failure(self, run_id: str) -> StoreError | None:
        """Why this store writes nothing more of `run_id` (None: it still writes it)."""
        return self._poisoned.get(run_id)

    def fence_off(self, run_id: str, error: StoreError) -> None:
        """Write nothing more of `run_id` from here (its lease was found lost)."""
        self._poison(run_id, error)

    def lagging(self, threshold: float = 1.0) -> bool:
        """Whether something published more than `threshold` seconds ago is unacknowledged."""
        since = self._unacked_since
        return since is not None and time.monotonic() - since > threshold

    async def caught_up(self) -> None:
        """Return once everything published before the call is committed or has failed
        (failures are left for `flush` to report)."""
        if self._conn is None or self.readonly or self._closing:
            return
        if not self._queue and not self._busy:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(_Marker(future, quiet=True))
        with contextlib.suppress(StoreError):
            await asyncio.shield(future)

    def _fail_items(self, items: Sequence[_Item], error: StoreError) -> None:
        published = False
        for item in items:
            if isinstance(item, _Group | _Marker | _Claim | _Job):
                if not item.future.done():
                    item.future.set_exception(error)
            elif type(item) is Event:
                published = True
        if published:
            self._unreported.append(error)

    def _fail_queued(self) -> None:
        """Fail whatever is still queued (published after close began, or left at shutdown)."""
        while self._queue:
            item = self._queue.popleft()
            if isinstance(item, _Group | _Marker | _Claim | _Job) and not item.future.done():
                item.future.set_exception(self._not_writable())

    # -- reading -----------------------------------------------------------------------------------

    def _connection(self) -> aiosqlite.Connection:
        if self._conn is None:
            state = "closed" if self._closed else "not open"
            raise StoreError(f"the store for {self._path} is {state}")
        return self._conn

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        conn = self._connection()
        try:
            async with self._lock:
                rows = await conn.execute_fetchall(sql, params)
        except sqlite3.Error as exc:
            raise StoreError(f"could not read {self._path}: {_describe(exc)}") from exc
        return cast("list[tuple[Any, ...]]", rows)

    async def events(
        self,
        run_id: str,
        *,
        after_seq: int = 0,
        limit: int | None = None,
        type_prefix: str | None = None,
    ) -> list[Event]:
        """The run's events with seq > `after_seq`, in seq order."""
        with _gc_paused():
            return await self._events(run_id, after_seq, limit, type_prefix)

    async def _events(
        self, run_id: str, after_seq: int, limit: int | None, type_prefix: str | None
    ) -> list[Event]:
        cap = -1 if limit is None else max(limit, 0)
        if type_prefix:
            params: tuple[Any, ...] = (run_id, after_seq, len(type_prefix), type_prefix, cap)
            return await self._fetch_events(SQL_EVENTS_OF_TYPE_ARRAY, SQL_EVENTS_OF_TYPE, params)
        return await self._fetch_events(SQL_EVENTS_ARRAY, SQL_EVENTS, (run_id, after_seq, cap))

    async def _fetch_events(
        self, array_sql: str, rows_sql: str, params: Sequence[Any]
    ) -> list[Event]:
        conn = self._connection()
        try:
            async with self._lock:
                try:
                    rows = list(await conn.execute_fetchall(array_sql, params))
                    text = rows[0][0]
                except sqlite3.DataError:
                    # More than SQLite's string limit (1 GB): fetch the bodies row by row.
                    bodies = [row[0] for row in await conn.execute_fetchall(rows_sql, params)]
                    text = "[" + ",".join(bodies) + "]" if bodies else None
        except sqlite3.Error as exc:
            raise StoreError(f"could not read {self._path}: {_describe(exc)}") from exc
        return _parse_array(text)

    async def tail_events(self, run_id: str, n: int) -> list[Event]:
        """The run's last `n` events, in seq order."""
        if n <= 0:
            return []
        with _gc_paused():
            return await self._fetch_events(SQL_TAIL_EVENTS_ARRAY, SQL_TAIL_EVENTS, (run_id, n))

    async def last_seq(self, run_id: str) -> int:
        """The run's highest stored seq; 0 if it has no events."""
        rows = await self._fetch(SQL_LAST_SEQ, (run_id,))
        return int(rows[0][0])

    async def fold_run(self, run_id: str) -> RunState:
        """The run's state: the fold of its stored events. UnknownRunError if it has none."""
        # Read in chunks, and parse each only as the fold reaches it: a chunk's dicts and events
        # are freed before the next is parsed, so their memory is reused while still in cache,
        # where a list of 100,000 events first takes ~100 MB of fresh pages (a third of the
        # time); and the writer waits for one chunk's SELECT at a time, not the whole log's.
        # Events are committed in seq order and never change, so reading on after the last seq
        # seen yields the log as of the last chunk read.
        texts: list[str] = []
        after = 0
        while True:
            text, count, last = await self._fetch_chunk(run_id, after)
            if text:
                texts.append(text)
            if count < _FOLD_CHUNK:
                break
            after = last
        if not texts:
            raise UnknownRunError(run_id)
        with _gc_paused():
            return fold(_parse_arrays(texts), run_id)

    async def _fetch_chunk(self, run_id: str, after_seq: int) -> tuple[str | None, int, int]:
        """Up to `_FOLD_CHUNK` events after `after_seq`: their JSON array, count and last seq."""
        conn = self._connection()
        params = (run_id, after_seq, _FOLD_CHUNK)
        try:
            async with self._lock:
                try:
                    rows = list(await conn.execute_fetchall(SQL_EVENTS_CHUNK, params))
                    text, count, last = rows[0]
                except sqlite3.DataError:
                    # More than SQLite's string limit (1 GB): fetch the bodies row by row.
                    found = list(await conn.execute_fetchall(SQL_EVENTS_CHUNK_ROWS, params))
                    text = "[" + ",".join(body for body, _ in found) + "]" if found else None
                    count, last = len(found), max((seq for _, seq in found), default=0)
        except sqlite3.Error as exc:
            raise StoreError(f"could not read {self._path}: {_describe(exc)}") from exc
        return text, int(count), int(last)

    async def run_row(self, run_id: str) -> RunRow | None:
        rows = await self._fetch(SQL_RUN, (run_id,))
        return RunRow(*rows[0]) if rows else None

    async def list_runs(
        self, *, limit: int | None = None, states: Sequence[str] | None = None
    ) -> list[RunRow]:
        """Runs, newest first (by creation time, then insertion order)."""
        cap = -1 if limit is None else max(limit, 0)
        if states is None:
            rows = await self._fetch(SQL_RUNS, (cap,))
        else:
            rows = await self._fetch(SQL_RUNS_IN_STATES, (json.dumps(list(states)), cap))
        return [RunRow(*row) for row in rows]

    async def list_runs_page(
        self,
        *,
        limit: int,
        query: RunFilter | None = None,
        after: tuple[str, int] | None = None,
        down_to: tuple[str, int] | None = None,
    ) -> RunPage:
        """Up to `limit` runs matching `query`, newest first, after the keyset `after` (the
        `after` of the previous page): any page of the whole history costs about the same.
        `down_to`: only runs not older than that keyset (the head above pages already read)."""
        where, params = _runs_where(query, after, down_to)
        rows = await self._fetch(SQL_RUNS_PAGE.format(where), (*params, max(limit, 0)))
        page = [RunRow(*row[:-1]) for row in rows]
        more = len(rows) == limit and limit > 0
        return RunPage(page, (rows[-1][3], int(rows[-1][-1])) if more else None)

    async def count_runs(self, query: RunFilter | None = None) -> int:
        """How many stored runs match `query` (all of them without one)."""
        where, params = _runs_where(query, None)
        rows = await self._fetch(SQL_COUNT_RUNS.format(where), params)
        return int(rows[0][0])

    async def linked_runs(self, run_id: str) -> list[tuple[str, str]]:
        """The runs made from `run_id`, oldest first: (run id, 'retry' or 'replay')."""
        rows = await self._fetch(SQL_LINKED_RUNS, (run_id,))
        return [(str(row[0]), str(row[1])) for row in rows]

    async def find_run(self, prefix: str) -> RunRow | None:
        """The run with this id, or else the only run whose id starts with it (4+ characters).

        None if there is none; StoreError if the prefix matches several runs.
        """
        exact = await self.run_row(prefix)
        if exact is not None or len(prefix) < _MIN_PREFIX:
            return exact
        # Every string that starts with `prefix` sorts in [prefix, prefix + U+10FFFF).
        rows = await self._fetch(SQL_RUNS_BY_PREFIX, (prefix, prefix + "\U0010ffff"))
        if len(rows) > 1:
            shown = ", ".join(row[0] for row in rows[:2]) + (", ..." if len(rows) > 2 else "")
            raise StoreError(f"run id prefix '{prefix}' is ambiguous in {self._path}: {shown}")
        return RunRow(*rows[0]) if rows else None

    # -- ownership ---------------------------------------------------------------------------------

    async def claim_run(self, run_id: str, owner: Owner) -> dict[str, BreakerRecord]:
        """Take the lease of a run this process created (fence 0 -> 1) or took over (its fence
        stays), with a fresh expiry; returns the stored breakers, by key, as of the claim (what
        other processes have saved: a run starts from them).

        The claim commits with whatever was published before it: in the same transaction as
        the run's `run.created` when that is not committed yet. If an event of the run in that
        transaction failed, so does the claim, with the event's error (which the next `flush`
        reports as well). The breakers are read in the same transaction, so a run costs a
        single hand-over to the connection's thread before it starts, not two. A run another
        process holds now fails the claim with a StoreError caused by `LeaseLostError`.
        """
        from engine.lease import lease_seconds

        if self._closing or self._conn is None or self.readonly:
            raise self._not_writable()
        if run_id in self._poisoned:
            raise self._poisoned[run_id]
        now = time.time()
        params = (
            owner.id, owner.host, owner.pid, owner.started_at, now, now + lease_seconds(), run_id
        )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, BreakerRecord]] = loop.create_future()
        self._enqueue(_Claim(run_id, params, future))
        return await asyncio.shield(future)

    async def take_over(
        self,
        row: RunRow,
        owner: Owner,
        *,
        dead_owner: Owner | None = None,
        reopen: bool = False,
    ) -> RunRow | None:
        """Take the lease of a run that `row` (as read) shows without a live owner: a
        compare-and-set on its fencing number, in a transaction of its own. Returns the run's
        row with this process as owner; None if another process won (or the owner came back),
        and then nothing was written. `dead_owner`: the owner found dead on this host (the
        shortcut past an unexpired lease). `reopen`: the run has completed and is reopened (an
        override of a failed hard gate)."""
        from engine.lease import lease_seconds

        now = time.time()
        params = (
            owner.id, owner.host, owner.pid, owner.started_at, now, now + lease_seconds(),
            row.run_id, row.fence,
            dead_owner.host if dead_owner else None, dead_owner.pid if dead_owner else None,
            int(reopen),
        )

        async def take(conn: aiosqlite.Connection) -> list[tuple[Any, ...]]:
            cursor = await conn.execute(SQL_TAKE_OVER, params)
            if cursor.rowcount != 1:
                return []
            return [tuple(r) for r in await conn.execute_fetchall(SQL_RUN, (row.run_id,))]

        rows = await self._submit(take)
        if not rows:
            return None
        taken = RunRow(*rows[0])
        self._fences[row.run_id] = taken.fence
        self._poisoned.pop(row.run_id, None)
        return taken

    async def heartbeat(self, run_ids: Sequence[str], owner: Owner) -> list[str]:
        """Renew the leases of those of `run_ids` this process holds (with its fencing number);
        returns the runs whose lease it found lost (taken over by another process)."""
        from engine.lease import lease_seconds

        if not run_ids:
            return []
        now = time.time()
        targets = [(run_id, self._fences.get(run_id, 0)) for run_id in run_ids]

        async def beat(conn: aiosqlite.Connection) -> list[str]:
            lost: list[str] = []
            for run_id, fence in targets:
                params = (now, now + lease_seconds(), run_id, owner.id, fence)
                if (await conn.execute(SQL_HEARTBEAT, params)).rowcount:
                    continue
                found = list(await conn.execute_fetchall(SQL_LEASE, (run_id,)))
                if found and found[0][1] is None and found[0][0] != fence:
                    lost.append(run_id)
            return lost

        lost = await self._submit(beat)
        for run_id in lost:
            rows = await self._fetch(SQL_LEASE, (run_id,))
            self._poison(run_id, self._lease_error(run_id, rows[0] if rows else None))
        return lost

    async def release_run(self, run_id: str) -> None:
        """Give up the run's lease (only if this process still holds it)."""
        fence = self._fences.get(run_id, 0)

        async def release(conn: aiosqlite.Connection) -> None:
            await conn.execute(SQL_RELEASE_RUN, (run_id, fence))

        await self._submit(release)

    # -- cross-process control ---------------------------------------------------------------------

    async def post_command(
        self,
        run_id: str,
        kind: str,
        *,
        node_id: str | None = None,
        reason: str | None = None,
        actor: str = "cli",
    ) -> int:
        """Ask the run's owner to `cancel`, `approve` or `reject`; returns the command id."""
        if kind not in COMMAND_KINDS:
            choices = ", ".join(sorted(COMMAND_KINDS))
            raise ValueError(f"unknown command kind {kind!r} (expected one of: {choices})")
        params = (run_id, kind, node_id, reason, actor, time.time())

        async def post(conn: aiosqlite.Connection) -> int:
            cursor = await conn.execute(SQL_POST_COMMAND, params)
            return int(cursor.lastrowid or 0)

        try:
            return await self._submit(post)
        except StoreError as exc:
            if "FOREIGN KEY" in str(exc):
                raise UnknownRunError(run_id) from exc
            raise

    async def pending_commands(self, run_ids: Sequence[str]) -> list[Command]:
        """Commands to these runs not yet acknowledged, oldest first."""
        if not run_ids:
            return []
        rows = await self._fetch(SQL_PENDING_COMMANDS, (json.dumps(list(run_ids)),))
        return [Command(*row) for row in rows]

    async def ack_command(self, command_id: int, result: str) -> None:
        """Mark a command handled, with what came of it (the first acknowledgement wins)."""
        params = (time.time(), result, command_id)

        async def ack(conn: aiosqlite.Connection) -> None:
            await conn.execute(SQL_ACK_COMMAND, params)

        await self._submit(ack)

    async def command(self, command_id: int) -> Command | None:
        rows = await self._fetch(SQL_COMMAND, (command_id,))
        return Command(*rows[0]) if rows else None

    # -- breakers ----------------------------------------------------------------------------------

    async def load_breakers(self) -> dict[str, BreakerRecord]:
        rows = await self._fetch(SQL_BREAKERS)
        return {row[0]: BreakerRecord(*row) for row in rows}

    async def save_breaker(self, record: BreakerRecord) -> None:
        """Insert or replace the breaker's record."""
        params = (
            record.key,
            record.state,
            record.failures,
            record.opened_at,
            record.recovery_timeout,
            record.updated_at,
        )

        async def save(conn: aiosqlite.Connection) -> None:
            await conn.execute(SQL_SAVE_BREAKER, params)

        await self._submit(save)

    async def delete_breaker(self, key: str) -> bool:
        """Forget the breaker; True if it was stored."""

        async def delete(conn: aiosqlite.Connection) -> bool:
            return (await conn.execute(SQL_DELETE_BREAKER, (key,))).rowcount > 0

        return await self._submit(delete)

    async def reset_breaker(self, key: str) -> bool:
        """Close the breaker and clear its count (it stays listed); True if it was stored."""
        params = (key, time.time())

        async def reset(conn: aiosqlite.Connection) -> bool:
            return (await conn.execute(SQL_RESET_BREAKER, params)).rowcount > 0

        return await self._submit(reset)

    def record_breaker_outcome(
        self,
        key: str,
        *,
        failed: bool,
        failure_threshold: int,
        recovery_timeout: float,
        now: float | None = None,
    ) -> None:
        """Count an attempt's outcome in the stored breaker, atomically (`SQL_BREAKER_FAILED`,
        `SQL_BREAKER_SUCCEEDED`), in the transaction of the batch being collected: the events
        published with it commit with it. Returns at once."""
        if self._closing or self._conn is None or self.readonly:
            return
        at = time.time() if now is None else now
        if failed:
            item = _Outcome(SQL_BREAKER_FAILED, (key, failure_threshold, recovery_timeout, at))
        else:
            item = _Outcome(SQL_BREAKER_SUCCEEDED, (key, recovery_timeout, at))
        self._queue.append(item)
        if not self._busy and not self._wakeup.is_set():
            self._wakeup.set()

    async def claim_breaker_trial(
        self, key: str, owner: Owner, now: float
    ) -> BreakerRecord | None:
        """Claim the trial of a half-open breaker for `owner` (`SQL_CLAIM_TRIAL`): None if it
        is the owner's (or the breaker is not stored), else the stored breaker, whose trial is
        another process's or which is not due for one."""

        async def claim(conn: aiosqlite.Connection) -> tuple[Any, ...] | None:
            if (await conn.execute(SQL_CLAIM_TRIAL, (key, now, owner.id))).rowcount:
                return None
            rows = list(await conn.execute_fetchall(SQL_BREAKER, (key,)))
            return tuple(rows[0]) if rows else None

        found = await self._submit(claim)
        return None if found is None else BreakerRecord(*found)

    # -- schedules ---------------------------------------------------------------------------------

    async def claim_fire(
        self, pipeline_id: str, schedule_key: str, fire_time: str, run_id: str, owner: Owner
    ) -> bool:
        """Claim one fire time of a schedule for `run_id`: True for exactly one claimer of
        (pipeline, schedule, fire time), whichever process or host it runs in."""
        params = (
            pipeline_id, schedule_key, fire_time, run_id, owner.host, owner.pid, time.time()
        )

        async def claim(conn: aiosqlite.Connection) -> bool:
            return (await conn.execute(SQL_CLAIM_FIRE, params)).rowcount == 1

        return await self._submit(claim)

    async def last_fires(self, pipeline_id: str) -> dict[str, tuple[str, str]]:
        """The latest claimed fire of each of the pipeline's schedules: key -> (time, run id)."""
        rows = await self._fetch(SQL_LAST_FIRES, (pipeline_id,))
        return {str(key): (str(fire), str(run_id)) for key, fire, run_id in rows}


async def _scalar(conn: aiosqlite.Connection, sql: str) -> int:
    rows = list(await conn.execute_fetchall(sql))
    return int(rows[0][0])


async def _rollback(conn: aiosqlite.Connection) -> None:
    """Roll back if a transaction is open (SQLite rolls back by itself after some errors)."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            await conn.execute(SQL_ROLLBACK)
