"""The bridge's view of the whole run history: the runs filter and paging, done in the store.

Contract: the runs listed are the newest `PAGE` runs matching the runs filter (the head, read
again at every poll), then the older pages loaded on request (`load_more_runs`, a keyset page
each, read once). Once older pages are loaded the head is read down to where they begin, so a
run never falls between the head and the pages as new runs arrive. The filter
(`set_run_filter`, the syntax of `engine.run_filter.parse_filter`) is applied by the store to
every stored run, and `runs_total` counts them all. Rows of older pages are not read again: a
run deep in the history that changes (rare: most are finished) shows its change once the filter
changes or the console starts again.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from engine.run_filter import RunFilter, parse_filter

if TYPE_CHECKING:
    from engine.store import RunRow, Store

PAGE = 500  # runs per page: the first paint reads one
HEAD_CAP = PAGE * 20  # runs newer than the loaded pages read at most per poll
RECOUNT_EVERY = 5.0  # seconds: the count of matching runs is at most this old


class History:
    """Mixed into `Bridge`, which provides `_read` and `poll`."""

    _run_query: RunFilter | None = None
    _run_tail: tuple[RunRow, ...] = ()  # the older pages loaded so far
    _run_floor: tuple[str, int] | None = None  # where the head ends once pages are loaded
    _run_next: tuple[str, int] | None = None  # where the next older page starts
    _runs_total: int | None = None
    _counted: object = None  # what the head was when the runs were last counted
    _counted_at = 0.0

    if TYPE_CHECKING:  # the bridge's own; stubs here would hide `Polling.poll`

        def _read(self) -> Store: ...

        async def poll(self) -> None: ...

    @property
    def run_filter(self) -> RunFilter | None:
        return self._run_query

    @property
    def runs_total(self) -> int | None:
        """How many stored runs match the filter, as of the last poll."""
        return self._runs_total

    @property
    def more_runs(self) -> bool:
        """Whether older runs than those listed match the filter."""
        return self._run_next is not None

    async def _list_rows(self, reader: Store) -> list[RunRow]:
        """The head (read now) and the older pages loaded; counts the matching runs too."""
        while True:
            rows = await self._read_rows(reader, self._run_query)
            # A filter typed while the poll read the old one: read again rather than post
            # the old filter's runs under the new filter's title.
            if rows[0] is self._run_query:
                return rows[1]

    async def _read_rows(
        self, reader: Store, query: RunFilter | None
    ) -> tuple[RunFilter | None, list[RunRow]]:
        if self._run_floor is None:
            page = await reader.list_runs_page(limit=PAGE, query=query)
            # An older page loaded while this read ran has moved the next page on already:
            # setting it back to this head's end would read that page a second time.
            if self._run_floor is None and query is self._run_query:
                self._run_next = page.after
            head = page.rows
        else:
            page = await reader.list_runs_page(limit=HEAD_CAP, query=query, down_to=self._run_floor)
            head = page.rows
        # Counting every match is a scan with a word filter (0.2 s on 100,000 runs): counted again
        # when the head changed (a run came or moved on), the filter did, or now and then.
        mark = (query, [(row.run_id, row.state) for row in head])
        now = time.monotonic()
        if mark != self._counted or now - self._counted_at > RECOUNT_EVERY:
            self._runs_total = await reader.count_runs(query)
            self._counted, self._counted_at = mark, now
        if not self._run_tail:
            return query, head
        seen = {row.run_id for row in head}
        return query, head + [row for row in self._run_tail if row.run_id not in seen]

    async def load_more_runs(self) -> bool:
        """Read the next older page of matching runs and list it; False if there is none."""
        after = self._run_next
        if after is None:
            return False
        query = self._run_query
        page = await self._read().list_runs_page(limit=PAGE, query=query, after=after)
        if self._run_next != after or self._run_query is not query:
            return True  # another load of this page, or a new filter, came first
        if self._run_floor is None:
            self._run_floor = after
        listed = {row.run_id for row in self._run_tail}
        self._run_tail = (*self._run_tail, *(row for row in page.rows if row.run_id not in listed))
        self._run_next = page.after
        await self.poll()
        return True

    async def set_run_filter(self, text: str) -> RunFilter | None:
        """Filter the listed runs (over every stored run) and list them at once."""
        query = parse_filter(text)
        new = None if query.is_empty else query
        if new != self._run_query:
            self._run_query = new
            self._run_tail, self._run_floor, self._run_next = (), None, None
            await self.poll()
        return new
