"""What every layer of the SQLite store shares: the path, the connection, the open/closed state.

Contract: `StoreBase` holds the database path, whether the store is read-only, and its
connection once open (`_conn` for reading, either kind; `_thread`, the same connection when the
store may write, for running whole transactions). `_fetch` runs one query and turns any sqlite3
error into `StoreError`; `_connection` and `_not_writable` say, in one sentence naming the path,
why a closed, unopened or read-only store cannot do what was asked. The store is layered on it:
`writer.GroupCommitWriter` (writing), `control.Control` (leases, commands, breakers, schedule
fires, on the writer), `reads.Reads` (reading) and `store.Store` (opening and closing).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.dbfile import describe
from engine.store.rows import StoreError

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence

    from engine.store.sqlite.connection import Connection, SQLiteThread

__all__ = ["StoreBase"]


class StoreBase:
    def __init__(self, path: str | os.PathLike[str], *, readonly: bool) -> None:
        self._path = Path(path).expanduser()
        self.readonly = readonly
        self._conn: Connection | None = None
        self._thread: SQLiteThread | None = None  # the connection, when the store may write
        self._closing = False
        self._closed = False

    @property
    def path(self) -> Path:
        return self._path

    @property
    def is_open(self) -> bool:
        return self._conn is not None and not self._closing

    def _connection(self) -> Connection:
        if self._conn is None:
            state = "closed" if self._closed else "not open"
            raise StoreError(f"the store for {self._path} is {state}")
        return self._conn

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        conn = self._connection()
        try:
            return await conn.fetchall(sql, params)
        except sqlite3.Error as exc:
            raise StoreError(f"could not read {self._path}: {describe(exc)}") from exc

    def _not_writable(self) -> StoreError:
        if self.readonly:
            return StoreError(f"the store for {self._path} is read-only")
        if self._conn is None and not self._closed:
            return StoreError(f"the store for {self._path} is not open")
        return StoreError(f"the store for {self._path} is closed")
