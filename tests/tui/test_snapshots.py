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
from console_helpers import app_of, wait_until

from engine.loader import load_file
from tui.screens.breakers import BreakersScreen
from tui.screens.node import NodeScreen
from tui.screens.playback import PlaybackScreen
from tui.screens.run import RunScreen

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from textual.pilot import Pilot

    from tui.app import InterlockApp

WIDE, SMALL = (120, 36), (80, 24)
MIDFLIGHT = seeding.run_id("midflight")


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


async def settle(pilot: Pilot[Any]) -> None:
    app = app_of(pilot)
    await pilot.pause(0.1)
    await app.workers.wait_for_complete()
    await pilot.pause(0.1)


async def midflight(pilot: Pilot[Any]) -> InterlockApp:
    """Launch the mid-flight run in the console and wait until its long step runs."""
    app = app_of(pilot)
    await wait_until(pilot, lambda: app.bridge.ready)
    # The seeded runs are listed before the new one arrives, so the cursor stays on the newest
    # seeded run (the table keeps the cursor on its run), every time.
    await wait_until(pilot, lambda: len(app.bridge.runs) >= 7)
    await pilot.pause(0.3)
    pipeline = load_file(app.ctx.pipelines_dir / "midflight.yaml")
    await app.bridge.launch(pipeline, {}, run_id=MIDFLIGHT)

    async def crunching() -> bool:
        state = await app.bridge.run_state(MIDFLIGHT)
        return state.nodes["crunch"].state.value == "running"

    await wait_until(pilot, crunching, what="crunch to run")
    await pilot.pause(0.3)
    return app


async def home(pilot: Pilot[Any]) -> None:
    app = await midflight(pilot)
    await wait_until(
        pilot,
        lambda: any(r.run_id == MIDFLIGHT and r.state == "running" for r in app.bridge.runs),
        what="the runs table to list the run",
    )
    await settle(pilot)


async def run_view(pilot: Pilot[Any]) -> None:
    app = await midflight(pilot)
    await app.push_screen(RunScreen(app.ctx, MIDFLIGHT))
    await wait_until(
        pilot,
        lambda: isinstance(app.screen, RunScreen) and app.screen.dag.current_layout is not None,
        what="the DAG",
    )
    await settle(pilot)
    await pilot.press("down", "down")  # select crunch: its timeout countdown in the status line
    await settle(pilot)


async def node_detail(pilot: Pilot[Any]) -> None:
    await run_view(pilot)
    app = app_of(pilot)
    screen = app.screen
    assert isinstance(screen, RunScreen)
    await app.push_screen(NodeScreen(app.ctx, MIDFLIGHT, "fetch", screen.infos))
    await settle(pilot)


async def breakers(pilot: Pilot[Any]) -> None:
    app = await midflight(pilot)
    await wait_until(
        pilot,
        lambda: app.bridge.breakers.get("midflight/probe") is not None
        and app.bridge.breakers["midflight/probe"].state == "open",
        what="the open breaker",
    )
    await app.push_screen(BreakersScreen(app.ctx))
    await settle(pilot)


async def playback(pilot: Pilot[Any]) -> None:
    app = app_of(pilot)
    await wait_until(pilot, lambda: app.bridge.ready)
    await app.push_screen(PlaybackScreen(app.ctx, seeding.run_id("approval-rejected")))
    await settle(pilot)
    await pilot.press(*["right"] * 9)
    await settle(pilot)


async def help_screen(pilot: Pilot[Any]) -> None:
    await pilot.press("question_mark")
    await settle(pilot)


async def launch(pilot: Pilot[Any]) -> None:
    app = app_of(pilot)
    await wait_until(pilot, lambda: app.bridge.ready)
    await pilot.press("l")
    await settle(pilot)


SCREENS: dict[str, Callable[[Pilot[Any]], Awaitable[None]]] = {
    "home": home,
    "run": run_view,
    "node": node_detail,
    "breakers": breakers,
    "playback": playback,
    "help": help_screen,
    "launch": launch,
}


@pytest.mark.parametrize("name", list(SCREENS))
def test_screens_at_120x36(name: str, console: InterlockApp, snap_compare: Any) -> None:
    assert snap_compare(console, terminal_size=WIDE, run_before=SCREENS[name])


@pytest.mark.parametrize("name", ["home", "run", "launch"])
def test_screens_at_80x24(name: str, console: InterlockApp, snap_compare: Any) -> None:
    assert snap_compare(console, terminal_size=SMALL, run_before=SCREENS[name])
