-- Interlock store schema.
--
-- Each "-- migration N" section upgrades a database from schema version N-1 to N. `Store.open`
-- applies the pending sections in order, each in its own BEGIN IMMEDIATE transaction together
-- with `PRAGMA user_version = N`, so a database is always at exactly one version.
-- Sections are append-only: never edit a released migration; add the next one below.
--
-- The events table is the source of truth. `runs` is an index over it, maintained by the store in
-- the same transaction as the events it is derived from. `commands` and `breakers` are the only
-- state that is not derived from events: cross-process requests, and circuit breakers that
-- outlive a process.

-- migration 1

CREATE TABLE events (
    id            INTEGER PRIMARY KEY,        -- insertion order
    event_id      TEXT    NOT NULL UNIQUE,
    run_id        TEXT    NOT NULL,
    seq           INTEGER NOT NULL CHECK (seq >= 1),
    event_type    TEXT    NOT NULL,
    node_id       TEXT,
    timestamp_utc TEXT    NOT NULL,           -- ISO 8601, Z
    body          TEXT    NOT NULL,           -- Event.to_json(): the event itself
    UNIQUE (run_id, seq)                      -- also the index every per-run read walks
);

-- No foreign key to runs: an event is stored even if its run's run.created never was.
CREATE TABLE runs (
    run_id           TEXT    PRIMARY KEY,
    pipeline_id      TEXT    NOT NULL,
    state            TEXT    NOT NULL DEFAULT 'pending',
    created_at       TEXT    NOT NULL,        -- timestamps of events: ISO 8601, Z
    started_at       TEXT,
    ended_at         TEXT,
    last_seq         INTEGER NOT NULL DEFAULT 0,
    replay_of        TEXT,
    owner_host       TEXT,
    owner_pid        INTEGER,
    owner_started_at REAL,                    -- the owner's process create time (epoch seconds)
    heartbeat_at     REAL                     -- epoch seconds
);

CREATE INDEX runs_newest_first ON runs (created_at DESC);
CREATE INDEX runs_by_state ON runs (state);

CREATE TABLE commands (
    id         INTEGER PRIMARY KEY,
    run_id     TEXT    NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    kind       TEXT    NOT NULL CHECK (kind IN ('cancel', 'approve', 'reject')),
    node_id    TEXT,
    reason     TEXT,
    actor      TEXT    NOT NULL,
    created_at REAL    NOT NULL,
    acked_at   REAL,
    result     TEXT
);

-- The owner polls this several times a second; only unacknowledged commands are indexed.
CREATE INDEX commands_pending ON commands (run_id, id) WHERE acked_at IS NULL;

CREATE TABLE breakers (
    key              TEXT    PRIMARY KEY,
    state            TEXT    NOT NULL CHECK (state IN ('closed', 'open', 'half_open')),
    failures         INTEGER NOT NULL DEFAULT 0,
    opened_at        REAL,                    -- epoch seconds; NULL unless it has opened
    recovery_timeout REAL    NOT NULL,
    updated_at       REAL    NOT NULL
);

-- migration 2

-- Leases with fencing (DESIGN section 4, "Ownership"). A run's owner holds a lease: its id (one
-- per process), host and pid, a fencing number that grows by one at every take-over, and an
-- expiry its heartbeats push forward. Every batch of events checks the fencing number of the
-- writer in its own transaction (`UPDATE runs ... WHERE fence = ?`); a take-over is a
-- compare-and-set on it. Plain SQL, so the PostgreSQL store uses the same statements.
ALTER TABLE runs ADD COLUMN owner_id TEXT;
ALTER TABLE runs ADD COLUMN fence INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN lease_expires_at REAL;   -- epoch seconds

-- Whose trial a half-open breaker is running (an owner id, as in `runs`): one trial across
-- processes, claimed by compare-and-set; cleared by the trial's outcome.
ALTER TABLE breakers ADD COLUMN trial_owner TEXT;

-- migration 3

-- Retry from failure links a new run to the one it retries, as `replay_of` links a replay; both
-- are looked up backwards (an old run lists its retries and replays), hence the partial indexes.
ALTER TABLE runs ADD COLUMN retry_of TEXT;
CREATE INDEX runs_retry_of ON runs (retry_of) WHERE retry_of IS NOT NULL;
CREATE INDEX runs_replay_of ON runs (replay_of) WHERE replay_of IS NOT NULL;

-- The whole history, paged newest first (keyset on created_at, rowid) and filtered by state or
-- pipeline without reading the runs of other states or pipelines.
CREATE INDEX runs_state_newest ON runs (state, created_at DESC);
CREATE INDEX runs_pipeline_newest ON runs (pipeline_id, created_at DESC);

-- migration 4

-- Schedule fire times claimed by `interlock serve` processes: the primary key makes the claim
-- of one fire an INSERT that only one process can win, whatever number of services share the
-- database. A row is written before the fired run is created; `run_id` names that run.
CREATE TABLE schedule_fires (
    pipeline_id  TEXT    NOT NULL,
    schedule_key TEXT    NOT NULL,            -- engine.schedule.schedule_key of the entry
    fire_time    TEXT    NOT NULL,            -- ISO 8601, Z (the fire time, not the claim's)
    run_id       TEXT    NOT NULL,
    owner_host   TEXT    NOT NULL,
    owner_pid    INTEGER NOT NULL,
    claimed_at   REAL    NOT NULL,            -- epoch seconds
    PRIMARY KEY (pipeline_id, schedule_key, fire_time)
);
