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
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


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


@dataclass(frozen=True)
class BreakerSnapshot:
    key: str
    state: BreakerState
    failures: int
    opened_at: float | None
    recovery_timeout: float
    failure_threshold: int

    def remaining(self, now: float) -> float:
        """Seconds of cool-down left while open (0 when not open)."""
        if self.state is not BreakerState.OPEN or self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.recovery_timeout - now)


@dataclass(frozen=True)
class BreakerRecord:
    """A circuit breaker's persisted state (the store's row); times are epoch seconds."""

    key: str
    state: str
    failures: int
    opened_at: float | None
    recovery_timeout: float
    updated_at: float


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

    def snapshot(self) -> BreakerSnapshot:
        self._refresh()
        return BreakerSnapshot(
            self.key,
            self.state,
            self.failures,
            self.opened_at,
            self.recovery_timeout,
            self.failure_threshold,
        )

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
            and self._clock() >= self.opened_at + self.recovery_timeout
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
        remaining = 0.0
        if self.opened_at is not None:
            remaining = max(0.0, self.opened_at + self.recovery_timeout - self._clock())
        raise CircuitOpenError(self.key, remaining)

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

    def snapshots(self) -> list[BreakerSnapshot]:
        return [b.snapshot() for b in sorted(self._breakers.values(), key=lambda b: b.key)]

    def __contains__(self, key: object) -> bool:
        return key in self._breakers

    def peek(self, key: str) -> CircuitBreaker | None:
        return self._breakers.get(key)
