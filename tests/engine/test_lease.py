"""The lease contract of the store (DESIGN section 4, "Ownership"), stated once.

Each test opens one `Store` per simulated process on one database: what two processes see.
The statements are plain SQL compare-and-sets, so a PostgreSQL store is held to the same tests.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import time
from typing import TYPE_CHECKING, Any

import pytest

from engine.events import Event, EventType, new_id
from engine.lease import is_interrupted, judge
from engine.store import Owner, RunRow, Store, StoreError

if TYPE_CHECKING:
    from pathlib import Path


def _row(**fields: Any) -> RunRow:
    base: dict[str, Any] = {
        "run_id": "r", "pipeline_id": "p", "state": "running", "created_at": "", "started_at": None,
        "ended_at": None, "last_seq": 3, "replay_of": None, "owner_host": socket.gethostname(),
        "owner_pid": Owner.current().pid, "owner_started_at": Owner.current().started_at,
        "heartbeat_at": time.time(), "owner_id": Owner.current().id, "fence": 1,
        "lease_expires_at": time.time() + 20,
    }
    base.update(fields)
    return RunRow(**base)


def test_a_run_with_a_live_owner_and_a_fresh_lease_is_not_interrupted() -> None:
    assert not is_interrupted(_row(), time.time())


def test_an_expired_lease_interrupts_the_run_even_though_its_pid_runs() -> None:
    row = _row(lease_expires_at=time.time() - 1)  # this very process: alive, but it lost it
    verdict = judge(row, time.time())
    assert verdict.interrupted
    assert "expired" in verdict.reason


def test_a_dead_owner_on_this_host_interrupts_the_run_before_its_lease_ends() -> None:
    row = _row(owner_pid=2**22 + 12345, owner_started_at=1.0)
    assert judge(row, time.time()).interrupted


def test_an_owner_on_another_host_counts_as_alive_until_its_lease_ends() -> None:
    row = _row(owner_host="elsewhere", owner_pid=2**22 + 12345)
    assert not is_interrupted(row, time.time())
    assert is_interrupted(row, time.time() + 21)


def test_terminal_runs_are_never_interrupted_and_unowned_ones_are() -> None:
    assert not is_interrupted(_row(state="succeeded", owner_id=None), time.time())
    assert is_interrupted(_row(owner_id=None, owner_pid=None), time.time())


def _events(run_id: str, first: int, count: int) -> list[Event]:
    events = []
    for seq in range(first, first + count):
        if seq == 1:
            data = {"pipeline_id": "p", "definition": {"id": "p", "nodes": []}, "params": {}}
            events.append(Event(new_id(), 1, EventType.RUN_CREATED, run_id, "2026-01-01T00:00:00Z",
                                data=data))
        else:
            events.append(Event(new_id(), seq, EventType.NODE_LOG, run_id, "2026-01-01T00:00:01Z",
                                node_id="a", data={"line": str(seq)}))
    return events


async def _created(store: Store, owner: Owner) -> str:
    run_id = new_id()
    store.publish(_events(run_id, 1, 1)[0])
    await store.claim_run(run_id, owner)
    return run_id


def _process(n: int) -> Owner:
    return Owner(socket.gethostname(), 2**22 + 100 + n, 1.0)  # pids no live process has


async def test_of_many_racing_take_overs_exactly_one_wins(tmp_path: Path) -> None:
    db = tmp_path / "i.db"
    async with Store(db) as first:
        run_id = await _created(first, _process(0))
    stores = [Store(db) for _ in range(6)]
    for store in stores:
        await store.open()
    try:
        row = await stores[0].run_row(run_id)
        assert row is not None
        results = await asyncio.gather(
            *(s.take_over(row, _process(i + 1), dead_owner=row.owner) for i, s in enumerate(stores))
        )
    finally:
        for store in stores:
            await store.close()
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert winners[0].fence == row.fence + 1


async def test_a_stale_writers_batch_is_refused_whole_and_it_is_told(tmp_path: Path) -> None:
    db = tmp_path / "i.db"
    told: list[tuple[str, str]] = []
    async with Store(db) as old, Store(db) as new:
        old.write_failure_listeners.append(lambda run, error: told.append((run, str(error))))
        run_id = await _created(old, _process(0))
        for event in _events(run_id, 2, 3):
            old.publish(event)
        await old.flush()
        row = await new.run_row(run_id)
        assert row is not None
        taken = await new.take_over(row, _process(1), dead_owner=row.owner)
        assert taken is not None
        for event in _events(run_id, 5, 4):  # the old owner goes on, unaware
            old.publish(event)
        with pytest.raises(StoreError, match="taken over by another process"):
            await old.flush()
        assert [e.seq for e in await new.events(run_id)] == [1, 2, 3, 4]
        assert told and told[0][0] == run_id and f"pid {2**22 + 101}" in told[0][1]
        old.publish(_events(run_id, 9, 1)[0])  # dropped at once: the run is not its any more
        await old.flush()
        await new.append(_events(run_id, 5, 2))  # the new owner writes on, gap-free
        assert [e.seq for e in await new.events(run_id)] == [1, 2, 3, 4, 5, 6]
        assert await old.heartbeat([run_id], _process(0)) == [run_id]


async def test_a_lease_unconfirmed_for_half_its_length_holds_new_work_until_renewed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An owner that slept past its lease (SIGSTOP, a frozen VM) starts nothing before it
    knows whether it was taken over: `lagging` says so, and `caught_up` renews or fences off."""
    monkeypatch.setenv("INTERLOCK_LEASE_SECONDS", "1")
    db = tmp_path / "i.db"
    async with Store(db) as old, Store(db) as new:
        kept = await _created(old, _process(0))
        lost = await _created(old, _process(0))
        assert not old.lagging()
        time.sleep(0.6)  # the loop sleeps too: no heartbeat ran
        assert old.lagging()
        await old.caught_up()  # renews both leases
        assert not old.lagging()
        assert old.write_failure(kept) is None and old.write_failure(lost) is None
        time.sleep(1.1)  # both leases expire; another process takes one run over
        row = await new.run_row(lost)
        assert row is not None
        assert await new.take_over(row, _process(1)) is not None
        assert old.lagging()
        await old.caught_up()
        assert not old.lagging()
        assert old.write_failure(kept) is None  # nobody took it: renewed, kept
        failure = old.write_failure(lost)
        assert failure is not None and "taken over by another process" in str(failure)


