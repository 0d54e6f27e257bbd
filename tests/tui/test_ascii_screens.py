"""`--ascii` draws only ASCII, on every screen: texts, marks, bars, borders, scrollbars, the
footer's key names, the checkbox, the select and the command palette."""

from __future__ import annotations

import shutil
import time
from typing import TYPE_CHECKING, Any

import pytest
from console_helpers import (
    MakeApp,
    cancel_into_grace,
    screen_text,
    start,
    start_holding,
    wait_for_text,
    wait_until,
)
from seeding import TEST_PIPELINES

from engine.store import BreakerRecord, Store
from tui.screens.breakers import BreakersScreen
from tui.screens.diff import DiffScreen
from tui.screens.help import HelpScreen
from tui.screens.home import HomeScreen
from tui.screens.launch import LaunchScreen
from tui.screens.node import NodeScreen
from tui.screens.node_test import NodeTestScreen
from tui.screens.playback import PlaybackScreen
from tui.screens.quitting import QuittingScreen
from tui.screens.retry import RetryScreen
from tui.screens.run import RunScreen
from tui.screens.timeline import TimelineScreen

if TYPE_CHECKING:
    from pathlib import Path

    from textual.pilot import Pilot


def not_ascii(pilot: Pilot[Any]) -> str:
    """The characters above 126 on the screen, and the lines they are on."""
    text = screen_text(pilot.app)
    lines = [line for line in text.splitlines() if not line.isascii()]
    return "\n".join(lines)


@pytest.mark.parametrize("size", [(120, 36), (80, 24)])
async def test_every_screen_is_plain_ascii_with_ascii_on(
    make_app: MakeApp, db: Path, size: tuple[int, int]
) -> None:
    now = time.time()
    async with Store(db) as store:  # a breaker to list, in its cool-down
        await store.save_breaker(BreakerRecord("flaky/always_down", "open", 3, now, 60.0, now))
    app = make_app(ascii=True)
    seen: list[str] = []

    async def check(pilot: Pilot[Any], name: str) -> None:
        await pilot.pause(0.2)
        seen.append(name)
        assert not_ascii(pilot) == "", f"{name} at {size} draws non-ASCII"

    async with app.run_test(size=size) as pilot:
        await wait_until(pilot, lambda: app.bridge.ready, what="the database")
        await wait_for_text(pilot, "valid")
        await check(pilot, "home")
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await check(pilot, "help")
        await pilot.press("escape", "b")
        await wait_until(pilot, lambda: isinstance(app.screen, BreakersScreen))
        await wait_for_text(pilot, "flaky/always_down")
        await check(pilot, "breakers")
        await pilot.press("escape", "l")
        await wait_until(pilot, lambda: isinstance(app.screen, LaunchScreen))
        await check(pilot, "launch")
        await pilot.press("escape")
        await start(pilot, "slow")
        await wait_for_text(pilot, "nap")
        await pilot.pause(1.2)  # a tick: the timeout bar is drawn
        await check(pilot, "run view, a node running")
        await pilot.press("slash", "x")
        await check(pilot, "run view, its log filter")
        await pilot.press("escape", "c")
        await wait_for_text(pilot, "Cancel run")
        await check(pilot, "cancel dialog")
        await pilot.press("escape", "x")
        await check(pilot, "the refusal of a reject")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, NodeScreen))
        await check(pilot, "node detail")
        await pilot.press("escape", "p")
        await wait_until(pilot, lambda: isinstance(app.screen, PlaybackScreen))
        await check(pilot, "playback")
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen))
        await pilot.press("ctrl+p")
        await pilot.pause(0.3)
        await pilot.press("c", "a")
        await check(pilot, "command palette")
        await pilot.press("escape")
        await pilot.press("H")
        await wait_until(pilot, lambda: isinstance(app.screen, HomeScreen))
        await check(pilot, "home with a run")
        await start(pilot, "hello", who="wörld ✓")  # what a node prints is not ours to draw
        await wait_for_text(pilot, "SUCCEEDED")
        await check(pilot, "run view, non-ASCII output")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, NodeScreen))
        await check(pilot, "node detail, non-ASCII output")
        await app.bridge.close()
    assert len(seen) == 14


