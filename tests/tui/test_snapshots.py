"""Snapshot tests of the main screens at 120x36 and 80x24 (`pytest --snapshot-update` to
accept a change after looking at it). Deterministic: seeded runs with fixed ids and a fake
clock, a console clock that stands still, no cursor blink."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import seeding
from scenes import (
    breakers,
    diff_view,
    help_screen,
    home,
    launch,
    node_detail,
    node_test,
    playback,
    run_view,
    timeline,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from textual.pilot import Pilot

    from tui.app import InterlockApp

WIDE, SMALL = (120, 36), (80, 24)


@pytest.fixture(scope="session")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("seeded")
    pipelines = seeding.pipelines_dir(root / "pipelines")
    asyncio.run(seeding.seed(root / "runs.db", pipelines))
    return root / "runs.db", pipelines


@pytest.fixture
def console(
    seeded: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> InterlockApp:
    """The console on a copy of the seeded database; paths are relative, so the screens show
    the same text wherever the test runs."""
    db, pipelines = seeded
    shutil.copy(db, tmp_path / "runs.db")
    shutil.copytree(pipelines, tmp_path / "pipelines")
    monkeypatch.chdir(tmp_path)
    return seeding.console(Path("runs.db"), Path("pipelines"), events=EVENTS_CLOCK[0])


EVENTS_CLOCK: list[seeding.FakeClock] = [seeding.FakeClock()]


@pytest.fixture(autouse=True)
def frozen_events() -> None:
    # Event timestamps, and so run deadlines, come from this clock.
    EVENTS_CLOCK[0] = seeding.FakeClock(seeding.START + 540.0)


SCREENS: dict[str, Callable[[Pilot[Any]], Awaitable[None]]] = {
    "home": home,
    "run": run_view,
    "node": node_detail,
    "breakers": breakers,
    "playback": playback,
    "help": help_screen,
    "launch": launch,
    "diff": diff_view,
    "timeline": timeline,
    "node-test": node_test,
}


@pytest.mark.parametrize("name", list(SCREENS))
def test_screens_at_120x36(name: str, console: InterlockApp, snap_compare: Any) -> None:
    assert snap_compare(console, terminal_size=WIDE, run_before=SCREENS[name])


@pytest.mark.parametrize("name", ["home", "run", "launch", "timeline"])
def test_screens_at_80x24(name: str, console: InterlockApp, snap_compare: Any) -> None:
    assert snap_compare(console, terminal_size=SMALL, run_before=SCREENS[name])
