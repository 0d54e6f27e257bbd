"""The SQLite store: what it keeps, what it refuses, and that group commit keeps its promises."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import os
import re
import socket
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import pytest
from contract.helpers import T0, RunWriter, stamp

import engine.store as store_module
import engine.store.sqlite.reads as store_reads
import engine.store.sqlite.schema as store_schema
import engine.store.sqlite.writer as store_writer
from engine.errors import InterlockError, UnknownRunError
from engine.events import Event, EventType, new_id
from engine.manager import RunManager
from engine.state import RunStatus, fold
from engine.store import (
    SCHEMA_VERSION,
    BreakerRecord,
    Owner,
    Store,
    StoreError,
)
from engine.store.sqlite.connection import SQLiteThread

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import MakePipeline

ROOT = Path(__file__).resolve().parents[2]
@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "interlock.db"


@pytest.fixture
async def store(db: Path) -> Any:
    async with Store(db) as opened:
        yield opened


def run_python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=timeout,
        check=False,
    )


# -- events ----------------------------------------------------------------------------------------


async def test_published_events_read_back_equal_and_in_seq_order(store: Store) -> None:
    run = RunWriter()
    events = run.whole_run(logs=50)
    for event in events:
        store.publish(event)
    await store.flush()

    assert await store.events(run.run_id) == events
    assert await store.last_seq(run.run_id) == len(events)


async def test_events_of_other_runs_do_not_mix(store: Store) -> None:
    first, second = RunWriter(), RunWriter()
    for a, b in zip(first.whole_run(), second.whole_run(), strict=True):
        store.publish(a)
        store.publish(b)
    await store.flush()

    assert {e.run_id for e in await store.events(first.run_id)} == {first.run_id}
    assert [e.seq for e in await store.events(second.run_id)] == list(range(1, 11))


async def test_fold_run_equals_the_fold_of_the_published_events(store: Store) -> None:
    run = RunWriter()
    events = run.whole_run(logs=20)
    await store.append(events)

    assert await store.fold_run(run.run_id) == fold(events)


@pytest.mark.parametrize("logs", [0, 1, 2, 9])
async def test_fold_run_reads_a_run_longer_than_a_chunk_whole(
    store: Store, monkeypatch: pytest.MonkeyPatch, logs: int
) -> None:
    monkeypatch.setattr(store_reads, "FOLD_CHUNK", 4)
    run = RunWriter()
    events = run.whole_run(logs=logs)  # 4 events besides the logs: chunks end exactly, or not
    await store.append(events)

    assert await store.fold_run(run.run_id) == fold(events)


async def test_an_event_with_every_field_reads_back_equal(store: Store) -> None:
    run = RunWriter()
    created = run.created()
    # Every field set, whatever fields Event has: reading must fill in each slot.
    text: dict[str, Any] = {f.name: f"{f.name}-value" for f in dataclasses.fields(Event)}
    fixed = {"seq": 2, "run_id": run.run_id, "attempt": 3, "timestamp_utc": stamp(2)}
    data = {"nested": {"list": [1, 2.5, None, True]}}
    full = Event(**{**text, **fixed, "event_type": EventType.NODE_FAILED, "data": data})
    await store.append([created, full])

    assert await store.events(run.run_id) == [created, full]
    assert type((await store.tail_events(run.run_id, 1))[0]) is Event


async def test_fold_run_of_an_unknown_run_raises_unknown_run_error(store: Store) -> None:
    with pytest.raises(UnknownRunError):
        await store.fold_run("no-such-run")


async def test_events_select_by_after_seq_limit_and_type_prefix(store: Store) -> None:
    run = RunWriter()
    events = run.whole_run(logs=10)
    await store.append(events)

    assert await store.events(run.run_id, after_seq=12) == events[12:]
    assert await store.events(run.run_id, after_seq=2, limit=3) == events[2:5]
    assert await store.events(run.run_id, type_prefix="run.") == [
        e for e in events if e.event_type.startswith("run.")
    ]
    assert len(await store.events(run.run_id, type_prefix="node.log")) == 10
    assert await store.events(run.run_id, after_seq=len(events)) == []
    assert await store.events("no-such-run") == []


async def test_tail_events_are_the_last_n_in_seq_order(store: Store) -> None:
    run = RunWriter()
    events = run.whole_run(logs=10)
    await store.append(events)

    assert await store.tail_events(run.run_id, 3) == events[-3:]
    assert await store.tail_events(run.run_id, 1000) == events
    assert await store.tail_events(run.run_id, 0) == []


async def test_last_seq_is_zero_for_a_run_without_events(store: Store) -> None:
    assert await store.last_seq("nothing-here") == 0


async def test_events_round_trip_unicode_and_nested_data(store: Store) -> None:
    run = RunWriter()
    created = run.created()
    event = run.event(
        EventType.NODE_SUCCEEDED,
        node_id="a",
        reason='naïve ☃ "quoted" \\ back',
        data={"output": {"nested": [1, 2.5, None, True, {"k": "日本"}]}},
    )
    await store.append([created, event])

    assert await store.events(run.run_id) == [created, event]


async def test_the_stored_body_is_the_events_own_json(store: Store, db: Path) -> None:
    run = RunWriter()
    events = [
        run.created(),
        run.event(EventType.NODE_FAILED, node_id="a", error_class="error", reason="bad ☃"),
        run.event(EventType.NODE_SUCCEEDED, node_id="a", data={"output": {"when": Path("/x")}}),
    ]
    await store.append(events)

    conn = sqlite3.connect(db)
    bodies = [body for (body,) in conn.execute("SELECT body FROM events ORDER BY seq")]
    conn.close()
    assert bodies == [event.to_json() for event in events]


# -- failures and isolation ------------------------------------------------------------------------


async def test_a_duplicate_seq_fails_its_append_and_the_writer_goes_on(store: Store) -> None:
    run = RunWriter()
    events = run.whole_run(logs=5)
    await store.append(events[:4])
    duplicate = Event(new_id(), 3, EventType.NODE_LOG, run.run_id, stamp(99), node_id="a")

    with pytest.raises(StoreError, match="already has an event with that seq") as caught:
        await store.append([duplicate])
    assert str(store.path) in str(caught.value)

    await store.append(events[4:])
    assert await store.events(run.run_id) == events


async def test_a_failed_append_is_all_or_nothing_and_spares_its_batch(store: Store) -> None:
    bad, good = RunWriter(), RunWriter()
    await store.append([bad.created()])
    conflicting = [bad.state("running"), bad.event(EventType.NODE_LOG, node_id="a")]
    conflicting.append(Event(new_id(), 1, EventType.NODE_LOG, bad.run_id, stamp(5)))
    good_events = good.whole_run()

    # Everything below is queued before the writer runs, so it lands in one batch.
    for event in good_events[:5]:
        store.publish(event)
    failing = asyncio.ensure_future(store.append(conflicting))
    for event in good_events[5:]:
        store.publish(event)
    await store.flush()

    with pytest.raises(StoreError):
        await failing
    assert await store.events(good.run_id) == good_events
    assert await store.last_seq(bad.run_id) == 1


async def test_a_failed_published_event_is_reported_by_the_next_flush(store: Store) -> None:
    run = RunWriter()
    created = run.created()
    await store.append([created])

    store.publish(created)  # the same event again
    with pytest.raises(StoreError, match="run"):
        await store.flush()
    await store.flush()  # reported once, not forever

    store.publish(run.state("running"))
    await store.flush()
    assert await store.last_seq(run.run_id) == 2


async def test_an_event_that_cannot_be_serialized_fails_only_its_append(store: Store) -> None:
    run = RunWriter()
    created = run.created()
    loop: dict[str, Any] = {}
    loop["self"] = loop
    fine = run.state("running")
    broken = run.event(EventType.NODE_LOG, node_id="a", data=loop)
    store.publish(created)

    with pytest.raises(StoreError, match="cannot be written as JSON"):
        await store.append([fine, broken])  # all of an append, or none of it
    assert await store.events(run.run_id) == [created]


async def test_an_unexpected_error_while_writing_fails_the_batch_not_the_writer(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = RunWriter()
    created = run.created()

    def explode(event: Event) -> tuple[Any, ...]:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store_writer, "event_row", explode)
    with pytest.raises(StoreError, match="disk on fire"):
        await asyncio.wait_for(store.append([created]), 10)
    monkeypatch.undo()

    await asyncio.wait_for(store.append([created]), 10)
    assert await store.events(run.run_id) == [created]


async def test_a_duplicate_event_id_is_refused(store: Store) -> None:
    first, second = RunWriter(), RunWriter()
    event = first.created()
    await store.append([event])
    clash = Event(event.event_id, 1, EventType.RUN_CREATED, second.run_id, stamp(1))

    with pytest.raises(StoreError, match="event_id"):
        await store.append([clash])


async def test_store_errors_are_interlock_errors() -> None:
    assert issubclass(StoreError, InterlockError)


# -- group commit ----------------------------------------------------------------------------------


async def test_ten_thousand_published_events_commit_in_few_transactions(store: Store) -> None:
    run = RunWriter()
    events = [run.created(), *run.logs(9_999)]
    before = store.batches_committed

    for event in events:
        store.publish(event)
    await store.flush()

    assert await store.last_seq(run.run_id) == 10_000
    transactions = store.batches_committed - before
    assert transactions <= 10_000 // store.batch_size + 3


async def test_concurrent_appends_share_a_transaction(store: Store) -> None:
    runs = [RunWriter() for _ in range(50)]
    before = store.batches_committed

    await asyncio.gather(*(store.append([run.created()]) for run in runs))

    assert store.batches_committed - before <= 3
    assert len(await store.list_runs()) == 50


async def test_a_batch_closes_at_batch_size(db: Path) -> None:
    async with Store(db, batch_size=100, batch_window=10.0) as small:
        run = RunWriter()
        for event in [run.created(), *run.logs(249)]:
            small.publish(event)
        await small.flush()
        assert small.batches_committed == 3


async def test_published_events_commit_after_the_batch_window_without_a_flush(db: Path) -> None:
    async with Store(db, batch_window=0.001) as quick, Store(db, readonly=True) as reader:
        run = RunWriter()
        quick.publish(run.created())
        deadline = time.monotonic() + 5
        while await reader.last_seq(run.run_id) == 0:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.005)


async def test_cancelling_an_append_does_not_lose_its_events(store: Store) -> None:
    run = RunWriter()
    events = [run.created(), *run.logs(3_000)]

    task = asyncio.create_task(store.append(events))
    await asyncio.sleep(0)  # the append has queued its events
    await asyncio.sleep(0.001)  # and the writer is, most likely, in the middle of them
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await store.flush()

    assert await store.events(run.run_id) == events


async def test_cancelling_a_flush_does_not_lose_events(store: Store) -> None:
    run = RunWriter()
    events = [run.created(), *run.logs(2_000)]
    for event in events:
        store.publish(event)

    flushing = asyncio.create_task(store.flush())
    await asyncio.sleep(0)
    flushing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await flushing
    await store.flush()

    assert await store.last_seq(run.run_id) == len(events)


async def test_close_drains_the_queue_and_reopening_keeps_everything(db: Path) -> None:
    run = RunWriter()
    events = run.whole_run(logs=1_000)
    store = await Store(db).open()
    for event in events:
        store.publish(event)
    await store.close()  # no flush: close must write what is queued

    async with Store(db) as reopened:
        assert await reopened.events(run.run_id) == events
        row = await reopened.run_row(run.run_id)
        assert row is not None
        assert row.state == "succeeded"


async def test_a_flush_during_close_returns_once_everything_is_written(db: Path) -> None:
    run = RunWriter()
    events = [run.created(), *run.logs(2_000)]
    store = await Store(db).open()
    for event in events:
        store.publish(event)

    closing = asyncio.create_task(store.close())
    await asyncio.sleep(0)
    await store.flush()
    await closing

    async with Store(db, readonly=True) as reader:
        assert await reader.last_seq(run.run_id) == len(events)


async def test_other_writes_are_ordered_after_the_events_published_before_them(
    store: Store,
) -> None:
    run = RunWriter()
    store.publish(run.created())  # no flush: the claim still finds the run

    await store.claim_run(run.run_id, Owner.current())
    command = await store.post_command(run.run_id, "cancel")

    assert (await store.pending_commands([run.run_id]))[0].id == command


async def test_writing_to_a_closed_store_raises(db: Path) -> None:
    store = await Store(db).open()
    await store.close()
    await store.close()  # idempotent

    with pytest.raises(StoreError, match="closed"):
        store.publish(RunWriter().created())
    with pytest.raises(StoreError, match="closed"):
        await store.append([RunWriter().created()])
    with pytest.raises(StoreError, match="closed"):
        await store.events("x")


async def test_publishing_before_open_raises(db: Path) -> None:
    with pytest.raises(StoreError, match="not open"):
        Store(db).publish(RunWriter().created())


# -- the runs index --------------------------------------------------------------------------------


async def test_the_runs_row_follows_creation_state_changes_and_completion(store: Store) -> None:
    run = RunWriter()
    created = run.created("nightly", replay_of="older-run")
    await store.append([created])

    row = await store.run_row(run.run_id)
    assert row is not None
    assert (row.pipeline_id, row.state, row.last_seq) == ("nightly", "pending", 1)
    assert (row.created_at, row.replay_of) == (created.timestamp_utc, "older-run")
    assert (row.started_at, row.ended_at) == (None, None)

    running = run.state("running")
    await store.append([running, run.state("waiting"), *run.logs(3)])
    row = await store.run_row(run.run_id)
    assert row is not None
    assert (row.state, row.started_at, row.last_seq) == ("waiting", running.timestamp_utc, 6)

    completed = run.completed("failed")
    await store.append([completed])
    row = await store.run_row(run.run_id)
    assert row is not None
    assert (row.state, row.ended_at, row.last_seq) == ("failed", completed.timestamp_utc, 7)


async def test_the_runs_row_matches_the_fold_in_one_batch(store: Store) -> None:
    run = RunWriter()
    events = run.whole_run()
    await store.append(events)

    row, state = await store.run_row(run.run_id), fold(events)
    assert row is not None
    assert (row.state, row.started_at, row.ended_at) == (
        state.state.value,
        state.started_at,
        state.ended_at,
    )


async def test_nothing_is_stored_after_a_runs_end_unless_an_override_reopens_it(
    store: Store,
) -> None:
    run = RunWriter()
    await store.append([run.created(), run.state("running"), run.completed("failed")])
    late = run.state("interrupted")
    with pytest.raises(StoreError, match="already completed"):
        await store.append([late])
    assert [e.event_type for e in await store.events(run.run_id)][-1] == "run.completed"

    row = await store.run_row(run.run_id)
    assert row is not None
    taken = await store.take_over(row, Owner.current(), reopen=True)
    assert taken is not None and taken.fence == row.fence + 1
    run.seq -= 1  # the refused event took no seq
    await store.append([run.event(EventType.RUN_RESUMED, attempt=2), run.state("running")])
    row = await store.run_row(run.run_id)
    assert row is not None
    assert (row.state, row.ended_at) == ("running", None)


async def test_an_event_after_run_completed_in_the_same_batch_is_refused(store: Store) -> None:
    run = RunWriter()
    with pytest.raises(StoreError, match="already completed"):
        await store.append([run.created(), run.completed(), run.state("running")])
    assert await store.events(run.run_id) == []


async def test_events_of_a_run_never_created_are_still_stored(store: Store) -> None:
    run = RunWriter()
    orphan = run.state("running")
    await store.append([orphan])

    assert await store.events(run.run_id) == [orphan]
    assert await store.run_row(run.run_id) is None


async def test_list_runs_is_newest_first_with_limit_and_states(store: Store) -> None:
    runs = [RunWriter(clock=i * 100) for i in range(5)]
    for run in runs:
        await store.append([run.created()])
    await store.append([runs[1].state("running"), runs[3].state("running")])
    await store.append([runs[3].completed("failed")])

    newest_first = [run.run_id for run in reversed(runs)]
    assert [row.run_id for row in await store.list_runs()] == newest_first
    assert [row.run_id for row in await store.list_runs(limit=2)] == newest_first[:2]
    assert [row.run_id for row in await store.list_runs(states=["running", "failed"])] == [
        runs[3].run_id,
        runs[1].run_id,
    ]
    assert await store.list_runs(states=[]) == []


async def test_runs_created_in_the_same_instant_list_newest_insert_first(store: Store) -> None:
    same = [RunWriter(clock=0), RunWriter(clock=0)]
    for run in same:
        await store.append([run.created()])

    assert [row.run_id for row in await store.list_runs()] == [same[1].run_id, same[0].run_id]


async def test_find_run_takes_an_id_or_a_unique_prefix(store: Store) -> None:
    alpha, beta, gamma = (RunWriter(run_id) for run_id in ("abcd1111", "abcd2222", "ffff0000"))
    for run in (alpha, beta, gamma):
        await store.append([run.created()])

    found = await store.find_run("abcd1111")
    assert found is not None
    assert found.run_id == "abcd1111"
    prefixed = await store.find_run("ffff")
    assert prefixed is not None
    assert prefixed.run_id == "ffff0000"
    assert await store.find_run("abcd2") is not None
    assert await store.find_run("fff") is None  # too short to be a prefix
    assert await store.find_run("0000") is None
    with pytest.raises(StoreError, match="ambiguous"):
        await store.find_run("abcd")


# -- readers in other connections and processes ----------------------------------------------------


async def test_a_read_only_store_sees_what_the_writer_committed(db: Path) -> None:
    run = RunWriter()
    async with Store(db) as writer, Store(db, readonly=True) as reader:
        await writer.append(run.whole_run())
        assert await reader.events(run.run_id) == await writer.events(run.run_id)

        second = RunWriter()
        more = [second.created(), *second.logs(3)]
        await writer.append(more)
        assert await reader.events(second.run_id, after_seq=1) == more[1:]

        with pytest.raises(StoreError, match="read-only"):
            reader.publish(run.logs(1)[0])
        with pytest.raises(StoreError, match="read-only"):
            await reader.post_command(run.run_id, "cancel")


async def test_a_read_only_store_needs_an_existing_database(db: Path) -> None:
    with pytest.raises(StoreError, match="no Interlock database"):
        await Store(db, readonly=True).open()
    assert not db.exists()


async def test_another_process_reads_the_committed_events(db: Path) -> None:
    run = RunWriter()
    events = run.whole_run(logs=100)
    async with Store(db) as writer:
        await writer.append(events)
        result = run_python(
            """
            import asyncio, sys
            from engine.store import Store

            async def main():
                async with Store(sys.argv[1], readonly=True) as store:
                    events = await store.events(sys.argv[2])
                    row = await store.run_row(sys.argv[2])
                    print(len(events), events[-1].event_type, row.state)

            asyncio.run(main())
            """,
            str(db),
            run.run_id,
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(len(events)), "run.completed", "succeeded"]


async def test_a_follower_process_sees_new_events_within_300_ms(db: Path) -> None:
    run = RunWriter()
    async with Store(db) as writer:
        await writer.append([run.created()])
        follower = subprocess.Popen(
            [
                sys.executable,
                "-c",
                textwrap.dedent(
                    """
                    import asyncio, sys, time
                    from engine.store import Store

                    async def main():
                        async with Store(sys.argv[1], readonly=True) as store:
                            last = await store.last_seq(sys.argv[2])
                            print("ready", flush=True)
                            while last < int(sys.argv[3]):
                                for event in await store.events(sys.argv[2], after_seq=last):
                                    print(event.seq, time.time(), flush=True)
                                    last = event.seq
                                await asyncio.sleep(0.02)

                    asyncio.run(main())
                    """
                ),
                str(db),
                run.run_id,
                "6",
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert follower.stdout is not None
        loop = asyncio.get_running_loop()
        assert (await loop.run_in_executor(None, follower.stdout.readline)).strip() == "ready"
        committed: dict[int, float] = {}
        for event in run.logs(5):
            await writer.append([event])
            committed[event.seq] = time.time()
            await asyncio.sleep(0.05)
        output, _ = await loop.run_in_executor(None, follower.communicate)
    seen = {int(seq): float(at) for seq, at in (line.split() for line in output.splitlines())}
    assert sorted(seen) == [2, 3, 4, 5, 6]
    assert max(seen[seq] - committed[seq] for seq in seen) < 0.3


# -- ownership -------------------------------------------------------------------------------------


async def test_claim_heartbeat_and_release_a_run(store: Store) -> None:
    run = RunWriter()
    await store.append([run.created()])
    owner = Owner.current()

    await store.claim_run(run.run_id, owner)
    row = await store.run_row(run.run_id)
    assert row is not None
    assert row.owner == owner
    assert row.heartbeat_at is not None
    claimed_at = row.heartbeat_at

    await asyncio.sleep(0.01)
    await store.heartbeat([run.run_id], owner)
    await store.heartbeat([run.run_id], Owner("elsewhere", 1, 1.0))  # not its run: no effect
    row = await store.run_row(run.run_id)
    assert row is not None
    assert row.heartbeat_at is not None
    assert row.heartbeat_at > claimed_at
    assert row.owner == owner

    await store.release_run(run.run_id)
    row = await store.run_row(run.run_id)
    assert row is not None
    assert (row.owner, row.heartbeat_at) == (None, None)


async def test_the_commit_that_completes_a_run_also_releases_it(store: Store) -> None:
    run = RunWriter()
    await store.append([run.created(), run.state("running")])
    await store.claim_run(run.run_id, Owner.current())

    await store.append([run.completed()])  # no release_run: its owner has nothing left to do
    row = await store.run_row(run.run_id)
    assert row is not None
    assert (row.state, row.owner, row.heartbeat_at) == ("succeeded", None, None)


async def test_a_run_a_manager_finishes_is_left_without_an_owner(
    store: Store, make_pipeline: MakePipeline
) -> None:
    pipeline = make_pipeline({"nodes": [{"id": "a", "type": "parallel"}]})
    async with RunManager(store=store) as manager:
        handle = await manager.start(pipeline)  # claimed by this process
        await handle.wait(10)
        row = await store.run_row(handle.run_id)
        assert row is not None
        assert (row.state, row.owner, row.heartbeat_at) == ("succeeded", None, None)


async def test_a_claim_commits_with_the_run_created_published_before_it(store: Store) -> None:
    run = RunWriter()
    before = store.batches_committed
    store.publish(run.created())

    await store.claim_run(run.run_id, Owner.current())

    assert store.batches_committed - before == 1
    row = await store.run_row(run.run_id)
    assert row is not None
    assert row.owner == Owner.current()


async def test_a_claim_returns_the_stored_breakers_with_the_same_commit(
    store: Store, db: Path
) -> None:
    opened = BreakerRecord("etl/load", "open", 5, T0, 30.0, T0)
    async with Store(db) as elsewhere:
        await elsewhere.save_breaker(opened)
    run = RunWriter()
    before = store.batches_committed
    store.publish(run.created())

    breakers = await store.claim_run(run.run_id, Owner.current())

    assert breakers == {"etl/load": opened}
    assert store.batches_committed - before == 1


async def test_a_long_lived_manager_honours_a_breaker_another_process_opened_since_it_opened(
    store: Store, db: Path, make_pipeline: MakePipeline, tmp_path: Path
) -> None:
    marker = tmp_path / "ran.txt"
    pipeline = make_pipeline(
        {
            "id": "etl",
            "nodes": [
                {"id": "load", "type": "shell", "command": ["touch", str(marker)]},
            ],
        }
    )
    async with RunManager(store=store) as manager:  # loads the breakers once, here: none
        async with Store(db) as elsewhere:  # another process opens the node's breaker
            await elsewhere.save_breaker(
                BreakerRecord("etl/load", "open", 5, time.time(), 300.0, time.time())
            )

        handle = await manager.start(pipeline)
        state = await handle.wait(10)

    assert state.nodes["load"].error_class == "circuit_open"
    assert not marker.exists(), "the work ran behind an open breaker"


async def test_a_claim_fails_with_its_run_when_the_runs_events_fail_to_commit(
    store: Store,
) -> None:
    taken = RunWriter()
    event = taken.created()
    await store.append([event])
    clash = RunWriter(taken.run_id)  # the same run id again: its run.created breaks (run, seq)
    store.publish(clash.created())

    with pytest.raises(StoreError, match="already has an event with that seq"):
        await store.claim_run(taken.run_id, Owner.current())

    row = await store.run_row(taken.run_id)
    assert row is not None
    assert row.owner is None  # nothing was claimed
    with pytest.raises(StoreError, match="already has an event with that seq"):
        await store.flush()  # the published event's failure is still reported


async def test_claiming_an_unknown_run_raises(store: Store) -> None:
    with pytest.raises(UnknownRunError):
        await store.claim_run("no-such-run", Owner.current())


async def test_the_current_process_is_a_live_owner() -> None:
    assert Owner.current().is_alive()


async def test_a_finished_process_is_a_dead_owner() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    started = psutil.Process(child.pid).create_time()
    child.wait()

    assert not Owner(socket.gethostname(), child.pid, started).is_alive()


async def test_a_reused_pid_with_another_start_time_is_a_dead_owner() -> None:
    me = Owner.current()

    assert not Owner(me.host, me.pid, me.started_at - 3600).is_alive()


async def test_an_owner_on_another_host_is_alive_while_its_heartbeat_is_fresh() -> None:
    remote = Owner("some-other-host.invalid", 1, T0)

    assert remote.is_alive(heartbeat_at=time.time() - 1)
    assert not remote.is_alive(heartbeat_at=time.time() - 60)
    assert not remote.is_alive(heartbeat_at=time.time() - 6, stale_after=5)
    assert not remote.is_alive()


# Commands: tests/contract/test_control.py (posted, listed, acknowledged once; known run and kind).


# -- breakers --------------------------------------------------------------------------------------


async def test_breakers_are_saved_updated_loaded_and_deleted(db: Path) -> None:
    opened = BreakerRecord("etl/load", "open", 5, T0, 30.0, T0)
    closed = BreakerRecord("warehouse", "closed", 0, None, 10.0, T0 + 1)
    async with Store(db) as store:
        await store.save_breaker(opened)
        await store.save_breaker(closed)
        half_open = BreakerRecord("etl/load", "half_open", 5, T0, 30.0, T0 + 30)
        await store.save_breaker(half_open)

    async with Store(db) as store:
        assert await store.load_breakers() == {"etl/load": half_open, "warehouse": closed}
        assert await store.delete_breaker("warehouse") is True
        assert await store.delete_breaker("warehouse") is False
        assert list(await store.load_breakers()) == ["etl/load"]


# -- files, schema and errors ----------------------------------------------------------------------


async def test_the_database_is_0600_and_created_directories_0700(tmp_path: Path) -> None:
    db = tmp_path / "made" / "for" / "us" / "interlock.db"
    old_umask = os.umask(0o022)
    try:
        async with Store(db) as store:
            await store.append([RunWriter().created()])
    finally:
        os.umask(old_umask)

    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    for directory in (db.parent, db.parent.parent, db.parent.parent.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700


async def test_the_database_uses_wal_and_records_its_schema_version(db: Path) -> None:
    async with Store(db):
        pass
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA application_id").fetchone()[0] == store_module.APPLICATION_ID
    conn.close()


async def test_a_corrupt_file_raises_a_clear_store_error(db: Path) -> None:
    db.write_bytes(os.urandom(8192))

    with pytest.raises(StoreError) as caught:
        await Store(db).open()
    message = str(caught.value)
    assert str(db) in message
    assert "not a SQLite database" in message
    assert "\n" not in message


async def test_a_truncated_garbage_file_raises_store_error(db: Path) -> None:
    db.write_bytes(b"this is not a database at all")

    with pytest.raises(StoreError, match="not a SQLite database"):
        await Store(db).open()


async def test_a_foreign_sqlite_database_is_refused(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.commit()
    conn.close()

    with pytest.raises(StoreError, match="not an Interlock one"):
        await Store(db).open()


async def test_a_path_under_a_file_raises_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    target = blocker / "interlock.db"

    with pytest.raises(StoreError) as caught:
        await Store(target).open()
    assert str(target) in str(caught.value)
    assert "cannot create" in str(caught.value)


async def test_a_path_in_proc_raises_store_error() -> None:
    with pytest.raises(StoreError, match="cannot create"):
        await Store("/proc/interlock-nope/x/interlock.db").open()


async def test_a_directory_is_not_a_database(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="directory"):
        await Store(tmp_path).open()


async def test_an_empty_file_is_initialised(db: Path) -> None:
    db.touch()

    async with Store(db) as store:
        await store.append([RunWriter().created()])
        assert len(await store.list_runs()) == 1


async def test_a_database_from_a_newer_interlock_is_refused(db: Path) -> None:
    async with Store(db):
        pass
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()

    with pytest.raises(StoreError, match="created by a newer interlock"):
        await Store(db).open()
    with pytest.raises(StoreError, match="created by a newer interlock"):
        await Store(db, readonly=True).open()


async def test_an_older_database_is_migrated_and_keeps_its_data(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = RunWriter()
    events = run.whole_run()
    async with Store(db) as store:
        await store.append(events)

    newer = (*store_module.migrations(), ("ALTER TABLE runs ADD COLUMN labels TEXT",))
    monkeypatch.setattr(store_schema, "migrations", lambda: newer)
    with pytest.raises(StoreError, match="needs upgrading"):
        await Store(db, readonly=True).open()
    async with Store(db) as store:
        assert await store.events(run.run_id) == events
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(newer)
    assert "labels" in [col[1] for col in conn.execute("PRAGMA table_info(runs)")]
    conn.close()


def test_schema_sql_parses_into_numbered_migrations() -> None:
    text = """
    -- header comment
    -- migration 1
    CREATE TABLE a (x TEXT); -- trailing
    CREATE TRIGGER t AFTER INSERT ON a BEGIN SELECT 1; END;
    -- migration 2
    -- a comment inside
    ALTER TABLE a ADD COLUMN y;
    """
    steps = store_schema.parse_migrations(textwrap.dedent(text))
    assert len(steps) == 2
    assert steps[0][1].startswith("CREATE TRIGGER") and steps[0][1].endswith("END;")
    assert steps[1] == ("ALTER TABLE a ADD COLUMN y;",)
    with pytest.raises(RuntimeError, match="numbered"):
        store_schema.parse_migrations("-- migration 2\nSELECT 1;\n")
    assert len(store_module.migrations()) == SCHEMA_VERSION >= 1


async def test_bad_settings_are_rejected(db: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        Store(db, synchronous="sometimes")
    with pytest.raises(ValueError, match="batch_size"):
        Store(db, batch_size=0)
    async with Store(db, synchronous="normal") as store:
        await store.append([RunWriter().created()])


async def test_a_store_dropped_while_open_warns_and_stops_its_thread(db: Path) -> None:
    threads_before = set(threading.enumerate())
    store = await Store(db).open()

    with pytest.warns(ResourceWarning, match="garbage-collected while open"):
        del store
        gc.collect()

    deadline = time.monotonic() + 10
    while set(threading.enumerate()) - threads_before:
        assert time.monotonic() < deadline, "the connection's thread is still running"
        await asyncio.sleep(0.01)


async def test_rows_are_plain_values(store: Store) -> None:
    run = RunWriter()
    await store.append([run.created()])
    row = await store.run_row(run.run_id)
    assert row is not None
    assert json.loads(json.dumps(row.__dict__))["run_id"] == run.run_id
    assert RunStatus(row.state) is RunStatus.PENDING


# -- the connection's thread -----------------------------------------------------------------------


async def test_the_connection_thread_runs_calls_in_order_and_ends_on_close(db: Path) -> None:
    threads_before = set(threading.enumerate())
    conn = await SQLiteThread.open(str(db))
    seen: list[int] = []

    def record(i: int) -> Callable[[sqlite3.Connection], int]:
        def call(_db: sqlite3.Connection) -> int:
            seen.append(i)
            return i

        return call

    results = await asyncio.gather(*(conn.run(record(i)) for i in range(50)))
    assert seen == list(range(50)) == results
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        await conn.fetchall("SELECT * FROM nowhere")
    assert await conn.fetchall("SELECT ?", (7,)) == [(7,)]  # an error does not end the thread
    await conn.close()
    await conn.close()  # idempotent
    assert set(threading.enumerate()) == threads_before
    with pytest.raises(sqlite3.ProgrammingError):
        conn.run(record(0))


async def test_a_failed_open_of_the_connection_thread_leaves_no_thread(tmp_path: Path) -> None:
    threads_before = set(threading.enumerate())
    with pytest.raises(sqlite3.OperationalError):
        await SQLiteThread.open(str(tmp_path / "missing" / "dir" / "x.db"))
    deadline = time.monotonic() + 10
    while set(threading.enumerate()) - threads_before:
        assert time.monotonic() < deadline, "the connection's thread is still running"
        await asyncio.sleep(0.01)


def test_the_store_reaches_no_private_attribute_of_aiosqlite() -> None:
    # What the store once used: `conn._execute(...)`, `conn._conn`, `getattr(conn, "_thread")`.
    private = re.compile(
        r"\._(execute|tx|connector)\b|conn\._(conn|thread|connection)\b|\"_thread\""
    )
    for path in (ROOT / "engine" / "store").rglob("*.py"):
        found = private.search(path.read_text(encoding="utf-8"))
        assert found is None, f"{path.relative_to(ROOT)} uses {found.group()}"
    assert private.search("conn._execute(fn)") and private.search("db = conn._conn")
