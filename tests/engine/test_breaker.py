"""Circuit breakers: the state machine on its own (with a fake clock), then across runs.

Each failed attempt counts; at the threshold the breaker opens; while open, attempts fail at
once with `circuit_open` without running the work; after the recovery time it is half-open and
admits exactly one trial; success closes it, failure re-opens it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from engine.api import callable_ref
from engine.breaker import (
    BreakerChange,
    BreakerRegistry,
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
)
from engine.events import EventType
from engine.state import NodeStatus, RunStatus

if TYPE_CHECKING:
    from conftest import RunPipeline

    from engine.events import Event
    from engine.nodes import NodeContext


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def moves(changes: list[BreakerChange]) -> list[tuple[str, str]]:
    return [(c.from_state.value, c.to_state.value) for c in changes]


# ---------------------------------------------------------------------------------------------
# the state machine


def test_a_breaker_opens_at_its_threshold_of_consecutive_failures(clock: FakeClock) -> None:
    changes: list[BreakerChange] = []
    breaker = CircuitBreaker("k", 3, 10.0, clock=clock)
    for _ in range(2):
        breaker.acquire(changes.append)
        breaker.record_failure(changes.append)
    assert breaker.state is BreakerState.CLOSED
    breaker.acquire(changes.append)
    breaker.record_success(changes.append)  # a success resets the count
    for _ in range(3):
        breaker.acquire(changes.append)
        breaker.record_failure(changes.append)
    assert breaker.snapshot().state is BreakerState.OPEN
    assert moves(changes) == [("closed", "open")]
    assert changes[0].failures == 3
    with pytest.raises(CircuitOpenError) as refused:
        breaker.acquire()
    assert refused.value.remaining == pytest.approx(10.0)


def test_an_open_breaker_goes_half_open_after_its_recovery_time(clock: FakeClock) -> None:
    breaker = CircuitBreaker("k", 1, 10.0, clock=clock)
    breaker.record_failure()
    clock.advance(9.9)
    with pytest.raises(CircuitOpenError):
        breaker.acquire()
    assert breaker.snapshot().remaining(clock()) == pytest.approx(0.1)
    clock.advance(0.1)
    changes: list[BreakerChange] = []
    breaker.acquire(changes.append)
    assert breaker.state is BreakerState.HALF_OPEN
    assert moves(changes) == [("open", "half_open")]


def test_a_half_open_breaker_admits_exactly_one_trial(clock: FakeClock) -> None:
    breaker = CircuitBreaker("k", 1, 10.0, clock=clock)
    breaker.record_failure()
    clock.advance(10)
    breaker.acquire()
    with pytest.raises(CircuitOpenError):
        breaker.acquire()
    with pytest.raises(CircuitOpenError):
        breaker.acquire()
    breaker.release()  # the trial was cancelled: its slot is free again
    breaker.acquire()
    with pytest.raises(CircuitOpenError):
        breaker.acquire()


def test_a_successful_trial_closes_the_breaker(clock: FakeClock) -> None:
    breaker = CircuitBreaker("k", 2, 10.0, clock=clock)
    breaker.record_failure()
    breaker.record_failure()
    clock.advance(10)
    changes: list[BreakerChange] = []
    breaker.acquire(changes.append)
    breaker.record_success(changes.append)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.failures == 0
    assert moves(changes) == [("open", "half_open"), ("half_open", "closed")]
    breaker.acquire()
    breaker.acquire()  # closed: no limit


def test_a_failed_trial_reopens_the_breaker_for_another_recovery_time(clock: FakeClock) -> None:
    breaker = CircuitBreaker("k", 2, 10.0, clock=clock)
    breaker.record_failure()
    breaker.record_failure()
    clock.advance(10)
    changes: list[BreakerChange] = []
    breaker.acquire(changes.append)
    breaker.record_failure(changes.append)
    assert breaker.state is BreakerState.OPEN
    assert moves(changes) == [("open", "half_open"), ("half_open", "open")]
    clock.advance(5)
    with pytest.raises(CircuitOpenError) as refused:
        breaker.acquire()
    assert refused.value.remaining == pytest.approx(5.0)


def test_the_registry_shares_one_breaker_per_key_and_reports_every_change(
    clock: FakeClock,
) -> None:
    seen: list[tuple[str, str]] = []
    registry = BreakerRegistry(
        clock=clock, on_change=lambda b, c: seen.append((b.key, c.to_state.value))
    )
    first = registry.get("warehouse", 1, 5.0)
    assert registry.get("warehouse", 1, 5.0) is first
    first.record_failure()
    assert seen == [("warehouse", "open")]
    assert [s.state for s in registry.snapshots()] == [BreakerState.OPEN]
    assert registry.reset("warehouse")
    assert seen[-1] == ("warehouse", "closed")
    assert not registry.reset("unknown")


# ---------------------------------------------------------------------------------------------
# across runs


class Service:
    """A fake downstream service: counts calls, fails while `down` is set."""

    def __init__(self) -> None:
        self.calls = 0
        self.down = True
        self.hold = 0.0

    async def __call__(self, payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
        self.calls += 1
        if self.hold:
            await asyncio.sleep(self.hold)
        if self.down:
            raise ConnectionError("service unavailable")
        return {"ok": True}


def breaker_moves(events: list[Event]) -> list[tuple[str, str]]:
    return [
        ((e.data or {})["from"], (e.data or {})["to"])
        for e in events
        if e.event_type == EventType.BREAKER_STATE_CHANGED
    ]


def service_pipeline(service: Service) -> dict[str, Any]:
    return {
        "id": "svc",
        "nodes": [
            {
                "id": "call",
                "type": "python",
                "call": callable_ref(service),
                "breaker": {"failure_threshold": 2, "recovery_timeout": "30s"},
            }
        ],
    }


async def test_a_breaker_trips_and_then_rejects_with_circuit_open_without_running_the_work(
    run_pipeline: RunPipeline, clock: FakeClock
) -> None:
    service = Service()
    breakers = BreakerRegistry(clock=clock)
    pipeline = service_pipeline(service)

    state, events = await run_pipeline(pipeline, breakers=breakers)
    assert state.nodes["call"].error_class == "error"
    assert breaker_moves(events) == []

    state, events = await run_pipeline(pipeline, breakers=breakers)
    assert breaker_moves(events) == [("closed", "open")]
    [change] = [e for e in events if e.event_type == EventType.BREAKER_STATE_CHANGED]
    assert change.data is not None
    assert change.data["key"] == "svc/call"
    assert change.data["failures"] == 2
    assert state.breakers["svc/call"]["state"] == "open"
    assert service.calls == 2

    state, events = await run_pipeline(pipeline, breakers=breakers)
    node = state.nodes["call"]
    assert service.calls == 2  # refused before the work ran
    assert node.state is NodeStatus.FAILED
    assert node.error_class == "circuit_open"
    assert "svc/call" in (node.reason or "")
    assert not [e for e in events if e.event_type == EventType.NODE_STARTED]
    assert node.attempts == 1
    assert state.state is RunStatus.FAILED


async def test_a_breaker_goes_half_open_after_its_recovery_time_and_closes_on_success(
    run_pipeline: RunPipeline, clock: FakeClock
) -> None:
    service = Service()
    breakers = BreakerRegistry(clock=clock)
    pipeline = service_pipeline(service)
    for _ in range(2):
        await run_pipeline(pipeline, breakers=breakers)
    clock.advance(29)
    state, _ = await run_pipeline(pipeline, breakers=breakers)
    assert state.nodes["call"].error_class == "circuit_open"

    clock.advance(1)
    service.down = False
    state, events = await run_pipeline(pipeline, breakers=breakers)
    assert service.calls == 3
    assert state.state is RunStatus.SUCCEEDED
    assert breaker_moves(events) == [("open", "half_open"), ("half_open", "closed")]
    assert breakers.snapshots()[0].state is BreakerState.CLOSED


async def test_a_failed_trial_reopens_the_breaker(
    run_pipeline: RunPipeline, clock: FakeClock
) -> None:
    service = Service()
    breakers = BreakerRegistry(clock=clock)
    pipeline = service_pipeline(service)
    for _ in range(2):
        await run_pipeline(pipeline, breakers=breakers)
    clock.advance(30)
    state, events = await run_pipeline(pipeline, breakers=breakers)
    assert service.calls == 3
    assert state.nodes["call"].error_class == "error"
    assert breaker_moves(events) == [("open", "half_open"), ("half_open", "open")]
    state, _ = await run_pipeline(pipeline, breakers=breakers)
    assert state.nodes["call"].error_class == "circuit_open"
    assert service.calls == 3


async def test_a_half_open_breaker_lets_exactly_one_of_two_concurrent_nodes_through(
    run_pipeline: RunPipeline, clock: FakeClock
) -> None:
    service = Service()
    service.down = False
    service.hold = 0.05  # the trial is still running when the second node asks
    breakers = BreakerRegistry(clock=clock)
    breakers.get("warehouse", 1, 10.0).record_failure()
    clock.advance(10)
    call = callable_ref(service)
    shared = {"key": "warehouse", "failure_threshold": 1, "recovery_timeout": 10}
    state, events = await run_pipeline(
        {
            "nodes": [
                {"id": "a", "type": "python", "call": call, "breaker": shared},
                {"id": "b", "type": "python", "call": call, "breaker": shared},
            ]
        },
        breakers=breakers,
    )
    assert service.calls == 1
    outcomes = sorted((n.state.value, n.error_class) for n in state.nodes.values())
    assert outcomes == [("failed", "circuit_open"), ("succeeded", None)]
    assert breaker_moves(events) == [("open", "half_open"), ("half_open", "closed")]


async def test_retries_count_against_the_breaker_and_stop_when_it_opens(
    run_pipeline: RunPipeline, clock: FakeClock
) -> None:
    service = Service()
    sleeps: list[float] = []

    async def sleep(delay: float) -> None:
        sleeps.append(delay)

    state, _ = await run_pipeline(
        {
            "nodes": [
                {
                    "id": "call",
                    "type": "python",
                    "call": callable_ref(service),
                    "retry": {"max_attempts": 5, "on": ["error"]},
                    "breaker": {"failure_threshold": 2},
                }
            ]
        },
        sleep=sleep,
        breakers=BreakerRegistry(clock=clock),
    )
    assert service.calls == 2  # the third attempt met an open circuit, which is not retried
    node = state.nodes["call"]
    assert node.error_class == "circuit_open"
    assert node.attempts == 3
    assert [r.outcome for r in node.history] == ["retrying", "retrying", "failed"]
