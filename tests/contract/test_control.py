"""The contract of control: commands, breakers counted across processes, schedule fires."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from contract.helpers import RunWriter, process
from engine.breaker import BreakerRecord
from engine.errors import UnknownRunError

if TYPE_CHECKING:
    from contract.conftest import Backend
    from engine.store.protocol import StoreBackend


async def test_commands_are_posted_listed_while_pending_and_acknowledged_once(
    store: StoreBackend,
) -> None:
    run, other = RunWriter(), RunWriter()
    await store.append([run.created(), other.created()])

    cancel = await store.post_command(run.run_id, "cancel", reason="stop it")
    approve = await store.post_command(run.run_id, "approve", node_id="gate", actor="op:ann")
    await store.post_command(other.run_id, "reject", node_id="gate")
    pending = await store.pending_commands([run.run_id])
    assert [(c.id, c.kind, c.node_id, c.reason, c.actor) for c in pending] == [
        (cancel, "cancel", None, "stop it", "cli"),
        (approve, "approve", "gate", None, "op:ann"),
    ]
    assert len(await store.pending_commands([run.run_id, other.run_id])) == 3
    assert await store.pending_commands([]) == []

    await store.ack_command(cancel, "cancelled")
    await store.ack_command(cancel, "again")  # the first acknowledgement wins
    assert [c.id for c in await store.pending_commands([run.run_id])] == [approve]
    acked = await store.command(cancel)
    assert acked is not None
    assert (acked.result, acked.acked_at is not None) == ("cancelled", True)
    assert await store.command(10_000) is None


async def test_a_command_needs_a_stored_run_and_a_known_kind(store: StoreBackend) -> None:
    with pytest.raises(UnknownRunError):
        await store.post_command("no-such-run", "cancel")
    run = RunWriter()
    await store.append([run.created()])
    with pytest.raises(ValueError, match="unknown command kind"):
        await store.post_command(run.run_id, "explode")


async def test_breaker_outcomes_are_counted_across_stores(backend: Backend) -> None:
    async with backend.make() as a, backend.make() as b:
        a.record_breaker_outcome("k", failed=True, failure_threshold=3, recovery_timeout=60)
        await a.flush()
        b.record_breaker_outcome("k", failed=True, failure_threshold=3, recovery_timeout=60)
        await b.flush()
        counted = (await a.load_breakers())["k"]
        assert (counted.state, counted.failures) == ("closed", 2)
        a.record_breaker_outcome("k", failed=True, failure_threshold=3, recovery_timeout=60)
        await a.flush()
        opened = (await b.load_breakers())["k"]
        assert (opened.state, opened.failures) == ("open", 3)
        assert opened.opened_at is not None
        b.record_breaker_outcome("k", failed=False, failure_threshold=3, recovery_timeout=60)
        await b.flush()
        closed = (await a.load_breakers())["k"]
        assert (closed.state, closed.failures, closed.opened_at) == ("closed", 0, None)


async def test_breakers_are_saved_reset_and_deleted(store: StoreBackend) -> None:
    opened = BreakerRecord("etl/load", "open", 5, 100.0, 30.0, 100.0)
    await store.save_breaker(opened)
    await store.save_breaker(BreakerRecord("warehouse", "closed", 0, None, 10.0, 101.0))
    assert (await store.load_breakers())["etl/load"] == opened
    assert await store.reset_breaker("etl/load")
    reset = (await store.load_breakers())["etl/load"]
    assert (reset.state, reset.failures, reset.opened_at) == ("closed", 0, None)
    assert not await store.reset_breaker("nothing")
    assert await store.delete_breaker("warehouse") is True
    assert await store.delete_breaker("warehouse") is False
    assert list(await store.load_breakers()) == ["etl/load"]


async def test_a_half_open_breaker_gives_its_trial_to_exactly_one_claimer(
    backend: Backend,
) -> None:
    async with backend.make() as store:
        store.record_breaker_outcome(
            "k", failed=True, failure_threshold=1, recovery_timeout=10, now=100.0
        )
        await store.flush()
        assert await store.claim_breaker_trial("k", process(0), 105.0) is not None  # cooling
    stores = [await backend.make().open() for _ in range(5)]
    try:
        results = await asyncio.gather(
            *(s.claim_breaker_trial("k", process(i), 111.0) for i, s in enumerate(stores))
        )
    finally:
        for store in stores:
            await store.close()
    assert sum(result is None for result in results) == 1
    assert all(r.state == "half_open" for r in results if r is not None)


async def test_a_fire_time_is_claimed_once_whoever_races_for_it(backend: Backend) -> None:
    stores = [await backend.make().open() for _ in range(5)]
    try:
        won = await asyncio.gather(
            *(
                s.claim_fire("etl", "nightly", "2026-01-01T02:00:00Z", f"run-{i}", process(i))
                for i, s in enumerate(stores)
            )
        )
        assert sorted(won) == [False] * 4 + [True]
        winner = f"run-{won.index(True)}"
        assert await stores[0].claim_fire(
            "etl", "nightly", "2026-01-02T02:00:00Z", "run-next", process(0)
        )
        assert await stores[1].last_fires("etl") == {
            "nightly": ("2026-01-02T02:00:00Z", "run-next")
        }
        assert await stores[1].last_fires("other") == {}
        assert winner.startswith("run-")
    finally:
        for store in stores:
            await store.close()
