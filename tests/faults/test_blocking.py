"""Blocking code cannot hold a run hostage.

A sync python node that ignores its timeout (it blocks its thread for 30 s) and a shell node
that traps SIGTERM both end on time: the thread is reported abandoned (in
`abandoned_threads()`, the failure reason and the node's log), the process group is SIGKILLed
after `cleanup_grace`; and the run goes on (an `all_done` node downstream runs, an independent
branch succeeds).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import psutil
import pytest

from engine.events import EventType, parse_timestamp
from engine.nodes import abandoned_threads
from engine.state import NodeStatus, RunStatus
from faults.helpers import report
from faults.work import RELEASE

if TYPE_CHECKING:
    from collections.abc import Iterator

    from conftest import RunPipeline

    from engine.events import Event

TIMEOUT = 0.3
GRACE = 0.2
SLACK = 0.5  # scheduling and process start-up


@pytest.fixture(autouse=True)
def blocked_threads_are_let_go() -> Iterator[None]:
    yield
    RELEASE.set()
    for thread in abandoned_threads():
        thread.join(5)
    RELEASE.clear()


def _span(events: list[Event], node_id: str) -> float:
    """Seconds from the node's start to its end."""
    mine = [e for e in events if e.node_id == node_id]
    start = next(e for e in mine if e.event_type == EventType.NODE_STARTED)
    end = next(e for e in mine if e.event_type == EventType.NODE_TIMED_OUT)
    return parse_timestamp(end.timestamp_utc) - parse_timestamp(start.timestamp_utc)


async def test_a_sync_node_that_ignores_its_timeout_times_out_on_time_and_is_reported_abandoned(
    run_pipeline: RunPipeline,
) -> None:
    started = time.monotonic()
    state, events = await run_pipeline(
        {
            "cleanup_grace": GRACE,
            "nodes": [
                {"id": "stuck", "type": "python", "call": "faults.work:blocks", "timeout": TIMEOUT},
                {
                    "id": "after",
                    "type": "python",
                    "call": "faults.work:quick",
                    "needs": ["stuck"],
                    "trigger": "all_done",
                },
                {"id": "beside", "type": "python", "call": "faults.work:quick"},
            ],
        }
    )
    took = time.monotonic() - started

    stuck = state.nodes["stuck"]
    assert stuck.state is NodeStatus.TIMED_OUT
    assert stuck.error_class == "timeout"
    assert stuck.reason is not None and "abandoned" in stuck.reason, stuck.reason
    assert any("abandoned" in line for line in stuck.logs)
    assert any(t.name.endswith(":stuck") for t in abandoned_threads())
    span = _span(events, "stuck")
    report(f"blocking: sync node with timeout {TIMEOUT}s ended after {span:.3f}s")
    assert span < TIMEOUT + SLACK
    assert took < 30 / 2, "the run waited for the blocked thread"
    assert state.nodes["after"].state is NodeStatus.SUCCEEDED
    assert state.nodes["beside"].state is NodeStatus.SUCCEEDED
    assert state.state is RunStatus.FAILED  # the timed-out node is not optional


async def test_a_shell_node_that_traps_sigterm_is_killed_after_the_grace_and_the_run_goes_on(
    run_pipeline: RunPipeline,
) -> None:
    state, events = await run_pipeline(
        {
            "cleanup_grace": GRACE,
            "nodes": [
                {
                    "id": "stubborn",
                    "type": "shell",
                    "timeout": TIMEOUT,
                    "command": ["sh", "-c", "echo $$; trap '' TERM; sleep 30"],
                },
                {
                    "id": "after",
                    "type": "python",
                    "call": "faults.work:quick",
                    "needs": ["stubborn"],
                    "trigger": "all_done",
                },
                {"id": "beside", "type": "shell", "command": ["true"]},
            ],
        }
    )

    stubborn = state.nodes["stubborn"]
    assert stubborn.state is NodeStatus.TIMED_OUT
    assert stubborn.error_class == "timeout"
    span = _span(events, "stubborn")
    report(f"blocking: SIGTERM-trapping shell, timeout {TIMEOUT}s + grace {GRACE}s: {span:.3f}s")
    assert TIMEOUT + GRACE - 0.05 <= span < TIMEOUT + GRACE + SLACK, span
    assert any("SIGTERM" in line for line in stubborn.logs), stubborn.logs
    assert any("SIGKILL" in line for line in stubborn.logs), stubborn.logs
    pid = int(next(line for line in stubborn.logs if line.strip().isdigit()))
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert state.nodes["after"].state is NodeStatus.SUCCEEDED
    assert state.nodes["beside"].state is NodeStatus.SUCCEEDED


async def test_an_optional_blocked_node_does_not_fail_the_run(run_pipeline: RunPipeline) -> None:
    state, _ = await run_pipeline(
        {
            "cleanup_grace": GRACE,
            "nodes": [
                {
                    "id": "stuck",
                    "type": "python",
                    "call": "faults.work:blocks",
                    "timeout": TIMEOUT,
                    "optional": True,
                },
                {
                    "id": "stubborn",
                    "type": "shell",
                    "timeout": TIMEOUT,
                    "optional": True,
                    "command": ["sh", "-c", "trap '' TERM; sleep 30"],
                },
                {
                    "id": "after",
                    "type": "python",
                    "call": "faults.work:quick",
                    "needs": ["stuck", "stubborn"],
                },
            ],
        }
    )
    assert state.nodes["stuck"].state is NodeStatus.TIMED_OUT
    assert state.nodes["stubborn"].state is NodeStatus.TIMED_OUT
    assert state.nodes["after"].state is NodeStatus.SUCCEEDED
    assert state.state is RunStatus.SUCCEEDED
