"""`--ascii` draws only ASCII, on every screen: texts, marks, bars, borders, scrollbars, the
footer's key names, the checkbox, the select and the command palette."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
from console_helpers import MakeApp, screen_text, start, wait_for_text, wait_until

from engine.store import BreakerRecord, Store
from tui.screens.breakers import BreakersScreen
from tui.screens.help import HelpScreen
from tui.screens.home import HomeScreen
from tui.screens.launch import LaunchScreen
from tui.screens.node import NodeScreen
from tui.screens.playback import PlaybackScreen
from tui.screens.run import RunScreen

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
