"""The SQLite store backend: one file, WAL, one connection thread, group commit.

Modules, in the order a newcomer might read them: `store` (the `Store` class and its opening and
closing), `writer` (group commit, fail-closed), `batch` (a batch's transaction, failure
isolation, the lease check), `control` (leases, commands, breakers, schedule fires), `reads`,
`sql` (every statement), `schema` (`engine/schema.sql` and its migrations), `connection` (the
connection's thread), `base` (what the layers share).
"""

from __future__ import annotations

from engine.store.sqlite.store import Store

SQLiteStore = Store

__all__ = ["SQLiteStore", "Store"]
