"""Circuit breakers: one small state machine per key, shared by every run in a process.

Contract (DESIGN section 4): each failed attempt counts; at `failure_threshold` consecutive
failures the breaker opens; while open, attempts fail at once with `circuit_open` without running
the work; after `recovery_timeout` it is half-open and admits exactly one trial; the trial's
success closes it, its failure re-opens it. Every change is reported to listeners, which turn it
into a `breaker.state_changed` event in the run where it happened; every counted outcome is
reported to `on_outcome` (the RunManager counts it in the Store, atomically), so that breakers
trip across processes and an open breaker stays open, with its remaining cool-down, in the next
process.

Written by hand rather than taken from a library (pybreaker, aiobreaker): those keep their state
private, use their own clocks and cannot express "half-open admits exactly one trial" across
asyncio tasks or be persisted and restored with a remaining cool-down.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


_CLOSED = BreakerState.CLOSED  # for `admits_freely`: a global costs less than a class attribute


@dataclass(frozen=True)
class BreakerChange:
    """One transition, as reported to listeners."""

    key: str
    from_state: BreakerState
    to_state: BreakerState
    failures: int
    recovery_timeout: float
    opened_at: float | None


def cool_down_left(opened_at: float | None, recovery_timeout: float, now: float) -> float:
    """Seconds of an open breaker's cool-down left at `now` (never negative): the one
    cool-down arithmetic (the breaker itself, the store's records, the CLI, the console)."""
    if opened_at is None:
        return 0.0
    return max(0.0, opened_at + recovery_timeout - now)


@dataclass(frozen=True)
class BreakerRecord:
    """A breaker as everyone outside the engine reads it: the store's row, a live breaker's
    `snapshot()`, what `interlock breakers` and the console list. Times are epoch seconds;
    `updated_at` is when it last changed (0: never here)."""

    key: str
    state: str
    failures: int
    opened_at: float | None
    recovery_timeout: float
    updated_at: float = 0.0

    def remaining(self, now: float) -> float:
        """Seconds of cool-down left while open (0 when not open)."""
        if self.state != "open":
            return 0.0
        return cool_down_left(self.opened_at, self.recovery_timeout, now)

    def shown_state(self, now: float) -> str:
        """An open breaker whose cool-down has run out admits a trial: it is half-open."""
        if self.state == "open" and self.opened_at is not None and self.remaining(now) <= 0:
            return BreakerState.HALF_OPEN.value
        return str(self.state)

    def item(self, now: float) -> dict[str, Any]:
        """As `interlock breakers --json` and `GET /v1/breakers` list it (`state` as shown)."""
        return {
            "key": self.key,
            "state": self.shown_state(now),
            "failures": self.failures,
            "opened_at": self.opened_at,
            "recovery_timeout": self.recovery_timeout,
            "remaining": round(self.remaining(now), 3),
        }


BreakerSnapshot = BreakerRecord  # the name `snapshot()`'s result had: one model now


class CircuitOpenError(Exception):
    def __init__(self, key: str, remaining: float) -> None:
        self.key = key
        self.remaining = remaining
        super().__init__(f"circuit '{key}' is open ({remaining:.1f}s of cool-down left)")


Listener = Callable[[BreakerChange], None]


class CircuitBreaker:
    """A keyed breaker. Not thread-safe: it lives on the event loop."""

    def __init__(
        self,
        key: str,
        failure_threshold: int,
        recovery_timeout: float,
        *,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[CircuitBreaker, BreakerChange], None] | None = None,
        on_outcome: Callable[[CircuitBreaker, bool], None] | None = None,
    ) -> None:
        self.key = key
        self.failure_threshold = failure_threshold
        self.recovery_timeout = recovery_timeout
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.opened_at: float | None = None
        self._trial_in_flight = False
        self._clock = clock
        self._on_change = on_change
        self._on_outcome = on_outcome  # (breaker, failed): every counted outcome (the store)
        self.changed_at = 0.0  # wall time of the last transition (0: never changed here)

    def now(self) -> float:
        """The breaker's clock (wall time, or the one injected): stored times use it too."""
        return self._clock()

    @property
    def admits_freely(self) -> bool:
        """Closed with nothing counted: `acquire` and `record_success` would change nothing
        and report nothing (the usual case, asked twice per attempt: the executor then skips
        both, and the listener it would have made for them)."""
        return (
            self.state is _CLOSED
            and not self.failures
            and self.opened_at is None
            and not self._trial_in_flight
        )

    def snapshot(self) -> BreakerRecord:
        """The breaker as a record (its `state` the `BreakerState` member)."""
        self._refresh()
        return BreakerRecord(
            self.key, self.state, self.failures, self.opened_at, self.recovery_timeout,
            self.changed_at,
        )

    def remaining(self) -> float:
        """Seconds of cool-down left now (0 unless open)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return cool_down_left(self.opened_at, self.recovery_timeout, self._clock())

    def _move(self, to: BreakerState, listeners: list[Listener] | None = None) -> None:
        if to is self.state:
            return
        change = BreakerChange(
            self.key, self.state, to, self.failures, self.recovery_timeout, self.opened_at
        )
        self.state = to
        self.changed_at = self._clock()
        if self._on_change is not None:
            self._on_change(self, change)
        for listener in listeners or ():
            listener(change)

    def _refresh(self, listeners: list[Listener] | None = None) -> None:
        if (
            self.state is BreakerState.OPEN
            and self.opened_at is not None
            and cool_down_left(self.opened_at, self.recovery_timeout, self._clock()) <= 0
        ):
            self._move(BreakerState.HALF_OPEN, listeners)

    def acquire(self, listener: Listener | None = None) -> None:
        """Ask to run one attempt; raises CircuitOpenError when the breaker refuses."""
        if self.state is BreakerState.CLOSED:  # the usual case, asked once per attempt
            return
        listeners = [listener] if listener else None
        self._refresh(listeners)  # an open breaker may be half-open by now, never closed
        if self.state is BreakerState.HALF_OPEN and not self._trial_in_flight:
            self._trial_in_flight = True
            return
        raise CircuitOpenError(
            self.key, cool_down_left(self.opened_at, self.recovery_timeout, self._clock())
        )

    def record_success(self, listener: Listener | None = None) -> None:
        if (
            self.state is _CLOSED
            and not self.failures
            and self.opened_at is None
            and not self._trial_in_flight
        ):
            return  # nothing to change: the usual case, once per attempt
        self._trial_in_flight = False
        self.failures = 0
        self.opened_at = None
        if self._on_outcome is not None:
            self._on_outcome(self, False)
        self._move(BreakerState.CLOSED, [listener] if listener else None)

    def record_failure(self, listener: Listener | None = None) -> None:
        listeners = [listener] if listener else None
        was_trial = self.state is BreakerState.HALF_OPEN
        self._trial_in_flight = False
        self.failures += 1
        if self._on_outcome is not None:
            self._on_outcome(self, True)
        if was_trial or (
            self.state is BreakerState.CLOSED and self.failures >= self.failure_threshold
        ):
            self.opened_at = self._clock()
            self._move(BreakerState.OPEN, listeners)

    def release(self) -> None:
        """An admitted attempt ended without a verdict (cancelled): free the trial slot."""
        self._trial_in_flight = False

    def reset(self, listener: Listener | None = None) -> None:
        self._trial_in_flight = False
        self.failures = 0
        self.opened_at = None
        self._move(BreakerState.CLOSED, [listener] if listener else None)


class BreakerRegistry:
    """The breakers of one process, by key. `on_change` sees every transition (persistence)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[CircuitBreaker, BreakerChange], None] | None = None,
        on_outcome: Callable[[CircuitBreaker, bool], None] | None = None,
    ) -> None:
        self._breakers: dict[str, CircuitBreaker] = {}
        self._clock = clock
        self.on_change = on_change
        # Every counted attempt outcome, `(breaker, failed)`: the store counts them atomically
        # so that breakers trip across processes (DESIGN section 4).
        self.on_outcome = on_outcome

    def _notify_outcome(self, breaker: CircuitBreaker, failed: bool) -> None:
        if self.on_outcome is not None:
            self.on_outcome(breaker, failed)

    def _notify(self, breaker: CircuitBreaker, change: BreakerChange) -> None:
        if self.on_change is not None:
            self.on_change(breaker, change)

    def get(self, key: str, failure_threshold: int, recovery_timeout: float) -> CircuitBreaker:
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = CircuitBreaker(
                key,
                failure_threshold,
                recovery_timeout,
                clock=self._clock,
                on_change=self._notify,
                on_outcome=self._notify_outcome,
            )
            self._breakers[key] = breaker
        else:
            # The latest definition wins for thresholds; the state carries on.
            breaker.failure_threshold = failure_threshold
            breaker.recovery_timeout = recovery_timeout
        return breaker

    def restore(
        self,
        key: str,
        state: str,
        failures: int,
        opened_at: float | None,
        recovery_timeout: float,
        failure_threshold: int = 5,
        changed_at: float = 0.0,
    ) -> CircuitBreaker:
        """Bring back a persisted breaker (no change is reported: nothing changed)."""
        breaker = self.get(key, failure_threshold, recovery_timeout)
        # A persisted half-open breaker had a trial in flight in a process that is gone: the
        # trial's verdict is lost, so it comes back half-open with the trial slot free.
        breaker.state = BreakerState(state)
        breaker.failures = failures
        breaker.opened_at = opened_at
        breaker._trial_in_flight = False
        breaker.changed_at = changed_at
        return breaker

    def reset(self, key: str) -> bool:
        breaker = self._breakers.get(key)
        if breaker is None:
            return False
        breaker.reset()
        return True

    def snapshots(self) -> list[BreakerRecord]:
        return [b.snapshot() for b in sorted(self._breakers.values(), key=lambda b: b.key)]

    def __contains__(self, key: object) -> bool:
        return key in self._breakers

    def peek(self, key: str) -> CircuitBreaker | None:
        return self._breakers.get(key)


