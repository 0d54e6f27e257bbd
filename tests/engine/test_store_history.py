"""The store's history queries: keyset pages over every run, filters in SQL, counts, links."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from benchmarks.history import PIPELINES, STATES, seed_history
from engine.run_filter import RunFilter, parse_filter
from engine.store import Store

if TYPE_CHECKING:
    from pathlib import Path

RUNS = 250


async def _all_pages(store: Store, query: RunFilter | None, size: int) -> list[list[str]]:
    pages, after = [], None
    while True:
        page = await store.list_runs_page(limit=size, query=query, after=after)
        pages.append([row.run_id for row in page.rows])
        if page.after is None:
            return pages
        after = page.after


async def test_keyset_pages_walk_every_run_once_newest_first(tmp_path: Path) -> None:
    async with Store(tmp_path / "db.sqlite") as store:
        await seed_history(store, RUNS)
        everything = [row.run_id for row in await store.list_runs()]
        pages = await _all_pages(store, None, 40)
        total = await store.count_runs()

    assert [len(p) for p in pages] == [40] * 6 + [10]
    assert [run for page in pages for run in page] == everything
    assert total == RUNS


async def test_filters_by_state_pipeline_and_words_answer_over_every_run(tmp_path: Path) -> None:
    async with Store(tmp_path / "db.sqlite") as store:
        await seed_history(store, RUNS)
        rows = await store.list_runs()
        failed = await _all_pages(store, RunFilter(states=("failed",)), 7)
        billing = await store.list_runs_page(limit=1000, query=RunFilter(pipeline="billing"))
        mixed = RunFilter(("failed", "cancelled"), "billing")  # billing's are never failed
        mixed_rows = (await store.list_runs_page(limit=1000, query=mixed)).rows
        one = rows[123].run_id
        by_word = await store.list_runs_page(limit=10, query=RunFilter(words=(one[3:11],)))
        counts = [await store.count_runs(q) for q in (RunFilter(("failed",)), mixed)]
        nothing = await store.count_runs(parse_filter("state:succeeded 100%_no"))

    expected_failed = [r.run_id for r in rows if r.state == "failed"]
    assert [run for page in failed for run in page] == expected_failed
    assert len(expected_failed) == sum(STATES[i % len(STATES)] == "failed" for i in range(RUNS))
    assert {r.pipeline_id for r in billing.rows} == {"billing"}
    assert len(billing.rows) == RUNS // len(PIPELINES)
    assert {(r.state, r.pipeline_id) for r in mixed_rows} == {("cancelled", "billing")}
    assert [r.run_id for r in by_word.rows] == [one]
    assert counts == [len(expected_failed), len(mixed_rows)]
    assert nothing == 0  # `%` and `_` are matched as themselves


async def test_the_head_down_to_a_keyset_keeps_runs_that_arrive_after_paging(
    tmp_path: Path,
) -> None:
    async with Store(tmp_path / "db.sqlite") as store:
        await seed_history(store, 100)
        first = await store.list_runs_page(limit=30)
        assert first.after is not None
        await seed_history(store, 5, first=100)  # newer runs arrive
        head = await store.list_runs_page(limit=1000, down_to=first.after)
        older = await store.list_runs_page(limit=1000, after=first.after)

    assert len(head.rows) == 35 and head.rows[-1].run_id == first.rows[-1].run_id
    assert len(older.rows) == 70
    assert not {r.run_id for r in head.rows} & {r.run_id for r in older.rows}


def test_the_filter_text_reads_states_a_pipeline_and_words() -> None:
    query = parse_filter("State:Failed,timeout  pipeline:ETL  Nightly x:y")
    assert query == RunFilter(("failed", "timeout"), "ETL", ("nightly", "x:y"))
    assert query.describe() == "state:failed,timeout pipeline:ETL nightly x:y"
    assert parse_filter("   ").is_empty


async def test_a_database_from_before_retry_is_upgraded_and_its_runs_page_and_filter(
    tmp_path: Path,
) -> None:
    from engine import store as store_module

    db = tmp_path / "old.sqlite"
    with sqlite3.connect(db) as conn:  # as an Interlock of schema version 1 left it
        for statement in store_module.migrations()[0]:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        conn.execute(f"PRAGMA application_id = {store_module.APPLICATION_ID}")
        conn.executemany(
            "INSERT INTO runs (run_id, pipeline_id, state, created_at) VALUES (?, 'etl', ?, ?)",
            [(f"run{i:04d}", STATES[i % len(STATES)], f"2025-01-01T00:{i:02d}:00.000000Z")
             for i in range(30)],
        )

    async with Store(db) as store:
        page = await store.list_runs_page(limit=10, query=parse_filter("state:failed"))
        links = await store.linked_runs(page.rows[0].run_id)
    with sqlite3.connect(db) as conn:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(runs)")}

    assert version == len(store_module.migrations())
    assert {"runs_retry_of", "runs_state_newest", "runs_pipeline_newest"} <= indexes
    assert [row.run_id for row in page.rows] == ["run0018", "run0017", "run0016"]
    assert all(row.retry_of is None for row in page.rows)
    assert links == []


async def test_state_interrupted_finds_runs_whose_lease_expired_without_anything_written(
    tmp_path: Path,
) -> None:
    import time

    db = tmp_path / "db.sqlite"
    async with Store(db) as store:
        await seed_history(store, 20)
        rows = await store.list_runs()
    lost, alive = rows[3].run_id, rows[5].run_id
    now = time.time()
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "UPDATE runs SET state = 'running', lease_expires_at = ? WHERE run_id = ?",
            (now - 60, lost),
        )
        conn.execute(
            "UPDATE runs SET state = 'running', lease_expires_at = ? WHERE run_id = ?",
            (now + 60, alive),
        )
    recorded = {r for (r,) in conn.execute("SELECT run_id FROM runs WHERE state = 'interrupted'")}
    conn.close()
    async with Store(db) as store:
        found = await store.list_runs_page(limit=100, query=parse_filter("state:interrupted"))
        running = await store.list_runs_page(limit=100, query=parse_filter("state:running"))

    assert {r.run_id for r in found.rows} == recorded | {lost}
    assert alive not in {r.run_id for r in found.rows}
    assert alive in {r.run_id for r in running.rows}
