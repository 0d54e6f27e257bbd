"""Reading the SQLite store: events, the runs index, the fold of a run. Reading never writes.

Contract: every read is one query on the store's connection (`StoreBase._fetch`), or a few for
`fold_run`, which reads a run's events in chunks of `FOLD_CHUNK` and folds them as it goes.
Events come back in seq order. Bodies are parsed with `json.loads` and `trusted_event`, without
the validation `Event.from_dict` applies to input from outside: the store wrote them itself.
Bodies cross from SQLite as one JSON array per query (`sql.as_json_array`), falling back to a
row per event past SQLite's string limit. The runs index is listed newest first (creation time,
then insertion order), filtered and paged in SQL (`sql.runs_where`) so a filter answers over the
whole history; `interrupted` is worked out from the lease, never written by a reader.
"""

from __future__ import annotations

import contextlib
import gc
import json
import operator
import sqlite3
from typing import TYPE_CHECKING, Any, Final

from engine.dbfile import describe
from engine.errors import UnknownRunError
from engine.events import Event, trusted_event
from engine.run_filter import RunPage
from engine.state import fold
from engine.store.rows import RunRow, StoreError
from engine.store.sqlite.base import StoreBase
from engine.store.sqlite.sql import (
    SQL_COUNT_RUNS,
    SQL_EVENTS,
    SQL_EVENTS_ARRAY,
    SQL_EVENTS_CHUNK,
    SQL_EVENTS_CHUNK_ROWS,
    SQL_EVENTS_OF_TYPE,
    SQL_EVENTS_OF_TYPE_ARRAY,
    SQL_LAST_SEQ,
    SQL_LINKED_RUNS,
    SQL_RUN,
    SQL_RUNS,
    SQL_RUNS_BY_PREFIX,
    SQL_RUNS_IN_STATES,
    SQL_RUNS_PAGE,
    SQL_TAIL_EVENTS,
    SQL_TAIL_EVENTS_ARRAY,
    runs_where,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from engine.run_filter import RunFilter
    from engine.state import RunState

__all__ = ["FOLD_CHUNK", "Reads"]

# Events per chunk when folding a run: small enough that a chunk's dicts and events are freed
# and their memory reused (still in cache) before the next is parsed; large enough that the
# round trips to the connection's thread cost little.
FOLD_CHUNK: Final = 2048
_MIN_PREFIX: Final = 4
_BY_SEQ = operator.attrgetter("seq")


def parse_array(text: str | None) -> list[Event]:
    """Events from a JSON array of bodies the store wrote itself: trusted, so not validated.

    One `json.loads` over all of them shares the key strings between events, which pays with
    the GC paused (benchmarks/NOTES.md, "Store").
    """
    if not text:
        return []
    events = [trusted_event(fields) for fields in json.loads(text)]
    events.sort(key=_BY_SEQ)
    return events


def _parse_arrays(texts: list[str]) -> Iterator[Event]:
    """The events of several arrays, in order, parsing each only when the one before is used
    up (and letting go of each text once parsed)."""
    texts.reverse()
    while texts:
        yield from parse_array(texts.pop())


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while reading many events.

    Reading a long run allocates a few hundred thousand objects (rows, dicts, events), none of
    them in cycles; each allocation threshold would otherwise trigger a collection that scans
    them all again. Nesting and overlapping uses are safe: only the outermost one re-enables
    collection.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class Reads(StoreBase):
    """The store's reads (see the module's contract)."""

    async def events(
        self,
        run_id: str,
        *,
        after_seq: int = 0,
        limit: int | None = None,
        type_prefix: str | None = None,
    ) -> list[Event]:
        """The run's events with seq > `after_seq`, in seq order."""
        cap = -1 if limit is None else max(limit, 0)
        with gc_paused():
            if type_prefix:
                params: tuple[Any, ...] = (run_id, after_seq, len(type_prefix), type_prefix, cap)
                return await self._events(SQL_EVENTS_OF_TYPE_ARRAY, SQL_EVENTS_OF_TYPE, params)
            return await self._events(SQL_EVENTS_ARRAY, SQL_EVENTS, (run_id, after_seq, cap))

    async def tail_events(self, run_id: str, n: int) -> list[Event]:
        """The run's last `n` events, in seq order."""
        if n <= 0:
            return []
        with gc_paused():
            return await self._events(SQL_TAIL_EVENTS_ARRAY, SQL_TAIL_EVENTS, (run_id, n))

    async def _events(self, array_sql: str, rows_sql: str, params: Sequence[Any]) -> list[Event]:
        conn = self._connection()
        try:
            try:
                text = (await conn.fetchall(array_sql, params))[0][0]
            except sqlite3.DataError:
                # More than SQLite's string limit (1 GB): fetch the bodies row by row.
                bodies = [row[0] for row in await conn.fetchall(rows_sql, params)]
                text = "[" + ",".join(bodies) + "]" if bodies else None
        except sqlite3.Error as exc:
            raise StoreError(f"could not read {self._path}: {describe(exc)}") from exc
        return parse_array(text)

    async def last_seq(self, run_id: str) -> int:
        """The run's highest stored seq; 0 if it has no events."""
        rows = await self._fetch(SQL_LAST_SEQ, (run_id,))
        return int(rows[0][0])

    async def fold_run(self, run_id: str) -> RunState:
        """The run's state: the fold of its stored events. UnknownRunError if it has none."""
        # Read in chunks, and parse each only as the fold reaches it: a chunk's dicts and events
        # are freed before the next is parsed, so their memory is reused while still in cache;
        # and the writer waits for one chunk's SELECT at a time, not the whole log's. Events
        # are committed in seq order and never change, so reading on after the last seq seen
        # yields the log as of the last chunk read.
        texts: list[str] = []
        after = 0
        while True:
            text, count, last = await self._chunk(run_id, after)
            if text:
                texts.append(text)
            if count < FOLD_CHUNK:
                break
            after = last
        if not texts:
            raise UnknownRunError(run_id)
        with gc_paused():
            return fold(_parse_arrays(texts), run_id)

    async def _chunk(self, run_id: str, after_seq: int) -> tuple[str | None, int, int]:
        """Up to `FOLD_CHUNK` events after `after_seq`: their JSON array, count and last seq."""
        conn = self._connection()
        params = (run_id, after_seq, FOLD_CHUNK)
        try:
            try:
                text, count, last = (await conn.fetchall(SQL_EVENTS_CHUNK, params))[0]
            except sqlite3.DataError:
                # More than SQLite's string limit (1 GB): fetch the bodies row by row.
                found = await conn.fetchall(SQL_EVENTS_CHUNK_ROWS, params)
                text = "[" + ",".join(body for body, _ in found) + "]" if found else None
                count, last = len(found), max((seq for _, seq in found), default=0)
        except sqlite3.Error as exc:
            raise StoreError(f"could not read {self._path}: {describe(exc)}") from exc
        return text, int(count), int(last)

    async def run_row(self, run_id: str) -> RunRow | None:
        rows = await self._fetch(SQL_RUN, (run_id,))
        return RunRow(*rows[0]) if rows else None

    async def list_runs(
        self, *, limit: int | None = None, states: Sequence[str] | None = None
    ) -> list[RunRow]:
        """Runs, newest first (by creation time, then insertion order)."""
        cap = -1 if limit is None else max(limit, 0)
        if states is None:
            rows = await self._fetch(SQL_RUNS, (cap,))
        else:
            rows = await self._fetch(SQL_RUNS_IN_STATES, (json.dumps(list(states)), cap))
        return [RunRow(*row) for row in rows]

    async def list_runs_page(
        self,
        *,
        limit: int,
        query: RunFilter | None = None,
        after: tuple[str, int] | None = None,
        down_to: tuple[str, int] | None = None,
    ) -> RunPage:
        """Up to `limit` runs matching `query`, newest first, after the keyset `after` (the
        `after` of the previous page): any page of the whole history costs about the same.
        `down_to`: only runs not older than that keyset (the head above pages already read)."""
        where, params = runs_where(query, after, down_to)
        rows = await self._fetch(SQL_RUNS_PAGE.format(where), (*params, max(limit, 0)))
        page = [RunRow(*row[:-1]) for row in rows]
        more = len(rows) == limit and limit > 0
        return RunPage(page, (rows[-1][3], int(rows[-1][-1])) if more else None)

    async def count_runs(self, query: RunFilter | None = None) -> int:
        """How many stored runs match `query` (all of them without one)."""
        where, params = runs_where(query, None)
        rows = await self._fetch(SQL_COUNT_RUNS.format(where), params)
        return int(rows[0][0])

    async def linked_runs(self, run_id: str) -> list[tuple[str, str]]:
        """The runs made from `run_id`, oldest first: (run id, 'retry' or 'replay')."""
        rows = await self._fetch(SQL_LINKED_RUNS, (run_id,))
        return [(str(row[0]), str(row[1])) for row in rows]

    async def find_run(self, prefix: str) -> RunRow | None:
        """The run with this id, or else the only run whose id starts with it (4+ characters).

        None if there is none; StoreError if the prefix matches several runs.
        """
        exact = await self.run_row(prefix)
        if exact is not None or len(prefix) < _MIN_PREFIX:
            return exact
        # Every string that starts with `prefix` sorts in [prefix, prefix + U+10FFFF).
        rows = await self._fetch(SQL_RUNS_BY_PREFIX, (prefix, prefix + "\U0010ffff"))
        if len(rows) > 1:
            shown = ", ".join(row[0] for row in rows[:2]) + (", ..." if len(rows) > 2 else "")
            raise StoreError(f"run id prefix '{prefix}' is ambiguous in {self._path}: {shown}")
        return RunRow(*rows[0]) if rows else None
