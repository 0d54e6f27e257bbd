"""`Store`: the SQLite backend of `engine.store.protocol.StoreBackend`, and its lifecycle.

Contract: `Store(path)` is an async context manager owning one connection (one thread) and, when
writable, one writer task. Opening creates the file 0600 (directories 0700), refuses a
stranger's file before SQLite may write to it (`dbfile.foreign_reason`), applies the pragmas
(WAL, `synchronous=FULL` by default or `NORMAL` on request, a busy timeout, foreign keys) and
checks or migrates the schema (`schema`); every failure there raises `StoreError` with one
sentence naming the path and the problem, and no sqlite3 error escapes. `readonly=True` opens
the file read-only (`mode=ro`, through aiosqlite, see `connection`), for followers in other
processes; WAL lets them read while a writer commits. `close()` writes everything queued,
stops the writer and ends the connection's thread; a store collected while open warns
(`ResourceWarning`) and ends its thread. The behaviour lives in the layers it is made of:
`writer` (group commit, fail-closed), `control` (leases, commands, breakers, schedule fires)
and `reads`.
"""

from __future__ import annotations

import contextlib
import sqlite3
import warnings
from typing import TYPE_CHECKING, Final

from engine import dbfile
from engine.store.rows import StoreError
from engine.store.sqlite.connection import AioReader, SQLiteThread, connection_pragmas
from engine.store.sqlite.control import Control
from engine.store.sqlite.reads import Reads
from engine.store.sqlite.schema import APPLICATION_ID, check_schema

if TYPE_CHECKING:
    import os
    from types import TracebackType

    from engine.store.sqlite.connection import Connection

__all__ = ["Store"]

_SYNCHRONOUS: Final = frozenset({"NORMAL", "FULL", "EXTRA"})


class Store(Reads, Control):
    """The SQLite event store. Use as `async with Store(path) as store:`."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "FULL",
        readonly: bool = False,
        batch_size: int = 2048,
        batch_window: float = 0.01,
    ) -> None:
        sync = synchronous.upper()
        if sync not in _SYNCHRONOUS:
            choices = ", ".join(sorted(_SYNCHRONOUS))
            raise ValueError(f"synchronous must be one of {choices}, not {synchronous!r}")
        self._synchronous = sync
        super().__init__(
            path, readonly=readonly, batch_size=batch_size, batch_window=batch_window
        )

    def __repr__(self) -> str:
        mode = "closed" if self._conn is None else "read-only" if self.readonly else "open"
        return f"<Store {str(self._path)!r} {mode}>"

    def __del__(self) -> None:
        conn = getattr(self, "_conn", None)
        if conn is None:
            return
        # No `source=self`: a recorded warning would keep the store, and its connection's
        # thread, alive past this point.
        warnings.warn(
            f"{self!r} was garbage-collected while open; use 'async with Store(...)' "
            "or 'await store.close()'",
            ResourceWarning,
            stacklevel=2,
        )
        writer = self._writer
        if writer is not None and not writer.done():
            with contextlib.suppress(RuntimeError):  # the event loop may be closed already
                writer.cancel()
        with contextlib.suppress(Exception):
            conn.stop()  # ends the connection's thread, which would keep the process up

    async def __aenter__(self) -> Store:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> Store:
        """Open (creating and migrating the database as needed). Idempotent while open."""
        if self._conn is not None:
            return self
        if self._closed:
            raise StoreError(f"the store for {self._path} was closed; open a new Store")
        where = " (read-only)" if self.readonly else ""
        conn: Connection
        try:
            if self.readonly:
                conn = await self._open_readonly()
            else:
                conn = self._thread = await self._open_writable()
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot open the Interlock database at {self._path}{where}: "
                f"{dbfile.describe(exc)}"
            ) from exc
        try:
            for pragma in connection_pragmas(self._synchronous, self.readonly):
                await conn.fetchall(pragma)
            await check_schema(conn, self._path, readonly=self.readonly)
        except BaseException as exc:
            self._thread = None
            await conn.close()
            if isinstance(exc, sqlite3.Error):
                raise StoreError(
                    f"cannot open the Interlock database at {self._path}: {dbfile.describe(exc)}"
                ) from exc
            raise
        self._conn = conn
        if not self.readonly:
            self._start_writer()
        return self

    async def _open_readonly(self) -> AioReader:
        if not self._path.is_file():
            raise StoreError(f"there is no Interlock database at {self._path}")
        # SQLite reads a file it cannot size (`/proc/self/status`) as an empty database, whose
        # schema version 0 would read as an old Interlock file waiting for an upgrade.
        foreign = dbfile.foreign_reason(self._path, APPLICATION_ID)
        if foreign is not None:
            raise StoreError(f"{self._path} is not an Interlock database: {foreign}")
        return await AioReader.open(dbfile.readonly_uri(self._path))

    async def _open_writable(self) -> SQLiteThread:
        try:
            dbfile.create_file(self._path)
        except OSError as exc:
            raise StoreError(
                f"cannot create the Interlock database at {self._path}: {dbfile.describe(exc)}"
            ) from exc
        # Before SQLite may write to it (switching to WAL writes): a stranger's file is left
        # byte for byte as it was.
        foreign = dbfile.foreign_reason(self._path, APPLICATION_ID)
        if foreign is not None:
            raise StoreError(f"refusing {self._path}: {foreign}; nothing was written to it")
        return await SQLiteThread.open(str(self._path))

    async def close(self) -> None:
        """Write everything queued, stop the writer, close the connection. Idempotent."""
        conn = self._conn
        if conn is None:
            self._closed = True
            return
        self._closing = True
        await self._stop_writer()
        self._conn = None
        self._thread = None
        self._closed = True
        await conn.close()
