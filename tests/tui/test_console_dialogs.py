"""Dialogs and navigation as an operator drives them: enter does the main action, simulate is
never ticked by enter, `l` in a run view offers that run's pipeline, screens do not pile up,
escape undoes a filter before it leaves, a reject needs a reason."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from console_helpers import (
    SIZE,
    MakeApp,
    app_of,
    screen_text,
    start,
    wait_for_text,
    wait_until,
)

from engine.state import NodeStatus
from tui.screens.home import HomeScreen
from tui.screens.launch import LaunchScreen, SimulateBox
from tui.screens.node import NodeScreen
from tui.screens.run import RunScreen

if TYPE_CHECKING:
    import pytest


async def open_launch(pilot: object) -> LaunchScreen:
    app = app_of(pilot)  # type: ignore[arg-type]
    await wait_until(pilot, lambda: app.bridge.ready, what="the database")  # type: ignore[arg-type]
    await pilot.press("l")  # type: ignore[attr-defined]
    await wait_until(pilot, lambda: isinstance(app.screen, LaunchScreen))  # type: ignore[arg-type]
    screen = app.screen
    assert isinstance(screen, LaunchScreen)
    return screen


async def test_l_then_enter_launches_a_real_run(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_launch(pilot)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen), what="the run view")
        screen = app.screen
        assert isinstance(screen, RunScreen)
        state = await app.bridge.run_state(screen.run_id)
    assert not state.simulate


async def test_enter_on_the_simulate_box_launches_without_ticking_it(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        launch = await open_launch(pilot)
        launch.picker.value = "hello"
        await pilot.pause()
        launch.query_one(SimulateBox).focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen), what="the run view")
        screen = app.screen
        assert isinstance(screen, RunScreen)
        state = await app.bridge.run_state(screen.run_id)
    assert not state.simulate


async def test_space_still_ticks_simulate(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        launch = await open_launch(pilot)
        box = launch.query_one(SimulateBox)
        box.focus()
        await pilot.press("space")
        assert box.value
        assert "simulate: ON" in screen_text(app)


async def test_l_in_a_run_view_offers_that_runs_pipeline(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot, "slow")
        await wait_for_text(pilot, "▶ nap")
        launch = await open_launch(pilot)
        assert launch.picker.value == "slow"
        await pilot.press("escape")
        await app.bridge.close()


async def test_launches_from_run_views_keep_one_escape_from_home(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        first = await start(pilot, "hello")
        seen = {first}
        for _ in range(3):
            await open_launch(pilot)
            await pilot.press("enter")  # hello again: its param is focused, enter launches

            def new_view() -> bool:
                screen = app.screen
                return isinstance(screen, RunScreen) and screen.run_id not in seen

            await wait_until(pilot, new_view, what="a new run view")
            assert isinstance(app.screen, RunScreen)
            seen.add(app.screen.run_id)
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, HomeScreen), what="home")
        assert sum(isinstance(s, RunScreen) for s in app.screen_stack) == 0


async def test_capital_h_goes_home_from_a_nodes_detail(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot, "hello")
        await wait_for_text(pilot, "SUCCEEDED")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, NodeScreen))
        await pilot.press("H")
        await wait_until(pilot, lambda: isinstance(app.screen, HomeScreen), what="home")
        assert len(app.screen_stack) == 2  # the default screen and home


async def test_escape_clears_the_log_filter_before_leaving_the_run_view(
    make_app: MakeApp,
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot, "hello")
        await wait_for_text(pilot, "run.completed")
        await pilot.press("slash", *"shout |", "enter")  # applied; the focus is on the log now
        await wait_until(pilot, lambda: "node.started" not in screen_text(app))
        await pilot.press("escape")
        await wait_for_text(pilot, "node.started")
        assert isinstance(app.screen, RunScreen)
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, HomeScreen), what="home")


async def test_a_reject_without_a_reason_is_refused_in_place(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        run_id = await start(pilot, "approval")
        await wait_for_text(pilot, "⏸ publish_gate")
        await pilot.press("x")
        await wait_for_text(pilot, "Reject publish_gate")
        await pilot.press("enter")
        await wait_for_text(pilot, "a reason is required")
        state = await app.bridge.run_state(run_id)
        assert state.nodes["publish_gate"].state is NodeStatus.WAITING
        await pilot.press(*"wrong build", "enter")
        await wait_for_text(pilot, "FAILED")
        state = await app.bridge.run_state(run_id)
    assert state.nodes["publish_gate"].decision is not None
    assert state.nodes["publish_gate"].decision.get("reason") == "wrong build"


async def test_l_pressed_while_the_database_opens_opens_the_dialog_once_it_is_open(
    make_app: MakeApp,
) -> None:
    app = make_app()
    opened = app.bridge.open
    release = asyncio.Event()

    async def slow_open() -> None:  # a database that takes its time (a busy disk, a big file)
        await release.wait()
        await opened()

    app.bridge.open = slow_open  # type: ignore[method-assign]
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert not app.bridge.ready
        await pilot.press("l")
        await pilot.press("l")  # twice, impatiently
        await pilot.pause()
        assert not isinstance(app.screen, LaunchScreen)
        release.set()
        await wait_until(pilot, lambda: isinstance(app.screen, LaunchScreen), what="the dialog")
        await pilot.pause(0.2)
        assert sum(isinstance(s, LaunchScreen) for s in app.screen_stack) == 1


async def test_the_unticked_simulate_box_shows_no_mark_in_ascii_and_without_colour(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without colour the mark is the tick: `[ ] simulate: off`, `[x] simulate: ON` (it drew
    `[x] simulate: off`)."""
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(ascii=True)
    async with app.run_test(size=SIZE) as pilot:
        launch = await open_launch(pilot)
        await pilot.pause()
        assert "[ ] simulate: off" in screen_text(app)
        box = launch.query_one(SimulateBox)
        box.focus()
        await pilot.press("space")
        await pilot.pause()
        assert "[x] simulate: ON" in screen_text(app)
        await pilot.press("space")
        await pilot.pause()
        assert "[ ] simulate: off" in screen_text(app)


async def test_the_unticked_simulate_box_shows_no_mark_in_unicode_either(
    make_app: MakeApp,
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        launch = await open_launch(pilot)
        await pilot.pause()
        line = next(x for x in screen_text(app).splitlines() if "simulate: off" in x)
        assert "X" not in line.split("simulate")[0], line
        launch.query_one(SimulateBox).focus()
        await pilot.press("space")
        await pilot.pause()
        line = next(x for x in screen_text(app).splitlines() if "simulate: ON" in x)
        assert "X" in line.split("simulate")[0], line
