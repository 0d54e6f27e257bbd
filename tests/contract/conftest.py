"""The store backends the contract suite runs against, as the parametrized `backend` fixture.

A backend is named in `BACKENDS` and made by `make_backend`: it gives new, unopened stores on
one fresh database (`Backend.make`), and a `footprint` of that database that changes whenever
anything is written to it (to check that reads never write). Adding a backend (PostgreSQL next)
means a name here and a branch in `make_backend`; the suite itself states the contract once,
through `engine.store.protocol.StoreBackend` only.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from engine.store import Store

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from engine.store.protocol import StoreBackend

BACKENDS = ["sqlite"]


@dataclass(frozen=True)
class Backend:
    """One backend on one fresh database."""

    name: str
    make: Callable[..., StoreBackend]  # a new, unopened store on the database (options: kwargs)
    footprint: Callable[[], Any]  # the stored data: changes whenever anything is written


def _sqlite(tmp_path: Path) -> Backend:
    db = tmp_path / "contract.db"

    def footprint() -> str:
        # Every row of every table, as SQL text: any write a reader might make shows.
        conn = sqlite3.connect(db.absolute().as_uri() + "?mode=ro", uri=True)
        try:
            return "\n".join(conn.iterdump())
        finally:
            conn.close()

    def make(**options: Any) -> StoreBackend:
        return Store(db, **options)

    return Backend("sqlite", make, footprint)


def make_backend(name: str, tmp_path: Path) -> Backend:
    if name == "sqlite":
        return _sqlite(tmp_path)
    raise ValueError(f"no such store backend: {name}")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return make_backend(str(request.param), tmp_path)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[StoreBackend]:
    async with backend.make() as opened:
        yield opened
