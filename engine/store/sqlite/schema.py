"""The SQLite store's schema: `engine/schema.sql`, its versions, and the check on open.

Contract: `schema.sql` is split into ordered `-- migration N` sections; `migrations()` returns
them (entry N-1 makes version N) and `SCHEMA_VERSION` is their count. `check_schema` runs when a
store opens: a file of another application, or one written by a newer Interlock, raises
`StoreError` naming the path; an older version is migrated one section per transaction
(`PRAGMA user_version`, `PRAGMA application_id` set in the same transaction), re-reading the
version under the write lock because another process may have migrated meanwhile. A read-only
store migrates nothing: an old file asks to be opened once for writing.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
import sqlite3
from typing import TYPE_CHECKING, Final

from engine.store.rows import StoreError
from engine.store.sqlite.connection import SQLiteThread, in_transaction
from engine.store.sqlite.sql import (
    SQL_APPLICATION_ID,
    SQL_COUNT_OBJECTS,
    SQL_USER_VERSION,
)

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from engine.store.sqlite.connection import Connection

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "check_schema", "migrations"]

# "ILK1": marks the file as an Interlock database (`PRAGMA application_id`).
APPLICATION_ID: Final = 0x494C4B31

_MIGRATION_HEADER = re.compile(r"^-- migration (\d+)[ \t]*$", re.MULTILINE)


def split_statements(script: str) -> list[str]:
    """The SQL statements of `script`, in order (comments between statements dropped)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        if not buffer and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        raise RuntimeError(f"schema.sql ends inside a statement: {buffer.strip()[:60]!r}")
    return statements


def parse_migrations(text: str) -> tuple[tuple[str, ...], ...]:
    """`schema.sql` as its migrations: entry N-1 holds the statements that make version N."""
    parts = _MIGRATION_HEADER.split(text)
    numbers = [int(n) for n in parts[1::2]]
    if numbers != list(range(1, len(numbers) + 1)):
        raise RuntimeError(f"schema.sql migrations must be numbered 1, 2, 3...; found {numbers}")
    return tuple(tuple(split_statements(body)) for body in parts[2::2])


@functools.cache
def migrations() -> tuple[tuple[str, ...], ...]:
    text = importlib.resources.files("engine").joinpath("schema.sql").read_text("utf-8")
    return parse_migrations(text)


SCHEMA_VERSION: Final = len(migrations())


async def check_schema(conn: Connection, path: Path, *, readonly: bool) -> None:
    """Refuse a stranger's or a newer file; migrate an older one (see the module's contract)."""
    steps = migrations()
    latest = len(steps)
    version = int((await conn.fetchall(SQL_USER_VERSION))[0][0])
    app_id = int((await conn.fetchall(SQL_APPLICATION_ID))[0][0])
    if app_id not in (0, APPLICATION_ID):
        raise StoreError(f"{path} is an SQLite database of another application, not Interlock's")
    if version > latest:
        raise StoreError(
            f"the database at {path} was created by a newer interlock (schema version "
            f"{version}, this one knows up to {latest}); upgrade interlock to open it"
        )
    if version == latest:
        return
    if version == 0 and (readonly or not isinstance(conn, SQLiteThread)):
        raise StoreError(f"{path} is not an Interlock database (it has no Interlock schema)")
    if readonly or not isinstance(conn, SQLiteThread):
        raise StoreError(
            f"the database at {path} is at schema version {version} and needs "
            f"upgrading to {latest}; open it once without read-only first"
        )
    for number, statements in enumerate(steps, start=1):
        if number > version:
            await conn.run(functools.partial(_migrate, path, number, statements))


def _migrate(path: Path, number: int, statements: Sequence[str], db: sqlite3.Connection) -> None:
    """Make version `number` in one transaction (on the connection's thread)."""

    def step(db: sqlite3.Connection) -> None:
        # Another process may have migrated while we waited for the write lock.
        current = db.execute(SQL_USER_VERSION).fetchone()[0]
        if current < number:
            if current == 0 and db.execute(SQL_COUNT_OBJECTS).fetchone()[0]:
                raise StoreError(
                    f"{path} is an SQLite database but not an Interlock one "
                    "(it has tables and no Interlock schema version)"
                )
            for statement in statements:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {number:d}")
            db.execute(f"PRAGMA application_id = {APPLICATION_ID:d}")

    in_transaction(step, db)
