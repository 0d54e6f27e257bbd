"""The contract of writing: group commit, where "acknowledged" means committed."""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

import pytest

from contract.helpers import RunWriter
from engine.events import Event, EventType
from engine.store import StoreError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from contract.conftest import Backend
    from engine.store.protocol import StoreBackend


async def test_published_events_commit_in_publish_order_with_seqs_without_gaps(
    store: StoreBackend,
) -> None:
    runs = [RunWriter() for _ in range(3)]
    published: dict[str, list[Event]] = {run.run_id: [] for run in runs}
    commits: list[Sequence[Event]] = []
    store.commit_listeners.append(commits.append)
    order = random.Random(17)
    for run in runs:
        published[run.run_id].append(run.created())
        store.publish(published[run.run_id][-1])
    for _ in range(600):
        run = order.choice(runs)
        event = run.event(EventType.NODE_LOG, node_id="a", data={"line": str(run.seq)})
        published[run.run_id].append(event)
        store.publish(event)
        if order.random() < 0.02:
            await asyncio.sleep(0)
    await store.flush()

    for run in runs:
        stored = await store.events(run.run_id)
        assert stored == published[run.run_id]
        assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
        assert await store.last_seq(run.run_id) == len(stored)
    # The commits, concatenated, are the events in the order they were published.
    everything = [e for commit in commits for e in commit]
    assert len(everything) == sum(len(events) for events in published.values())
    for run in runs:
        assert [e for e in everything if e.run_id == run.run_id] == published[run.run_id]


async def test_flushed_events_are_durable_for_other_stores_and_across_a_reopen(
    backend: Backend,
) -> None:
    run = RunWriter()
    events = run.whole_run(logs=30)
    async with backend.make() as writer:
        for event in events:
            writer.publish(event)
        await writer.flush()
        async with backend.make() as other:  # while the writer is still open
            assert await other.events(run.run_id) == events
    async with backend.make() as reopened:
        assert await reopened.events(run.run_id) == events
        assert await reopened.fold_run(run.run_id) == await reopened.fold_run(run.run_id)


async def test_close_writes_everything_published_before_it(backend: Backend) -> None:
    run = RunWriter()
    events = run.whole_run(logs=10)
    store = await backend.make(batch_window=5.0).open()
    for event in events:
        store.publish(event)
    await store.close()
    async with backend.make() as reopened:
        assert await reopened.events(run.run_id) == events


async def test_an_append_is_all_or_nothing_and_spares_the_rest_of_its_batch(
    store: StoreBackend,
) -> None:
    run, other = RunWriter(), RunWriter()
    await store.append([run.created()])
    duplicate = Event("dup-id", 1, EventType.NODE_LOG, run.run_id, "2026-01-01T00:00:00Z")
    spared = [other.created(), *other.logs(3)]
    for event in spared:
        store.publish(event)
    with pytest.raises(StoreError):
        await store.append([run.state("running"), duplicate])  # seq 1 again: refused whole
    await store.flush()

    assert [e.seq for e in await store.events(run.run_id)] == [1]
    assert await store.events(other.run_id) == spared


async def test_a_failed_published_event_is_reported_once_by_the_next_flush(
    store: StoreBackend,
) -> None:
    run = RunWriter()
    first = run.created()
    await store.append([first])
    store.publish(Event("again", 1, EventType.NODE_LOG, run.run_id, "2026-01-01T00:00:00Z"))
    await store.caught_up()  # waits, reports nothing
    with pytest.raises(StoreError):
        await store.flush()
    await store.flush()  # reported once
    assert await store.events(run.run_id) == [first]


async def test_lagging_is_false_once_everything_is_committed(store: StoreBackend) -> None:
    run = RunWriter()
    for event in run.whole_run():
        store.publish(event)
    assert not store.lagging(5.0)
    await store.caught_up()
    assert not store.lagging(0.0)


async def test_cancelling_a_waiting_append_does_not_lose_its_events(store: StoreBackend) -> None:
    run = RunWriter()
    events = run.whole_run()
    task = asyncio.create_task(store.append(events))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await store.flush()
    assert await store.events(run.run_id) == events


async def test_a_closed_or_read_only_store_refuses_writes(backend: Backend) -> None:
    run = RunWriter()
    created = run.created()
    store = backend.make()
    with pytest.raises(StoreError, match="not open"):
        store.publish(created)
    async with backend.make() as writer:
        await writer.append([created])
        async with backend.make(readonly=True) as reader:
            assert reader.readonly
            with pytest.raises(StoreError, match="read-only"):
                reader.publish(run.state("running"))
            assert [e.seq for e in await reader.events(run.run_id)] == [1]
    with pytest.raises(StoreError, match="closed"):
        writer.publish(run.state("running"))
    with pytest.raises(StoreError):
        await writer.append([run.state("running")])