async def test_a_take_over_is_refused_while_the_owner_holds_a_fresh_lease(tmp_path: Path) -> None:
    db = tmp_path / "i.db"
    async with Store(db) as owner_store, Store(db) as other:
        run_id = await _created(owner_store, Owner.current())
        row = await other.run_row(run_id)
        assert row is not None
        assert await other.take_over(row, _process(1)) is None
        assert (await other.run_row(run_id)) == row


async def test_breaker_failures_are_counted_across_stores(tmp_path: Path) -> None:
    db = tmp_path / "i.db"
    async with Store(db) as a, Store(db) as b:
        a.record_breaker_outcome("k", failed=True, failure_threshold=3, recovery_timeout=60)
        await a.flush()
        b.record_breaker_outcome("k", failed=True, failure_threshold=3, recovery_timeout=60)
        await b.flush()
        assert (await a.load_breakers())["k"].failures == 2
        assert (await a.load_breakers())["k"].state == "closed"
        a.record_breaker_outcome("k", failed=True, failure_threshold=3, recovery_timeout=60)
        await a.flush()
        opened = (await b.load_breakers())["k"]
        assert (opened.state, opened.failures) == ("open", 3)
        assert opened.opened_at is not None
        assert await b.reset_breaker("k")
        reset = (await a.load_breakers())["k"]
        assert (reset.state, reset.failures, reset.opened_at) == ("closed", 0, None)


