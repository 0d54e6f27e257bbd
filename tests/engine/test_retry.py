"""Retries: the policy as data, backoff that grows, and which error classes are retried.

`sleep` is injected, so the delays are recorded instead of waited for.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import TYPE_CHECKING, Any

import pytest

from engine.api import callable_ref
from engine.errors import TransientError
from engine.events import EventType
from engine.manager import RunManager
from engine.retry import backoff_wait
from engine.spec import Backoff
from engine.state import NodeStatus, RunStatus

if TYPE_CHECKING:
    from conftest import MakePipeline, Recorder, RunPipeline

    from engine.events import Event
    from engine.nodes import NodeContext


class SleepRecorder:
    """An injected `sleep` that records each delay and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def flaky(failures: int, exc: type[Exception] = TransientError) -> tuple[str, list[int]]:
    """A callable failing `failures` times with `exc`, then succeeding; and its call log."""
    calls: list[int] = []

    async def work(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
        calls.append(payload["attempt"])
        if len(calls) <= failures:
            raise exc(f"failure {len(calls)}")
        return {"attempt": payload["attempt"]}

    return callable_ref(work), calls


def retried(events: list[Event]) -> list[Event]:
    return [e for e in events if e.event_type == EventType.NODE_RETRIED]


async def test_a_node_succeeds_after_two_transient_failures_with_growing_recorded_backoff(
    run_pipeline: RunPipeline,
) -> None:
    call, calls = flaky(2)
    sleep = SleepRecorder()
    state, events = await run_pipeline(
        {
            "nodes": [
                {
                    "id": "fetch",
                    "type": "python",
                    "call": call,
                    "retry": {
                        "max_attempts": 3,
                        "backoff": {"initial": "100ms", "multiplier": 2, "jitter": 0},
                    },
                }
            ]
        },
        sleep=sleep,
    )
    node = state.nodes["fetch"]
    assert state.state is RunStatus.SUCCEEDED
    assert node.state is NodeStatus.SUCCEEDED
    assert node.attempts == 3
    assert node.output == {"attempt": 3}
    assert calls == [1, 2, 3]
    assert sleep.delays == pytest.approx([0.1, 0.2])
    events_retried = retried(events)
    assert [(e.attempt, e.error_class) for e in events_retried] == [
        (1, "transient"),
        (2, "transient"),
    ]
    assert [(e.data or {})["delay"] for e in events_retried] == pytest.approx(sleep.delays)
    assert [e.reason for e in events_retried] == ["failure 1", "failure 2"]
    started = [e.attempt for e in events if e.event_type == EventType.NODE_STARTED]
    assert started == [1, 2, 3]
    assert [(r.attempt, r.outcome) for r in node.history] == [
        (1, "retrying"),
        (2, "retrying"),
        (3, "succeeded"),
    ]


async def test_backoff_with_jitter_still_grows_and_stays_within_its_bounds(
    run_pipeline: RunPipeline,
) -> None:
    call, _ = flaky(4)
    sleep = SleepRecorder()
    state, _ = await run_pipeline(
        {
            "nodes": [
                {
                    "id": "fetch",
                    "type": "python",
                    "call": call,
                    "retry": {
                        "max_attempts": 5,
                        "backoff": {"initial": 1, "multiplier": 3, "max": 60, "jitter": 0.1},
                    },
                }
            ]
        },
        sleep=sleep,
    )
    assert state.state is RunStatus.SUCCEEDED
    assert len(sleep.delays) == 4
    for delay, base in zip(sleep.delays, (1, 3, 9, 27), strict=True):
        assert base * 0.9 <= delay <= base * 1.1
    assert sleep.delays == sorted(sleep.delays)


async def test_retries_stop_when_the_attempts_are_exhausted(run_pipeline: RunPipeline) -> None:
    call, calls = flaky(10)
    sleep = SleepRecorder()
    state, events = await run_pipeline(
        {
            "nodes": [
                {"id": "fetch", "type": "python", "call": call,
                 "retry": {"max_attempts": 3, "backoff": {"initial": 0.01}}},
                {"id": "after", "type": "parallel", "needs": ["fetch"]},
            ]
        },
        sleep=sleep,
    )
    node = state.nodes["fetch"]
    assert calls == [1, 2, 3]
    assert node.state is NodeStatus.FAILED
    assert node.error_class == "transient"
    assert node.attempts == 3
    assert node.reason == "failure 3"
    assert len(retried(events)) == 2
    assert len(sleep.delays) == 2
    assert state.nodes["after"].state is NodeStatus.SKIPPED
    assert state.state is RunStatus.FAILED


async def test_an_error_class_not_in_retry_on_is_tried_once(run_pipeline: RunPipeline) -> None:
    call, calls = flaky(10, ValueError)
    sleep = SleepRecorder()
    state, events = await run_pipeline(
        {
            "nodes": [
                {"id": "parse", "type": "python", "call": call,
                 "retry": {"max_attempts": 5, "on": ["transient", "timeout"]}},
            ]
        },
        sleep=sleep,
    )
    assert calls == [1]
    assert state.nodes["parse"].state is NodeStatus.FAILED
    assert state.nodes["parse"].error_class == "error"
    assert state.nodes["parse"].attempts == 1
    assert retried(events) == []
    assert sleep.delays == []


async def test_class_error_is_retried_when_retry_on_names_it(run_pipeline: RunPipeline) -> None:
    call, calls = flaky(1, ValueError)
    state, _ = await run_pipeline(
        {
            "nodes": [
                {"id": "parse", "type": "python", "call": call,
                 "retry": {"max_attempts": 2, "on": ["error"]}},
            ]
        },
        sleep=SleepRecorder(),
    )
    assert calls == [1, 2]
    assert state.nodes["parse"].state is NodeStatus.SUCCEEDED


async def test_the_pipeline_defaults_give_every_node_its_retry_policy(
    run_pipeline: RunPipeline,
) -> None:
    call, calls = flaky(1)
    state, _ = await run_pipeline(
        {
            "defaults": {"retry": {"max_attempts": 2, "backoff": {"initial": 0.5}}},
            "nodes": [{"id": "fetch", "type": "python", "call": call}],
        },
        sleep=SleepRecorder(),
    )
    assert calls == [1, 2]
    assert state.nodes["fetch"].state is NodeStatus.SUCCEEDED


def test_backoff_delays_grow_exponentially_up_to_the_cap() -> None:
    wait = backoff_wait(Backoff(initial=1, max=10, multiplier=2, jitter=0))
    assert [wait.delay_for(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_backoff_jitter_is_relative_and_bounded() -> None:
    wait = backoff_wait(Backoff(initial=2, max=60, multiplier=2, jitter=0.25), random.Random(7))
    delays = [wait.delay_for(3) for _ in range(200)]
    assert all(6.0 <= d <= 10.0 for d in delays)
    assert max(delays) - min(delays) > 1.0  # it does vary


def test_backoff_continues_from_the_attempts_already_made() -> None:
    wait = backoff_wait(Backoff(initial=1, max=60, multiplier=2, jitter=0), first=3)
    assert wait.delay_for(wait.first) == 4


async def test_a_cancelled_attempt_is_never_retried_whatever_retry_on_names(
    make_pipeline: MakePipeline, recorder: Recorder
) -> None:
    async def slow(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
        await asyncio.sleep(30)
        return {}

    pipeline = make_pipeline(
        {
            "cleanup_grace": 0.2,
            "nodes": [
                {"id": "n", "type": "python", "call": callable_ref(slow),
                 "retry": {"max_attempts": 5, "on": ["error", "cancelled"],
                           "backoff": {"initial": 0.01}}},
            ],
        }
    )
    async with RunManager(sinks=[recorder]) as manager:
        handle = await manager.start(pipeline)
        await recorder.wait_for(EventType.NODE_STARTED, "n")
        manager.cancel(handle.run_id)
        began = time.monotonic()
        state = await handle.wait(10)
        assert time.monotonic() - began < 0.5
    events = recorder.of(handle.run_id)
    assert retried(events) == []
    assert [e.attempt for e in events if e.event_type == EventType.NODE_STARTED] == [1]
    assert state.nodes["n"].state is NodeStatus.CANCELLED


async def test_the_run_deadline_is_not_retried_away(run_pipeline: RunPipeline) -> None:
    async def slow(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
        await asyncio.sleep(30)
        return {}

    state, events = await run_pipeline(
        {
            "timeout": 0.1,
            "nodes": [
                {"id": "n", "type": "python", "call": callable_ref(slow),
                 "retry": {"max_attempts": 5, "on": ["error", "cancelled", "timeout"]}},
            ],
        },
        sleep=SleepRecorder(),
    )
    assert state.state is RunStatus.TIMEOUT
    assert retried(events) == []
    assert state.nodes["n"].state is NodeStatus.CANCELLED
