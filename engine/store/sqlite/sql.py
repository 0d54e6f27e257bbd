"""Every SQL statement of the SQLite store (besides `schema.sql`), in one place.

Contract: constants and pure builders of SQL text with their parameters, no I/O. Each
statement's comment says what its numbered parameters are and why it is one statement (the
lease check, the take-over's compare-and-set, the breaker counting and the trial claim are
single statements, so that any number of processes can race on them safely). The statements are
plain SQL meant for the PostgreSQL store to reuse in spirit: only the JSON helpers
(`json_each`, `group_concat`) and `INSERT OR IGNORE` are SQLite's own.
"""

from __future__ import annotations

import functools
import json
import re
import time
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from engine.run_filter import RunFilter

EVENT_COLUMNS = "event_id, run_id, seq, event_type, node_id, timestamp_utc, body"
RUN_COLUMNS = (
    "run_id, pipeline_id, state, created_at, started_at, ended_at, last_seq, replay_of, "
    "owner_host, owner_pid, owner_started_at, heartbeat_at, owner_id, fence, lease_expires_at, "
    "retry_of"
)
COMMAND_COLUMNS = "id, run_id, kind, node_id, reason, actor, created_at, acked_at, result"
BREAKER_COLUMNS = "key, state, failures, opened_at, recovery_timeout, updated_at"

SQL_INSERT_EVENT = f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"


@functools.cache
def sql_insert_events(count: int) -> str:
    """`SQL_INSERT_EVENT` for `count` rows at once."""
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * count)
    return f"INSERT INTO events ({EVENT_COLUMNS}) VALUES {values}"


# Rows per INSERT: the largest of the few statement sizes a batch is cut into (256, 128, ... 1
# rows, so that every statement is prepared once and then found in sqlite3's statement cache).
INSERT_CHUNK: Final = 256
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
# events of that run are refused (unless the run has no row at all: see `batch.refused_runs`).
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


def as_json_array(select_bodies: str) -> str:
    """The same rows as one JSON array text, concatenated by SQLite (NULL if there are none).

    One string crosses from SQLite to Python instead of a row per event: the cheapest way to
    read 100,000 events. Before SQLite 3.44 group_concat's order is unspecified, so readers
    sort by seq afterwards (a linear pass over data that is already in order).
    """
    return f"SELECT '[' || group_concat(body, ',') || ']' FROM ({select_bodies})"


SQL_EVENTS_ARRAY = as_json_array(SQL_EVENTS)
SQL_EVENTS_OF_TYPE_ARRAY = as_json_array(SQL_EVENTS_OF_TYPE)
SQL_TAIL_EVENTS_ARRAY = as_json_array(SQL_TAIL_EVENTS)
# A chunk of a run's events to fold: as one array, with how many there are and the last seq.
SQL_EVENTS_CHUNK_ROWS = (
    "SELECT body, seq FROM events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?"
)
SQL_EVENTS_CHUNK = (
    "SELECT '[' || group_concat(body, ',') || ']', count(*), coalesce(max(seq), 0) "
    f"FROM ({SQL_EVENTS_CHUNK_ROWS})"
)
SQL_LAST_SEQ = "SELECT coalesce(max(seq), 0) FROM events WHERE run_id = ?"

SQL_RUN = f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?"
SQL_RUNS = f"SELECT {RUN_COLUMNS} FROM runs ORDER BY created_at DESC, rowid DESC LIMIT ?"
SQL_RUNS_IN_STATES = (
    f"SELECT {RUN_COLUMNS} FROM runs WHERE state IN (SELECT value FROM json_each(?)) "
    "ORDER BY created_at DESC, rowid DESC LIMIT ?"
)
# The whole history, a page at a time: newest first, the next page after a (created_at, rowid)
# keyset; the WHERE clause comes from `runs_where`.
SQL_RUNS_PAGE = (
    f"SELECT {RUN_COLUMNS}, rowid FROM runs{{}} ORDER BY created_at DESC, rowid DESC LIMIT ?"
)
SQL_COUNT_RUNS = "SELECT count(*) FROM runs{}"
SQL_LINKED_RUNS = (
    "SELECT run_id, 'retry', created_at FROM runs WHERE retry_of = ?1 UNION ALL "
    "SELECT run_id, 'replay', created_at FROM runs WHERE replay_of = ?1 ORDER BY 3, 1"
)


def runs_where(
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
            # LIKE, not instr over lower(...): no string is built per row (benchmarks/NOTES.md).
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
    f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id >= ? AND run_id < ? ORDER BY run_id LIMIT 3"
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
    f"SELECT {COMMAND_COLUMNS} FROM commands WHERE acked_at IS NULL "
    "AND run_id IN (SELECT value FROM json_each(?)) ORDER BY id"
)
SQL_ACK_COMMAND = "UPDATE commands SET acked_at = ?, result = ? WHERE id = ? AND acked_at IS NULL"
SQL_COMMAND = f"SELECT {COMMAND_COLUMNS} FROM commands WHERE id = ?"

SQL_BREAKERS = f"SELECT {BREAKER_COLUMNS} FROM breakers ORDER BY key"
SQL_SAVE_BREAKER = f"""
INSERT INTO breakers ({BREAKER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)
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
SQL_BREAKER = f"SELECT {BREAKER_COLUMNS} FROM breakers WHERE key = ?"
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
BUSY_TIMEOUT_MS: Final = 12_000
BUSY_TIMEOUT_SECONDS: Final = BUSY_TIMEOUT_MS / 1000