@pytest.mark.parametrize("size", [(120, 36), (80, 24)])
async def test_the_tool_screens_and_dialogs_are_plain_ascii_and_keep_help_and_quit(
    make_app: MakeApp, pipelines: Path, size: tuple[int, int]
) -> None:
    """The timeline, the diff, a node's test alone and its full-screen log, the retry and
    force-kill dialogs and the quitting notice: only ASCII with `--ascii`, and every full
    screen's footer keeps `? Help` and `q Quit` at 80x24 too."""
    shutil.copy(TEST_PIPELINES / "stubborn.yaml", pipelines / "stubborn.yaml")
    app = make_app(ascii=True)
    seen: list[str] = []

    async def check(pilot: Pilot[Any], name: str, *, footer: bool = True) -> None:
        await pilot.pause(0.2)
        seen.append(name)
        assert not_ascii(pilot) == "", f"{name} at {size} draws non-ASCII"
        if footer:
            last = screen_text(pilot.app).splitlines()[-1]
            assert "? Help" in last and "q Quit" in last, f"{name} at {size}: {last!r}"

    async with app.run_test(size=size) as pilot:
        await wait_until(pilot, lambda: app.bridge.ready, what="the database")
        await start(pilot, "hello", who="a")
        await wait_for_text(pilot, "SUCCEEDED")
        await start(pilot, "hello", who="b")
        await wait_for_text(pilot, "SUCCEEDED")
        await wait_until(pilot, lambda: len(app.bridge.runs) == 2, what="both runs listed")
        await pilot.press("T")
        await wait_until(pilot, lambda: isinstance(app.screen, TimelineScreen))
        await wait_for_text(pilot, "Timeline")
        await check(pilot, "timeline")
        await pilot.press("escape", "d")
        await wait_until(pilot, lambda: isinstance(app.screen, DiffScreen), what="the diff")
        await check(pilot, "diff")
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen))
        app.screen.dag.select("shout")  # type: ignore[attr-defined]
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, NodeScreen))
        await pilot.press("L")
        await check(pilot, "full-screen log")
        await pilot.press("escape", "t")
        await wait_until(pilot, lambda: isinstance(app.screen, NodeTestScreen))
        await wait_for_text(pilot, "succeeded")
        await check(pilot, "node test alone")
        await pilot.press("escape", "escape")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen))

        await start_holding(pilot)
        await cancel_into_grace(pilot)
        await pilot.press("T")
        await wait_for_text(pilot, "CANCELLING")
        await check(pilot, "timeline of a cancel in its grace")
        await pilot.press("escape", "K")
        await wait_for_text(pilot, "Kill the nodes")
        await check(pilot, "force-kill dialog", footer=False)
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen))
        await pilot.press("q")
        await wait_for_text(pilot, "Quit and cancel")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, QuittingScreen))
        await wait_for_text(pilot, "SIGKILL within")
        await check(pilot, "quitting notice", footer=False)
        await pilot.press("K")
        await wait_until(pilot, lambda: not app.is_running, timeout=20, what="the app to exit")
    assert len(seen) == 7


@pytest.mark.parametrize("size", [(120, 36), (80, 24)])
async def test_the_retry_dialog_is_plain_ascii_and_its_keys_work(
    make_app: MakeApp, size: tuple[int, int]
) -> None:
    """`f` on a cancelled run: only ASCII; the key the No button names (`n`) says no."""
    app = make_app(ascii=True)
    async with app.run_test(size=size) as pilot:
        run_id = await start(pilot, "slow")
        await wait_for_text(pilot, "nap")
        await app.bridge.cancel(run_id)
        await wait_for_text(pilot, "CANCELLED")
        await pilot.press("f")
        await wait_until(pilot, lambda: isinstance(app.screen, RetryScreen), what="the dialog")
        await wait_for_text(pilot, "Runs again")
        await pilot.pause(0.2)
        assert not_ascii(pilot) == "", f"the retry dialog at {size} draws non-ASCII"
        assert "Keep (n)" in screen_text(app)
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen), what="the run view")
        await pilot.pause(0.3)
        runs = await app.bridge.store.list_runs()
    assert [r.run_id for r in runs] == [run_id]
