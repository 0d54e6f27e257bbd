"""Cancelling a run at any moment ends it `cancelled`, on time, leaving nothing behind.

Random small DAGs of work that does not end by itself (async sleeps, sync callables that ignore
cancellation, `sleep` processes, shells that trap SIGTERM or leave a background child, long
delays, approvals waiting for a decision) are cancelled at a random moment, including before the
run has a slot or while a process is being spawned. Within `cleanup_grace` plus one second the
run is `cancelled`, every node is terminal, no asyncio task of the run is left, and no process
the run started is alive (found by the run id in their environment, orphans included).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.bus import MemorySink
from engine.loader import load_dict
from engine.manager import RunManager
from engine.nodes import abandoned_threads
from engine.state import NodeStatus, RunState, RunStatus, fold
from faults.helpers import (
    FAULT_SETTINGS,
    kill_processes,
    other_tasks,
    processes_of_run,
    report,
    seqs_are_gap_free,
)
from faults.work import RELEASE

WORK: dict[str, dict[str, Any]] = {
    "async": {"type": "python", "call": "faults.work:sleeps"},
    "sync": {"type": "python", "call": "faults.work:blocks"},
    "quick": {"type": "python", "call": "faults.work:quick"},
    "sleep": {"type": "shell", "command": ["sleep", "30"]},
    "trap": {"type": "shell", "command": ["sh", "-c", "trap '' TERM; sleep 30"]},
    "background": {"type": "shell", "command": ["sh", "-c", "sleep 30 & sleep 30"]},
    "delay": {"type": "delay", "duration": "30s"},
    "approval": {"type": "approval"},
}
_ids = itertools.count()


@st.composite
def cancellable_runs(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(1, 8))
    nodes: list[dict[str, Any]] = []
    for i in range(count):
        kind = "trap" if i == 0 else draw(st.sampled_from(sorted(WORK)))
        needs = draw(st.lists(st.integers(0, i - 1), max_size=2, unique=True)) if i else []
        trigger = draw(st.sampled_from(["all_success", "all_done"]))
        nodes.append(
            {
                "id": f"{kind}{i}",
                **WORK[kind],
                "needs": [nodes[n]["id"] for n in needs],
                "trigger": trigger,
            }
        )
    return {
        "id": f"cancel-{next(_ids)}",
        "max_concurrency": draw(st.integers(1, 8)),
        "cleanup_grace": draw(st.sampled_from([0.05, 0.1, 0.2, 0.3])),
        "nodes": nodes,
    }


async def _cancel_at(raw: dict[str, Any], moment: float, slots: int) -> dict[str, Any]:
    pipeline = load_dict(raw, file="<cancel>")
    memory = MemorySink()
    async with RunManager(sinks=[memory], max_concurrent_runs=slots) as manager:
        blocker = None
        if slots == 1 and moment < 0.05:
            # Occupy the only slot, so this cancel lands on a run still waiting for one.
            blocker = await manager.start(
                load_dict({"id": "blocker", "nodes": [WORK["async"] | {"id": "hold"}]})
            )
        handle = await manager.start(pipeline)
        await asyncio.sleep(moment)
        terminal_before = handle.state.is_terminal
        manager.cancel(handle.run_id, "fuzzed cancel")
        asked = time.monotonic()
        state = await handle.wait(pipeline.cleanup_grace + 10)
        took = time.monotonic() - asked
        tasks = {t.get_name() for t in other_tasks()}
        if blocker is not None:
            manager.cancel(blocker.run_id)
            await blocker.wait(10)
            tasks -= {f"interlock-run:{blocker.run_id}", "interlock:hold"}
        left = processes_of_run(handle.run_id)
    kill_processes(left)
    return {
        "state": state,
        "events": memory.of(handle.run_id),
        "took": took,
        "tasks": tasks,
        "processes": [p.pid for p in left],
        "terminal_before": terminal_before,
        "grace": pipeline.cleanup_grace,
    }


@settings(FAULT_SETTINGS, max_examples=25)
@given(
    raw=cancellable_runs(),
    moment=st.sampled_from([0.0, 0.001, 0.01, 0.03, 0.1, 0.2, 0.35]),
    slots=st.sampled_from([1, 4]),
)
def cancel_at_any_moment(raw: dict[str, Any], moment: float, slots: int) -> None:
    try:
        result = asyncio.run(_cancel_at(raw, moment, slots))
    finally:
        RELEASE.set()
        for thread in abandoned_threads():
            thread.join(5)
        RELEASE.clear()
    state: RunState = result["state"]
    events = result["events"]
    assert not result["terminal_before"]
    assert state.state is RunStatus.CANCELLED, f"ended {state.state.value}: {state.reason}"
    overshoots.append(result["took"] - result["grace"])
    assert result["took"] <= result["grace"] + 1.0, f"took {result['took']:.2f}s to cancel"
    assert result["tasks"] == set(), f"tasks left: {result['tasks']}"
    assert result["processes"] == [], "node processes outlived the run"
    assert all(n.is_terminal for n in state.nodes.values()), state.nodes
    assert NodeStatus.SUCCEEDED not in {
        n.state for n in state.nodes.values() if not n.node_id.startswith("quick")
    }
    assert seqs_are_gap_free(events)
    assert fold(events) == state


overshoots: list[float] = []


def test_a_cancel_at_any_moment_ends_the_run_on_time_and_leaves_nothing_behind() -> None:
    overshoots.clear()
    cancel_at_any_moment()
    report(
        f"cancel: {len(overshoots)} runs cancelled; slowest ended {max(overshoots):.3f}s "
        "after its cleanup_grace (limit 1s)"
    )