async def test_the_store_lags_while_another_process_holds_the_write_lock(tmp_path: Path) -> None:
    db = tmp_path / "i.db"
    async with Store(db) as store:
        run_id = await _created(store, Owner.current())
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            store.publish(_events(run_id, 2, 1)[0])
            await asyncio.sleep(0.3)
            assert store.lagging(0.2)
            assert not store.lagging(5.0)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await asyncio.wait_for(store.caught_up(), 15)
        assert not store.lagging(0.0)
        assert await store.last_seq(run_id) == 2


def test_a_bad_lease_length_in_the_environment_is_refused_with_a_sentence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from engine.lease import LeaseConfigError, heartbeat_seconds, lease_seconds

    monkeypatch.setenv("INTERLOCK_LEASE_SECONDS", "3")
    assert (lease_seconds(), heartbeat_seconds()) == (3.0, 0.6)
    for bad in ("abc", "0", "-5", "nan", "inf"):
        monkeypatch.setenv("INTERLOCK_LEASE_SECONDS", bad)
        with pytest.raises(LeaseConfigError, match="INTERLOCK_LEASE_SECONDS must be a number"):
            lease_seconds()


async def test_a_run_stopped_by_a_store_failure_stops_and_its_own_process_can_resume_it(
    tmp_path: Path,
) -> None:
    from engine.api import PipelineBuilder
    from engine.manager import RunManager
    from engine.state import NodeStatus

    release = asyncio.Event()
    entered: list[int] = []

    async def work(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
        entered.append(ctx.attempt)
        await release.wait()
        return {}

    builder = PipelineBuilder("stopped")
    builder.python("first", work)
    builder.python("second", work, needs=["first"])
    pipeline = builder.build()
    async with Store(tmp_path / "i.db") as store, RunManager(store=store) as manager:
        handle = await manager.start(pipeline)
        while not entered:
            await asyncio.sleep(0.01)
        store.fence_off(handle.run_id, StoreError("the disk is full (simulated)"))
        state = await asyncio.wait_for(handle.wait(), 10)
        assert handle.write_error is not None and "disk is full" in str(handle.write_error)
        assert state.nodes["first"].state is NodeStatus.CANCELLED
        stored = await store.events(handle.run_id)
        assert "run.completed" not in [e.event_type for e in stored]
        assert [e.seq for e in stored] == list(range(1, len(stored) + 1))

        release.set()
        resumed = await manager.resume(handle.run_id)  # no need to wait out its own lease
        final = await asyncio.wait_for(resumed.wait(), 10)
        assert final.state.value == "succeeded"
        types = [e.event_type for e in await store.events(handle.run_id)]
        assert types.count("run.completed") == 1
        assert "run.resumed" in types


async def test_a_half_open_breaker_admits_one_trial_across_processes(tmp_path: Path) -> None:
    a, b = _process(1), _process(2)
    async with Store(tmp_path / "i.db") as store:
        store.record_breaker_outcome(
            "k", failed=True, failure_threshold=1, recovery_timeout=10, now=100.0
        )
        await store.flush()
        assert await store.claim_breaker_trial("k", a, 105.0) is not None  # cooling down
        assert await store.claim_breaker_trial("k", a, 111.0) is None  # a's trial
        taken = await store.claim_breaker_trial("k", b, 112.0)
        assert taken is not None and taken.state == "half_open"  # not b's: a has it
        assert await store.claim_breaker_trial("k", a, 113.0) is None  # a again (it retried)
        store.record_breaker_outcome(
            "k", failed=True, failure_threshold=1, recovery_timeout=10, now=114.0
        )
        await store.flush()
        reopened = (await store.load_breakers())["k"]
        assert (reopened.state, reopened.opened_at, reopened.failures) == ("open", 114.0, 2)
        assert await store.claim_breaker_trial("k", b, 124.5) is None  # the next trial is b's
        # b's process dies with its trial unreported: a cool-down later it is a's to claim.
        assert await store.claim_breaker_trial("k", a, 130.0) is not None
        assert await store.claim_breaker_trial("k", a, 135.0) is None
