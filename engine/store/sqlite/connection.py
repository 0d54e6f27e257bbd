"""The store's SQLite connection: one thread per connection, and the only place sqlite3 runs.

Contract: `SQLiteThread` owns one `sqlite3.Connection` on a thread of its own, modelled on
aiosqlite's `Connection` (a queue of calls, futures resolved on the event loop with
`call_soon_threadsafe`); `run(fn)` runs `fn(db)` on that thread in ONE hand-over and returns
its result (or raises its error) on the loop. Calls run one at a time in the order they were
made, so a function holding a whole transaction is never interleaved with another call: the
store needs no lock of its own. `AioReader` is the read-only connection, aiosqlite's through its
public API. Both offer `fetchall(sql, params)`, `close()` (waits for the thread to end) and
`stop()` (for a store collected while open: ends the thread without waiting).

Why a thread of our own for writing: the group-commit writer writes a batch (inserts, the runs
index with its lease check, claims, breaker counts, COMMIT) as one function on the connection's
thread; a statement per hand-over costs a running pipeline the loop and the GIL at every step
(benchmarks/NOTES.md, "Store").
aiosqlite has no public way to run a function on its thread (checked up to 0.22.1, the newest
release): the store used its private `_execute`/`_conn`, which pinned it below 0.23. Why
aiosqlite still: it is the product's async SQLite library and its public API is all a read-only
store needs (followers in other processes: the console, `status`, `serve`'s readers), which
run one statement per call. A failed open ends either thread without a traceback, even when the
event loop closes right after.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import functools
import sqlite3
import threading
from queue import SimpleQueue
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

import aiosqlite

from engine.store.sqlite.sql import SQL_BEGIN, SQL_COMMIT, SQL_ROLLBACK

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["AioReader", "Connection", "SQLiteThread", "connection_pragmas", "in_transaction"]

_T = TypeVar("_T")
Row = tuple[Any, ...]

# How long a write waits for another process's lock before the store gives up (fail-closed):
# over 10 s, so that a lock held for up to 10 s only delays a run (DESIGN section 4).
BUSY_TIMEOUT_MS: Final = 12_000
BUSY_TIMEOUT_SECONDS: Final = BUSY_TIMEOUT_MS / 1000


def in_transaction(function: Callable[[sqlite3.Connection], _T], db: sqlite3.Connection) -> _T:
    """`function(db)` in a write transaction of its own (on the connection's thread): committed
    if it returns, rolled back if it raises."""
    db.execute(SQL_BEGIN)
    try:
        result = function(db)
        db.execute(SQL_COMMIT)
    except BaseException:
        if db.in_transaction:  # SQLite rolls back by itself after some errors
            with contextlib.suppress(sqlite3.Error):
                db.execute(SQL_ROLLBACK)
        raise
    return result


def connection_pragmas(synchronous: str, readonly: bool) -> list[str]:
    # busy_timeout first, so that even switching to WAL waits for another process's lock.
    pragmas = [f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}", "PRAGMA foreign_keys = ON"]
    if readonly:
        return [*pragmas, "PRAGMA query_only = ON"]
    return [
        *pragmas,
        "PRAGMA journal_mode = WAL",  # the first statement to read the file: detects garbage
        f"PRAGMA synchronous = {synchronous}",
        # Checkpoint every 32 MB of WAL rather than every 4 MB: the unique event_id index takes
        # inserts at random places, so each batch dirties many pages and copying them back less
        # often pays (benchmarks/NOTES.md). The file is trimmed to 64 MB.
        "PRAGMA wal_autocheckpoint = 8192",
        "PRAGMA journal_size_limit = 67108864",
    ]


def _fetchall(sql: str, params: Sequence[Any], db: sqlite3.Connection) -> list[Row]:
    return db.execute(sql, params).fetchall()


class Connection(abc.ABC):
    """What the store's reads need of either connection."""

    @abc.abstractmethod
    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """The rows of one statement."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the connection and end its thread (idempotent)."""

    @abc.abstractmethod
    def stop(self) -> None:
        """End the thread without waiting (for a store collected while open)."""


# A call for the thread: the future to settle (None: nobody waits), the function, and whether it
# is the last one (the connection is closed after it and the thread ends).
_Call = tuple["asyncio.Future[Any] | None", "Callable[[sqlite3.Connection], Any]", bool]


def _settle(future: asyncio.Future[Any] | None, result: Any, error: BaseException | None) -> None:
    """Hand a result to the loop (from the thread). A loop closed meanwhile gets nothing: its
    caller is gone, and the thread must not die with a traceback."""
    if future is None:
        return
    with contextlib.suppress(RuntimeError):  # "Event loop is closed"
        future.get_loop().call_soon_threadsafe(_resolve, future, result, error)


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # its caller was cancelled
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def _close(db: sqlite3.Connection) -> None:
    db.close()


def _work(
    queue: SimpleQueue[_Call],
    connector: Callable[[], sqlite3.Connection],
    ready: asyncio.Future[None],
) -> None:
    """The connection's thread: open, then run calls in order until the last one."""
    try:
        db = connector()
    except BaseException as exc:
        _settle(ready, None, exc)
        return
    _settle(ready, None, None)
    while True:
        future, function, last = queue.get()
        try:
            result = function(db)
        except BaseException as exc:
            _settle(future, None, exc)
        else:
            _settle(future, result, None)
        if last:
            return


class SQLiteThread(Connection):
    """A sqlite3 connection with a thread of its own (see the module's contract)."""

    def __init__(self) -> None:
        self._queue: SimpleQueue[_Call] = SimpleQueue()
        self._running = False
        self._worker: threading.Thread | None = None

    @classmethod
    async def open(cls, target: str, *, uri: bool = False) -> SQLiteThread:
        """Connect to `target` (a path, or a URI); raises sqlite3's error if that fails."""
        conn = cls()
        connector = functools.partial(sqlite3.connect, target, isolation_level=None, uri=uri)
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        name = f"interlock-store {target.rsplit('/', 1)[-1]}"
        worker = threading.Thread(target=_work, args=(conn._queue, connector, ready), name=name)
        conn._worker = worker
        worker.start()
        try:
            await ready
        except BaseException:
            conn._queue.put((None, _close, True))  # cancelled while opening: the thread ends
            raise
        conn._running = True
        return conn

    def run(self, function: Callable[[sqlite3.Connection], _T]) -> asyncio.Future[_T]:
        """Run `function(db)` on the connection's thread; await the future for its result."""
        if not self._running:
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        future: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self._queue.put((future, function, False))
        return future

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await self.run(functools.partial(_fetchall, sql, params))

    async def close(self) -> None:
        """Run what is queued, close the connection and end the thread."""
        if not self._running:
            return
        self._running = False
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put((future, _close, True))
        await future
        if self._worker is not None:
            self._worker.join(1.0)  # it only has to return

    def stop(self) -> None:
        if self._running:
            self._running = False
            self._queue.put((None, _close, True))


class AioReader(Connection):
    """A read-only connection through aiosqlite's public API."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    @classmethod
    async def open(cls, target: str) -> AioReader:
        """Connect to the URI `target`; raises sqlite3's error if that fails."""
        threads: list[threading.Thread] = []

        def connector() -> sqlite3.Connection:
            threads.append(threading.current_thread())  # aiosqlite's worker
            return sqlite3.connect(target, isolation_level=None, uri=True)

        conn = aiosqlite.Connection(connector, 64)
        try:
            await conn
        except sqlite3.Error:
            # aiosqlite stops its worker after a failed connect; left to finish after the event
            # loop closed, the worker would print a traceback ("Event loop is closed").
            for _ in range(2000):
                if not threads or not threads[0].is_alive():
                    break
                await asyncio.sleep(0.0005)
            raise
        return cls(conn)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return cast("list[Row]", list(await self._conn.execute_fetchall(sql, params)))

    async def close(self) -> None:
        await self._conn.close()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.stop()
