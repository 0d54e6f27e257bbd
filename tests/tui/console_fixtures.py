"""Console test fixtures: a pipelines folder, a temp database, the console on them. Autouse
fixtures remove nondeterminism (cursor blink). Helpers live in `console_helpers`.

`conftest.py` beside this file only re-exports these: two files named conftest.py would be
one module name twice to mypy, so the fixtures live here where mypy checks them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from seeding import pipelines_dir as make_pipelines_dir
from textual.widgets import Input

from engine.breaker import BreakerRegistry
from tui.app import InterlockApp
from tui.bridge import Bridge

__all__ = ["db", "make_app", "no_cursor_blink", "pipelines"]

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


@pytest.fixture(autouse=True)
def no_cursor_blink(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Input, "cursor_blink", False)


@pytest.fixture
def pipelines(tmp_path: Path) -> Path:
    return make_pipelines_dir(tmp_path / "pipelines")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


@pytest.fixture
def make_app(pipelines: Path, db: Path) -> Callable[..., InterlockApp]:
    """The console on the temp database, polling fast so tests need not wait long."""

    def make(*, ascii: bool = False, **bridge: Any) -> InterlockApp:
        bridge.setdefault("poll_interval", 0.25)
        bridge.setdefault("flush_interval", 0.05)
        bridge.setdefault("actor", "operator:tester")
        bridge.setdefault("manager_options", {"breakers": BreakerRegistry()})
        return InterlockApp(
            pipelines_dir=pipelines,
            db_path=db,
            ascii=ascii,
            bridge=Bridge(db, search_path=str(pipelines), **bridge),
        )

    return make
