"""Control of runs across processes (`engine.control`), without the CLI or the console.

Two `Store`s on one database stand for two processes: the owner's (with its `RunManager`) and
the asker's. A run whose owner is gone is written as a dead process would have left it: its
events, and a lease held by a pid no process has.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import pytest

from engine.breaker import BreakerRecord, BreakerState, CircuitBreaker, cool_down_left
from engine.control import (
    Control,
    ControlRefusedError,
    Refusal,
    post_and_wait,
    reconcile,
    take_over,
)
from engine.events import Event, EventType, new_id
from engine.executor import Executor
from engine.lease import TakeOverRefusedError, owner_alive, shown_state
from engine.loader import load_dict
from engine.manager import RunManager
from engine.state import NodeStatus, RunStatus
from engine.store import Owner, Store

if TYPE_CHECKING:
    from pathlib import Path

    from engine.spec import Pipeline

DEAD_PID = 2**22 + 12345  # above Linux's default pid_max: no process has it

GATED = {
    "id": "gated",
    "nodes": [
        {"id": "prepare", "type": "shell", "command": ["true"]},
        {"id": "sign_off", "type": "approval", "needs": ["prepare"]},
    ],
}
SLOW = {"id": "slow", "nodes": [{"id": "nap", "type": "shell", "command": ["sleep", "30"]}]}


async def _orphan(store: Store, pipeline: Pipeline, *, waiting: bool = False) -> str:
    """A run whose process died mid-flight: its first node started (or, `waiting`, its
    approval asked), its lease held by a dead pid on this host."""
    run_id = new_id()
    executor = Executor(pipeline, run_id=run_id, sinks=[store])
    executor.create(actor="test")
    now = "2026-01-01T00:00:01.000000Z"
    first = pipeline.nodes[0].id
    follow: list[tuple[str, str | None, dict[str, Any]]] = [
        (EventType.RUN_STATE_CHANGED, None, {"from": "pending", "to": "running"}),
        (EventType.NODE_STARTED, first, {"timeout": 60.0}),
    ]
    if waiting:
        follow += [
            (EventType.NODE_SUCCEEDED, first, {"output": {}}),
            (EventType.APPROVAL_REQUESTED, "sign_off", {}),
        ]
    await store.append([
        Event(new_id(), seq, kind, run_id, now, node_id=node, data=data, attempt=1)
        for seq, (kind, node, data) in enumerate(follow, start=2)
    ])
    await store.claim_run(run_id, Owner(Owner.current().host, DEAD_PID, 1.0))
    return run_id


async def _wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


# -- reading --------------------------------------------------------------------------------------


async def test_a_run_whose_owner_died_reads_interrupted_with_the_reason_and_nothing_is_written(
    tmp_path: Path,
) -> None:
    async with Store(tmp_path / "i.db") as store:
        run_id = await _orphan(store, load_dict(SLOW))
        row = await store.run_row(run_id)
        assert row is not None
        last = row.last_seq
        assert not owner_alive(row)
        assert shown_state(row) == "interrupted"
        state = reconcile(await store.fold_run(run_id), row)
        assert state.state is RunStatus.INTERRUPTED
        assert state.reason is not None and "is gone" in state.reason
        assert (await store.run_row(run_id)).last_seq == last  # type: ignore[union-attr]


# -- cancel ---------------------------------------------------------------------------------------


async def test_a_cancel_of_a_run_nobody_owns_is_applied_in_the_store_in_one_go(
    tmp_path: Path,
) -> None:
    async with Store(tmp_path / "i.db") as store:
        run_id = await _orphan(store, load_dict(SLOW))
        outcome = await Control(store, actor="tester").cancel(run_id, "not needed")
        assert (outcome.how, outcome.result) == ("store", "cancelled")
        assert outcome.state is not None and outcome.state.state is RunStatus.CANCELLED
        events = await store.events(run_id)
        types = [e.event_type for e in events]
        assert types[-1] == "run.completed" and types.count("run.completed") == 1
        interrupted = [e for e in events if (e.data or {}).get("to") == "interrupted"]
        assert interrupted and interrupted[0].data["owner_pid"] == DEAD_PID  # type: ignore[index]
        assert events[-1].actor == "tester"
        # It has ended: a second cancel is refused, naming the state, and writes nothing.
        with pytest.raises(ControlRefusedError, match="already cancelled; nothing to cancel") as e:
            await Control(store).cancel(run_id)
        assert e.value.why is Refusal.ENDED
        assert len(await store.events(run_id)) == len(events)


async def test_a_cancel_of_a_run_of_a_live_process_is_acknowledged_by_its_owner(
    tmp_path: Path,
) -> None:
    db = tmp_path / "i.db"
    async with Store(db) as owner_store, RunManager(store=owner_store) as owner:
        handle = await owner.start(load_dict(SLOW))
        async with Store(db) as asker:
            await _wait_for(lambda: _node_is(asker, handle.run_id, "nap", NodeStatus.RUNNING))
            outcome = await Control(asker, actor="tester").cancel(handle.run_id, "enough")
            assert (outcome.how, outcome.result) == ("acknowledged", "cancel requested")
            assert outcome.owner_pid == Owner.current().pid
        final = await asyncio.wait_for(handle.wait(), 15)
    assert final.state is RunStatus.CANCELLED


async def test_a_cancel_of_a_run_of_the_asking_process_is_done_in_place(tmp_path: Path) -> None:
    async with Store(tmp_path / "i.db") as store, RunManager(store=store) as manager:
        handle = await manager.start(load_dict(SLOW))
        outcome = await Control(store, manager).cancel(handle.run_id)
        assert (outcome.how, outcome.result, outcome.command_id) == (
            "here", "cancel requested", None
        )
        assert (await asyncio.wait_for(handle.wait(), 15)).state is RunStatus.CANCELLED


async def test_a_command_not_acknowledged_in_time_is_left_posted(tmp_path: Path) -> None:
    async with Store(tmp_path / "i.db") as store:
        run_id = await _orphan(store, load_dict(SLOW))
        began = time.monotonic()
        command_id, result = await post_and_wait(store, run_id, "cancel", wait=0.2, poll=0.05)
        assert result is None and time.monotonic() - began >= 0.2
        command = await store.command(command_id)
        assert command is not None and command.acked_at is None
        _, at_once = await post_and_wait(store, run_id, "cancel", wait=0)
        assert at_once is None


# -- decisions ------------------------------------------------------------------------------------


async def test_a_decision_names_the_approval_nodes_when_the_node_does_not_exist(
    tmp_path: Path,
) -> None:
    async with Store(tmp_path / "i.db") as store:
        run_id = await _orphan(store, load_dict(GATED), waiting=True)
        named = r"no node 'nope' \(approval nodes: sign_off\)"
        with pytest.raises(ControlRefusedError, match=named):
            await Control(store).decide(run_id, "nope", approve=True)
        with pytest.raises(ControlRefusedError, match="not waiting for approval") as e:
            await Control(store).decide(run_id, "prepare", approve=True)
        assert e.value.why is Refusal.NOT_WAITING


async def test_a_decision_for_a_run_nobody_owns_is_refused_with_how_to_resume_it(
    tmp_path: Path,
) -> None:
    async with Store(tmp_path / "i.db") as store:
        run_id = await _orphan(store, load_dict(GATED), waiting=True)
        before = len(await store.events(run_id))
        with pytest.raises(ControlRefusedError, match="interlock resume") as e:
            await Control(store).decide(run_id, "sign_off", approve=True)
        assert e.value.why is Refusal.INTERRUPTED
        assert len(await store.events(run_id)) == before


async def test_an_approval_from_another_process_is_acknowledged_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    db = tmp_path / "i.db"
    async with Store(db) as owner_store, RunManager(store=owner_store) as owner:
        handle = await owner.start(load_dict(GATED))
        async with Store(db) as asker:
            await _wait_for(lambda: _node_is(asker, handle.run_id, "sign_off", NodeStatus.WAITING))
            outcome = await Control(asker, actor="operator:ann").decide(
                handle.run_id, "sign_off", approve=True, reason="looks right"
            )
            assert (outcome.how, outcome.result) == ("acknowledged", "approved")
        final = await asyncio.wait_for(handle.wait(), 15)
    assert final.state is RunStatus.SUCCEEDED
    assert final.nodes["sign_off"].state is NodeStatus.SUCCEEDED


async def test_an_unknown_run_is_refused(tmp_path: Path) -> None:
    async with Store(tmp_path / "i.db") as store:
        with pytest.raises(ControlRefusedError) as e:
            await Control(store).cancel("no-such-run")
    assert e.value.why is Refusal.UNKNOWN


# -- take-over ------------------------------------------------------------------------------------


async def test_a_take_over_of_a_run_with_a_live_owner_is_refused_naming_it(
    tmp_path: Path,
) -> None:
    async with Store(tmp_path / "i.db") as store, RunManager(store=store) as manager:
        handle = await manager.start(load_dict(SLOW))
        row = await store.run_row(handle.run_id)
        assert row is not None and owner_alive(row)
        named = f"owned by a live process \\(pid {row.owner_pid}"
        with pytest.raises(TakeOverRefusedError, match=named):
            await take_over(store, row, Owner.current())
        manager.cancel(handle.run_id)
        await asyncio.wait_for(handle.wait(), 15)


async def test_of_two_take_overs_of_one_orphan_the_loser_names_the_winner(tmp_path: Path) -> None:
    async with Store(tmp_path / "i.db") as store:
        run_id = await _orphan(store, load_dict(SLOW))
        row = await store.run_row(run_id)
        assert row is not None
        winner = Owner(Owner.current().host, Owner.current().pid, Owner.current().started_at)
        taken, why = await take_over(store, row, winner)
        assert taken.fence == row.fence + 1 and "is gone" in why
        with pytest.raises(TakeOverRefusedError, match="took it first; nothing was written here"):
            await take_over(store, row, Owner(winner.host, DEAD_PID + 1, 1.0))


async def _node_is(store: Store, run_id: str, node_id: str, status: NodeStatus) -> bool:
    node = (await store.fold_run(run_id)).nodes.get(node_id)
    return node is not None and node.state is status


# -- the one breaker model ------------------------------------------------------------------------


def test_a_stored_breaker_and_a_live_one_count_the_same_cool_down() -> None:
    now = [1000.0]
    breaker = CircuitBreaker("k", 1, 30.0, clock=lambda: now[0])
    breaker.record_failure()
    now[0] += 12.5
    record = BreakerRecord("k", "open", 1, 1000.0, 30.0, 1000.0)
    assert breaker.remaining() == record.remaining(now[0]) == 17.5
    assert breaker.snapshot().remaining(now[0]) == 17.5
    assert cool_down_left(1000.0, 30.0, now[0]) == 17.5
    assert record.item(now[0]) == {
        "key": "k", "state": "open", "failures": 1, "opened_at": 1000.0,
        "recovery_timeout": 30.0, "remaining": 17.5,
    }
    # Past its cool-down an open breaker admits a trial: it reads half-open, nothing left.
    assert record.shown_state(1031.0) == "half_open" and record.remaining(1031.0) == 0.0
    now[0] = 1031.0
    assert breaker.snapshot().state is BreakerState.HALF_OPEN
    closed = BreakerRecord("c", "closed", 2, None, 30.0)
    assert (closed.remaining(now[0]), closed.shown_state(now[0])) == (0.0, "closed")
