"""The durable event store: a backend seam (`protocol.StoreBackend`) and its SQLite backend.

Contract: `Store` is the SQLite backend (`engine.store.sqlite`), the one class that owns the
database and every SQL statement of the project; nothing else writes SQL. What every backend
promises (group commit where "acknowledged" means committed, failure isolation, fail-closed
writing, leases with fencing, reads that never write, commands, breakers, schedule fires) is
stated in `protocol` and checked for each backend by `tests/contract/`. The values a store hands
out (`RunRow`, `Owner`, `Command`, `BreakerRecord`) and its error (`StoreError`) are the same
for every backend. The events are the source of truth: the `runs` table is an index over them,
written in the same transaction as the events it is derived from (`fold_run` folds the events).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.breaker import BreakerRecord
from engine.store.rows import COMMAND_KINDS, Command, Owner, RunRow, StoreError
from engine.store.sqlite.batch import event_row as _event_row
from engine.store.sqlite.connection import BUSY_TIMEOUT_SECONDS
from engine.store.sqlite.schema import APPLICATION_ID, SCHEMA_VERSION, migrations
from engine.store.sqlite.sql import SQL_INSERT_EVENT
from engine.store.sqlite.store import Store

if TYPE_CHECKING:
    from engine.store.protocol import StoreBackend

SQLiteStore = Store


def __getattr__(name: str) -> object:
    # The protocol is for type checkers and the contract suite: not loaded with the store.
    if name == "StoreBackend":
        from engine.store.protocol import StoreBackend

        return StoreBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "APPLICATION_ID",
    "BUSY_TIMEOUT_SECONDS",
    "COMMAND_KINDS",
    "SCHEMA_VERSION",
    "SQL_INSERT_EVENT",
    "BreakerRecord",
    "Command",
    "Owner",
    "RunRow",
    "SQLiteStore",
    "Store",
    "StoreBackend",
    "StoreError",
    "_event_row",
    "migrations",
]
