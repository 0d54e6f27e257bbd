"""The contract of reading: events by seq, the runs index, the fold; reading never writes."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from contract.helpers import RunWriter, process
from engine.errors import UnknownRunError
from engine.lease import LEASE_ENV
from engine.run_filter import RunFilter
from engine.state import fold
from engine.store import RunRow, StoreError

if TYPE_CHECKING:
    from contract.conftest import Backend
    from engine.store.protocol import StoreBackend


async def test_events_are_read_by_seq_limit_type_and_tail(store: StoreBackend) -> None:
    run = RunWriter()
    events = run.whole_run(logs=20)
    await store.append(events)

    assert await store.events(run.run_id) == events
    assert await store.events(run.run_id, after_seq=3, limit=4) == events[3:7]
    assert await store.events(run.run_id, type_prefix="run.") == [
        e for e in events if e.event_type.startswith("run.")
    ]
    assert await store.events(run.run_id, limit=0) == []
    assert await store.tail_events(run.run_id, 3) == events[-3:]
    assert await store.tail_events(run.run_id, 0) == []
    assert await store.fold_run(run.run_id) == fold(events)
    assert await store.last_seq("no-such-run") == 0
    assert await store.events("no-such-run") == []
    with pytest.raises(UnknownRunError):
        await store.fold_run("no-such-run")


async def test_a_long_run_folds_whole(store: StoreBackend) -> None:
    run = RunWriter()
    events = [run.created(), run.state("running"), *run.logs(5000), run.completed()]
    for event in events:
        store.publish(event)
    await store.flush()
    assert await store.fold_run(run.run_id) == fold(events)


async def test_the_runs_index_follows_creation_state_changes_and_completion(
    store: StoreBackend,
) -> None:
    run = RunWriter()
    created = run.created("nightly", replay_of="older-run")
    await store.append([created])
    row = await store.run_row(run.run_id)
    assert row is not None
    assert (row.pipeline_id, row.state, row.last_seq, row.replay_of) == (
        "nightly", "pending", 1, "older-run"
    )
    assert (row.created_at, row.started_at, row.ended_at) == (created.timestamp_utc, None, None)

    running = run.state("running")
    await store.append([running, *run.logs(3)])
    completed = run.completed("failed")
    await store.append([completed])
    row = await store.run_row(run.run_id)
    assert row is not None
    assert (row.state, row.started_at, row.ended_at, row.last_seq) == (
        "failed", running.timestamp_utc, completed.timestamp_utc, 6
    )
    assert await store.run_row("no-such-run") is None


async def _history(store: StoreBackend) -> list[RunWriter]:
    """Seven runs, oldest first: pipelines etl and web, states pending, running, failed."""
    runs = [RunWriter(f"run{i:02d}-{'etl' if i % 2 else 'web'}", clock=i * 100) for i in range(7)]
    for i, run in enumerate(runs):
        await store.append([run.created("etl" if i % 2 else "web")])
    await store.append([runs[1].state("running"), runs[4].state("running")])
    await store.append([runs[4].completed("failed")])
    await store.append([RunWriter(clock=900).created("etl", retry_of=runs[4].run_id)])
    return runs


async def test_runs_list_newest_first_filtered_and_paged_over_the_whole_history(
    store: StoreBackend,
) -> None:
    runs = await _history(store)
    everything = [row.run_id for row in await store.list_runs()]
    assert everything[1:] == [run.run_id for run in reversed(runs)]
    assert [row.run_id for row in await store.list_runs(limit=2)] == everything[:2]
    assert [row.run_id for row in await store.list_runs(states=["running", "failed"])] == [
        runs[4].run_id, runs[1].run_id
    ]
    assert await store.list_runs(states=[]) == []

    pages: list[RunRow] = []
    after = None
    while True:
        page = await store.list_runs_page(limit=3, after=after)
        pages += page.rows
        if page.after is None:
            break
        after = page.after
    assert [row.run_id for row in pages] == everything
    assert await store.count_runs() == len(everything)

    etl = RunFilter(pipeline="etl")
    assert await store.count_runs(etl) == 4
    page = await store.list_runs_page(limit=9, query=etl)
    assert [row.pipeline_id for row in page.rows] == ["etl"] * 4
    assert await store.count_runs(RunFilter(states=("failed",))) == 1
    assert await store.count_runs(RunFilter(words=("run0",))) == 7
    assert await store.count_runs(RunFilter(words=("web", "run02"))) == 1
    assert await store.count_runs(RunFilter(words=("100%",))) == 0  # no LIKE wildcards
    first = await store.list_runs_page(limit=2)
    assert first.after is not None
    assert (await store.list_runs_page(limit=9, down_to=first.after)).rows == first.rows

    assert await store.linked_runs(runs[4].run_id) == [(everything[0], "retry")]
    assert await store.linked_runs(runs[0].run_id) == []


async def test_find_run_takes_an_id_or_a_unique_prefix(store: StoreBackend) -> None:
    for run_id in ("abcd1111", "abcd2222", "ffff0000"):
        await store.append([RunWriter(run_id).created()])
    found = await store.find_run("abcd1111")
    assert found is not None and found.run_id == "abcd1111"
    prefixed = await store.find_run("ffff")
    assert prefixed is not None and prefixed.run_id == "ffff0000"
    assert await store.find_run("fff") is None  # too short to be a prefix
    assert await store.find_run("0000") is None
    with pytest.raises(StoreError, match="ambiguous"):
        await store.find_run("abcd")


async def test_reading_never_writes(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LEASE_ENV, "0.5")
    async with backend.make() as writer:
        runs = await _history(writer)
        await writer.claim_run(runs[1].run_id, process(1))  # a dead owner: reads interrupted
        await writer.post_command(runs[1].run_id, "cancel")
        writer.record_breaker_outcome("k", failed=True, failure_threshold=1, recovery_timeout=1)
        await writer.flush()
    await asyncio.sleep(0.6)  # the lease has expired too
    footprint = backend.footprint()

    for readonly in (True, False):
        async with backend.make(readonly=readonly) as store:
            for run in runs:
                await store.events(run.run_id)
                await store.tail_events(run.run_id, 2)
                await store.fold_run(run.run_id)
                await store.last_seq(run.run_id)
                await store.linked_runs(run.run_id)
            row = await store.run_row(runs[1].run_id)
            assert row is not None and row.state == "running"
            assert row.shown_state() == "interrupted"
            await store.find_run(runs[1].run_id[:6])
            await store.list_runs()
            await store.list_runs_page(limit=2, query=RunFilter(states=("interrupted",)))
            assert await store.count_runs(RunFilter(states=("interrupted",))) == 1
            assert len(await store.pending_commands([runs[1].run_id])) == 1
            assert set(await store.load_breakers()) == {"k"}
            assert await store.last_fires("etl") == {}
            await store.flush()
            await store.caught_up()
        assert backend.footprint() == footprint, f"a read wrote (readonly={readonly})"
