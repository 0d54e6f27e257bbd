"""The values a store hands out, and the one error it raises.

Contract: `RunRow` (a run as indexed), `Owner` (a process that owns runs) and `Command` (a
request to a run's owner) are frozen values, the same whichever backend stored them.
`StoreError`'s message names the database and the problem in one sentence; no driver error
(sqlite3, asyncpg) escapes a store. `Owner.current()` and `Owner.is_alive` are the only I/O here
(psutil, on this host).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Final

import psutil

from engine.errors import InterlockError

__all__ = ["Command", "Owner", "RunRow", "StoreError"]

# Same-host liveness: how far two readings of one process's create time may differ (psutil
# derives it from the boot time, which moves by up to a second when the clock is adjusted).
_CREATE_TIME_TOLERANCE: Final = 1.0


class StoreError(InterlockError):
    """The store could not do what was asked; the message names the database and the problem."""


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


COMMAND_KINDS: Final = frozenset({"cancel", "approve", "reject"})