class StoredBreakers:
    """A process's breakers kept in step with the store, so that they trip across processes
    (DESIGN section 4): every counted outcome is stored atomically, the half-open trial is
    claimed in the store (one process gets it), and records other processes stored are taken
    in. Opening and closing are stored with the outcome that causes them; the turn to
    half-open, with the claim of its trial: a change itself has nothing left to store."""

    def __init__(self, registry: BreakerRegistry, store: BreakerStore, owner: Any) -> None:
        self.registry = registry
        self.store = store
        self.owner = owner

    def outcome(self, breaker: CircuitBreaker, failed: bool) -> None:
        self.store.record_breaker_outcome(
            breaker.key,
            failed=failed,
            failure_threshold=breaker.failure_threshold,
            recovery_timeout=breaker.recovery_timeout,
            now=breaker.now(),
        )

    async def claim_trial(self, breaker: CircuitBreaker) -> None:
        """Take the half-open breaker's one trial in the store, or refuse the attempt with
        `CircuitOpenError` when another process has it (its state is taken from the store)."""
        try:
            record = await self.store.claim_breaker_trial(breaker.key, self.owner, breaker.now())
        except BaseException:
            breaker.release()
            raise
        if record is None:
            return
        breaker.release()
        self._restore(record, breaker.failure_threshold)
        if breaker.state is BreakerState.CLOSED:
            return  # another process's trial closed it: the attempt goes as on a closed one
        raise CircuitOpenError(breaker.key, breaker.remaining())

    async def load(self) -> None:
        for record in (await self.store.load_breakers()).values():
            self._restore(record, 5)

    def refresh(self, records: Iterable[BreakerRecord]) -> None:
        """Take breaker changes other processes stored since we last looked."""
        for record in records:
            local = self.registry.peek(record.key)
            if local is None or record.updated_at > local.changed_at:
                self._restore(record, local.failure_threshold if local else 5)

    def _restore(self, record: BreakerRecord, failure_threshold: int) -> None:
        self.registry.restore(
            record.key, record.state, record.failures, record.opened_at,
            record.recovery_timeout, failure_threshold=failure_threshold,
            changed_at=record.updated_at,
        )

    async def reset(self, key: str) -> bool:
        """Close the breaker and clear its count, here and in the store (it stays listed)."""
        found = self.registry.reset(key)
        return await self.store.reset_breaker(key) or found


class BreakerStore(Protocol):
    """What `StoredBreakers` asks of the store."""

    def record_breaker_outcome(
        self, key: str, *, failed: bool, failure_threshold: int, recovery_timeout: float,
        now: float | None = ...,
    ) -> None: ...
    async def claim_breaker_trial(
        self, key: str, owner: Any, now: float
    ) -> BreakerRecord | None: ...
    async def load_breakers(self) -> dict[str, BreakerRecord]: ...
    async def reset_breaker(self, key: str) -> bool: ...
