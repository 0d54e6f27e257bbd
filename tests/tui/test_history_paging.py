"""The bridge's history paging when a poll and a page load overlap: every run is listed once.

A poll reading the head while an older page loads used to set the next page back to the head's
end, so the following load read the same page again and the runs table met a key twice
(`DuplicateKey`, seen once on CI). The head's read is held here until the page has loaded.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from benchmarks.history import seed_history
from engine.store import Store
from tui.bridge import Bridge

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


@pytest.fixture
async def seeded(tmp_path: Path) -> AsyncIterator[tuple[Bridge, list[str]]]:
    """A bridge open on 1,200 stored runs (listed only when polled), and their ids, newest first."""
    db = tmp_path / "i.db"
    async with Store(db, synchronous="NORMAL") as store:
        await seed_history(store, 1200)
        stored = [row.run_id for row in await store.list_runs()]
    bridge = Bridge(db, actor="operator:tester", poll_interval=3600)
    await bridge.open()
    try:
        yield bridge, stored
    finally:
        await bridge.close()


async def test_a_page_loaded_while_a_poll_reads_the_head_is_not_read_again(
    seeded: tuple[Bridge, list[str]],
) -> None:
    bridge, stored = seeded
    await bridge.poll()  # the first page is listed
    reader = bridge._read()
    plain = reader.list_runs_page
    head_read, page_loaded = asyncio.Event(), asyncio.Event()

    async def held(**kwargs: Any) -> Any:
        page = await plain(**kwargs)
        if "after" not in kwargs and "down_to" not in kwargs and not head_read.is_set():
            head_read.set()
            await page_loaded.wait()  # the head arrives after the older page has
        return page

    reader.list_runs_page = held  # type: ignore[method-assign]
    polling = asyncio.create_task(bridge.poll())
    await head_read.wait()
    await bridge.load_more_runs()
    page_loaded.set()
    await polling
    reader.list_runs_page = plain  # type: ignore[method-assign]
    while await bridge.load_more_runs():
        pass
    await bridge.poll()
    assert [run.run_id for run in bridge.runs] == stored  # every run once, newest first


async def test_two_loads_of_the_same_page_list_it_once(seeded: tuple[Bridge, list[str]]) -> None:
    bridge, stored = seeded
    await bridge.poll()
    await asyncio.gather(bridge.load_more_runs(), bridge.load_more_runs())
    while await bridge.load_more_runs():
        pass
    assert [run.run_id for run in bridge.runs] == stored
