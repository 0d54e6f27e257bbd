"""Run leases: who may write a run's events, and when a run counts as `interrupted`.

Contract (DESIGN section 4, "Ownership"):
- A run's owner holds a lease stored in the run's row: owner id, host, pid, process create time,
  a fencing number (`fence`, +1 at every take-over) and an expiry (`lease_expires_at`, epoch
  seconds) that the owner's heartbeats push `lease_seconds()` ahead every
  `heartbeat_seconds()`.
- `is_interrupted(row, now)` (`judge` with its reason; `owner_alive` and `shown_state` as readers
  ask it) is the one definition of `interrupted`, a pure function of the row,
  the time and (for an owner on this host) whether its pid still runs: a non-terminal run is
  interrupted when it has no owner, when its lease has expired (whatever the pid shows: a
  SIGSTOPped owner loses its run), or when its owner ran on this host and that process is gone
  (the shortcut that spares a crashed run the wait). Reading a run never writes to it.
- Lease length: 20 s by default, heartbeat every 4 s (a fifth of the lease). A heartbeat waits
  behind the store's busy timeout (12 s) at worst, so a write lock held by another process for
  up to 10 s never costs a live owner its lease. `INTERLOCK_LEASE_SECONDS` shortens (or
  lengthens) it, e.g. for tests; the heartbeat follows at a fifth of it.
"""

from __future__ import annotations

import math
import os
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

from engine.errors import InterlockError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "LeaseConfigError",
    "LeaseHolder",
    "LeaseLostError",
    "TakeOverRefusedError",
    "heartbeat_seconds",
    "is_interrupted",
    "lease_seconds",
    "owner_alive",
    "owner_text",
    "shown_state",
]

DEFAULT_LEASE_SECONDS: Final = 20.0
_MIN_LEASE: Final = 0.5
LEASE_ENV: Final = "INTERLOCK_LEASE_SECONDS"
# Not terminal: a run in one of these states has, or needs, an owner ("interrupted" is stored by
# a take-over that then lost its own process before the run went on).
UNSETTLED: Final = frozenset({"pending", "running", "waiting", "interrupted"})


def lease_seconds() -> float:
    """The lease length: `INTERLOCK_LEASE_SECONDS` if set, else 20 s. A value that is not a
    number of seconds of at least 0.5 is refused (`LeaseConfigError`): a typo must not
    silently leave runs with a lease nobody meant."""
    raw = os.environ.get(LEASE_ENV, "").strip()
    if not raw:
        return DEFAULT_LEASE_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < _MIN_LEASE:
        raise LeaseConfigError(
            f"{LEASE_ENV} must be a number of seconds of at least {_MIN_LEASE:g}, not {raw!r}"
        )
    return value


def heartbeat_seconds() -> float:
    """How often an owner renews its leases: a fifth of the lease."""
    return lease_seconds() / 5.0


class LeaseHolder(Protocol):
    """What `is_interrupted` reads of a run's row (the store's `RunRow`)."""

    @property
    def state(self) -> str: ...
    @property
    def owner_id(self) -> str | None: ...
    @property
    def owner_host(self) -> str | None: ...
    @property
    def owner_pid(self) -> int | None: ...
    @property
    def owner_started_at(self) -> float | None: ...
    @property
    def lease_expires_at(self) -> float | None: ...


@dataclass(frozen=True)
class Verdict:
    """Why a run is, or is not, interrupted."""

    interrupted: bool
    reason: str


def judge(
    row: LeaseHolder,
    now: float,
    *,
    pid_alive: Callable[[str, int, float], bool] | None = None,
) -> Verdict:
    """`is_interrupted` with its reason (recorded by the resume or cancel that acts on it)."""
    if row.state not in UNSETTLED:
        return Verdict(False, f"the run is {row.state}")
    if row.owner_id is None or row.owner_pid is None or row.owner_host is None:
        return Verdict(True, "no process owns the run")
    if row.lease_expires_at is None or row.lease_expires_at < now:
        return Verdict(True, f"the lease of {owner_text(row)} expired")
    alive = pid_alive or _pid_alive
    if row.owner_host == socket.gethostname() and not alive(
        row.owner_host, int(row.owner_pid), float(row.owner_started_at or 0.0)
    ):
        return Verdict(True, f"the owner process ({owner_text(row)}) is gone")
    return Verdict(False, f"owned by {owner_text(row)}")


def is_interrupted(row: LeaseHolder, now: float) -> bool:
    """Whether a non-terminal run has lost its owner (see the module's contract)."""
    return judge(row, now).interrupted


def owner_alive(row: LeaseHolder, now: float | None = None) -> bool:
    """Whether a live process holds the run's lease (a terminal run counts as alive: it is not
    interrupted). The one test of owner liveness the CLI, the console and the service use."""
    return not judge(row, time.time() if now is None else now).interrupted


def shown_state(row: LeaseHolder, now: float | None = None) -> str:
    """The state a reader sees: `interrupted` for a run that lost its owner, else the stored
    one. Pure apart from the same-host pid check: reading never writes."""
    if row.state in UNSETTLED and not owner_alive(row, now):
        return "interrupted"
    return row.state


def owner_text(row: LeaseHolder) -> str:
    """'pid 123 on host-a': the owner, as messages name it."""
    return f"pid {row.owner_pid} on {row.owner_host}"


def _pid_alive(host: str, pid: int, started_at: float) -> bool:
    from engine.store import Owner

    return Owner(host, pid, started_at).is_alive()


class LeaseLostError(InterlockError):
    """This process's writes to a run were refused: another process holds the run's lease now
    (or the run has completed). The run is not this process's to write any more."""

    def __init__(self, run_id: str, message: str) -> None:
        self.run_id = run_id
        super().__init__(message)


class LeaseConfigError(InterlockError):
    """`INTERLOCK_LEASE_SECONDS` is not a usable lease length."""


class TakeOverRefusedError(InterlockError):
    """A resume or cancel lost the race for a run's lease (or found the run owned)."""
