"""The contract of leases: claims, fencing, one winner of a take-over, the end is the end."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import pytest

from contract.helpers import RunWriter, process
from engine.breaker import BreakerRecord
from engine.errors import UnknownRunError
from engine.events import EventType
from engine.lease import LEASE_ENV, LeaseLostError, is_interrupted
from engine.run_filter import RunFilter
from engine.store import Owner, StoreError

if TYPE_CHECKING:
    from contract.conftest import Backend
    from engine.store.protocol import StoreBackend


async def _claimed(store: StoreBackend, owner: Owner) -> RunWriter:
    run = RunWriter()
    store.publish(run.created())
    await store.claim_run(run.run_id, owner)
    return run


async def test_a_claim_takes_the_lease_and_heartbeats_renew_it_until_release(
    store: StoreBackend,
) -> None:
    owner = Owner.current()
    before = time.time()
    run = await _claimed(store, owner)
    row = await store.run_row(run.run_id)
    assert row is not None
    assert (row.owner, row.owner_id, row.fence) == (owner, owner.id, 1)
    assert row.heartbeat_at is not None and row.heartbeat_at >= before
    assert row.lease_expires_at is not None and row.lease_expires_at > time.time()
    first_expiry = row.lease_expires_at

    await asyncio.sleep(0.01)
    assert await store.heartbeat([run.run_id], owner) == []
    assert await store.heartbeat([run.run_id], process(9)) == []  # not its lease: no effect
    row = await store.run_row(run.run_id)
    assert row is not None
    assert row.owner == owner
    assert row.lease_expires_at is not None and row.lease_expires_at > first_expiry

    await store.release_run(run.run_id)
    row = await store.run_row(run.run_id)
    assert row is not None
    assert (row.owner, row.heartbeat_at, row.lease_expires_at) == (None, None, None)


async def test_a_claim_returns_the_stored_breakers(store: StoreBackend) -> None:
    record = BreakerRecord("etl/load", "open", 3, 100.0, 30.0, 100.0)
    await store.save_breaker(record)
    store.record_breaker_outcome("other", failed=True, failure_threshold=5, recovery_timeout=9)
    await store.flush()
    run = RunWriter()
    store.publish(run.created())
    breakers = await store.claim_run(run.run_id, Owner.current())
    assert breakers["etl/load"] == record
    assert (breakers["other"].state, breakers["other"].failures) == ("closed", 1)


async def test_claiming_a_run_never_created_raises(store: StoreBackend) -> None:
    with pytest.raises(UnknownRunError):
        await store.claim_run("no-such-run", Owner.current())


async def test_an_expired_lease_reads_interrupted_and_can_be_taken_over(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LEASE_ENV, "0.5")
    async with backend.make() as owner_store, backend.make() as other:
        run = await _claimed(owner_store, Owner.current())  # alive, but it stops renewing
        owner_store.publish(run.state("running"))
        await owner_store.flush()
        row = await other.run_row(run.run_id)
        assert row is not None and not is_interrupted(row, time.time())
        assert await other.take_over(row, process(1)) is None  # a fresh lease: refused
        interrupted = RunFilter(states=("interrupted",))
        assert await other.count_runs(interrupted) == 0

        await asyncio.sleep(0.6)
        row = await other.run_row(run.run_id)
        assert row is not None
        assert row.state == "running" and row.shown_state() == "interrupted"
        assert await other.count_runs(interrupted) == 1
        taken = await other.take_over(row, process(1))
        assert taken is not None and taken.fence == row.fence + 1


async def test_of_many_racing_take_overs_exactly_one_wins(backend: Backend) -> None:
    async with backend.make() as first:
        run = await _claimed(first, process(0))
    stores = [await backend.make().open() for _ in range(6)]
    try:
        row = await stores[0].run_row(run.run_id)
        assert row is not None
        results = await asyncio.gather(
            *(s.take_over(row, process(i + 1), dead_owner=row.owner) for i, s in enumerate(stores))
        )
        winners = [result for result in results if result is not None]
        assert len(winners) == 1
        assert winners[0].fence == row.fence + 1
        stored = await stores[0].run_row(run.run_id)
        assert stored is not None and stored.owner_id == winners[0].owner_id
    finally:
        for store in stores:
            await store.close()


async def test_a_stale_fences_batch_is_refused_whole_and_the_run_fenced_off(
    backend: Backend,
) -> None:
    told: list[str] = []
    async with backend.make() as old, backend.make() as new:
        old.write_failure_listeners.append(lambda run_id, error: told.append(run_id))
        run = await _claimed(old, process(0))
        await old.append(run.logs(3))
        row = await new.run_row(run.run_id)
        assert row is not None
        assert await new.take_over(row, process(1), dead_owner=row.owner) is not None

        stale = run.logs(4)  # the old owner goes on, unaware
        for event in stale:
            old.publish(event)
        with pytest.raises(StoreError, match="taken over") as caught:
            await old.flush()
        assert isinstance(caught.value.__cause__, LeaseLostError)
        assert [e.seq for e in await new.events(run.run_id)] == [1, 2, 3, 4]
        assert told == [run.run_id]
        assert old.write_failure(run.run_id) is not None
        old.publish(run.logs(1)[0])  # dropped at once: the run is not its any more
        await old.flush()
        assert await old.heartbeat([run.run_id], process(0)) == [run.run_id]

        run.seq = 4
        await new.append(run.logs(2))  # the new owner writes on, without a gap
        assert [e.seq for e in await new.events(run.run_id)] == [1, 2, 3, 4, 5, 6]


async def test_fence_off_stops_writing_a_run_here(store: StoreBackend) -> None:
    run = await _claimed(store, Owner.current())
    await store.flush()
    assert store.write_failure(run.run_id) is None
    store.fence_off(run.run_id, StoreError("lease lost"))
    store.publish(run.state("running"))
    await store.flush()
    assert str(store.write_failure(run.run_id)) == "lease lost"
    assert await store.last_seq(run.run_id) == 1


async def test_nothing_is_stored_after_run_completed(store: StoreBackend) -> None:
    run = RunWriter()
    await store.append([run.created(), run.state("running"), run.completed("failed")])
    with pytest.raises(StoreError, match="already completed"):
        await store.append([run.state("interrupted")])
    other = RunWriter()
    with pytest.raises(StoreError, match="already completed"):
        await store.append([other.created(), other.completed(), other.state("running")])

    assert [e.event_type for e in await store.events(run.run_id)][-1] == EventType.RUN_COMPLETED
    assert await store.last_seq(run.run_id) == 3
    assert await store.events(other.run_id) == []
    row = await store.run_row(run.run_id)
    assert row is not None and row.owner is None  # completing released the run


async def test_a_completed_run_is_written_again_only_after_a_reopening_take_over(
    store: StoreBackend,
) -> None:
    run = RunWriter()
    await store.append([run.created(), run.state("running"), run.completed("failed")])
    row = await store.run_row(run.run_id)
    assert row is not None
    assert await store.take_over(row, Owner.current()) is None  # completed: not without reopen
    taken = await store.take_over(row, Owner.current(), reopen=True)
    assert taken is not None and taken.fence == row.fence + 1
    await store.append([run.event(EventType.RUN_RESUMED, attempt=2), run.state("running")])
    row = await store.run_row(run.run_id)
    assert row is not None
    assert (row.state, row.ended_at, row.last_seq) == ("running", None, 5)
