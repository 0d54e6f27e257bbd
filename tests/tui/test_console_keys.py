"""Pilot tests of every key action, on real engine runs in a temp database."""

from __future__ import annotations

from typing import TYPE_CHECKING

from console_helpers import (
    SIZE,
    launch,
    open_home_run,
    screen_text,
    start,
    wait_for_text,
    wait_until,
)
from seeding import interrupted_run

from engine.state import NodeStatus, RunStatus
from engine.store import Store
from tui.keys import COMMANDS
from tui.screens.breakers import BreakersScreen
from tui.screens.help import HelpScreen
from tui.screens.home import HomeScreen
from tui.screens.launch import LaunchScreen
from tui.screens.playback import PlaybackScreen
from tui.screens.run import RunScreen

if TYPE_CHECKING:
    from pathlib import Path

    from console_helpers import MakeApp



async def test_launch_with_an_edited_param_runs_it_with_that_value(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        run_id = await launch(pilot, "hello", who="pilot")
        await wait_for_text(pilot, "SUCCEEDED")
        state = await app.bridge.run_state(run_id)
        assert state.params == {"who": "pilot"}
        assert state.nodes["shout"].output == {"shout": "HELLO, PILOT!"}
        assert "✔ done" in screen_text(app)


async def test_cancel_asks_then_cancels_the_running_run(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        run_id = await start(pilot, "slow")
        await wait_for_text(pilot, "▶ nap")
        await pilot.press("c")
        await wait_for_text(pilot, "Cancel run")
        await pilot.press("y")
        await wait_for_text(pilot, "CANCELLED")
        state = await app.bridge.run_state(run_id)
        assert state.state is RunStatus.CANCELLED
        assert state.nodes["nap"].state is NodeStatus.CANCELLED
        events = await app.bridge.load_events(run_id)
        assert events[-1].actor == "operator:tester"


async def test_declining_the_cancel_leaves_the_run_running(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        run_id = await start(pilot, "slow")
        await wait_for_text(pilot, "▶ nap")
        await pilot.press("c")
        await wait_for_text(pilot, "Cancel run")
        await pilot.press("n")
        await pilot.pause(0.3)
        assert app.bridge.is_running_here(run_id)


async def test_replay_starts_a_linked_run_and_shows_it(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        first = await start(pilot, "hello", who="again")
        await wait_for_text(pilot, "SUCCEEDED")
        await pilot.press("r")
        await wait_for_text(pilot, "Replay run")  # it asks first: the work runs again
        await pilot.press("enter")
        await wait_until(
            pilot,
            lambda: isinstance(app.screen, RunScreen) and app.screen.run_id != first,
            what="the replay's run view",
        )
        await wait_for_text(pilot, f"replay of {first[:8]}")
        await wait_for_text(pilot, "SUCCEEDED")
        screen = app.screen
        assert isinstance(screen, RunScreen)
        state = await app.bridge.run_state(screen.run_id)
        assert state.replay_of == first
        assert state.params == {"who": "again"}


async def test_resume_continues_an_interrupted_run(
    make_app: MakeApp, db: Path, pipelines: Path
) -> None:
    run_id = await interrupted_run(db, pipelines / "hello.yaml", "a" * 32)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_text(pilot, "↯ interrupted")
        await open_home_run(pilot, run_id)
        await wait_for_text(pilot, "INTERRUPTED")
        await pilot.press("R")
        await wait_for_text(pilot, "Resume run")  # it asks first: running work may run twice
        await pilot.press("enter")
        await wait_for_text(pilot, "SUCCEEDED")
        state = await app.bridge.run_state(run_id)
        assert state.run_attempt == 2
        assert all(n.state is NodeStatus.SUCCEEDED for n in state.nodes.values())


async def test_approve_records_the_operator_and_lets_the_run_finish(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        run_id = await start(pilot, "approval")
        await wait_for_text(pilot, "⏸ publish_gate")
        await pilot.press("a")
        await wait_for_text(pilot, "Approve publish_gate")
        await pilot.press(*"looks good", "enter")
        await wait_for_text(pilot, "SUCCEEDED")
        state = await app.bridge.run_state(run_id)
        decision = state.nodes["publish_gate"].decision
        assert decision is not None
        assert decision["decision"] == "approved"
        assert decision["actor"] == "operator:tester"
        assert decision["at"]
        assert decision.get("reason") == "looks good"


async def test_reject_asks_for_a_reason_and_fails_the_approval(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        run_id = await start(pilot, "approval")
        await wait_for_text(pilot, "⏸ publish_gate")
        await pilot.press("x")
        await wait_for_text(pilot, "Reject publish_gate")
        await pilot.press(*"nope", "enter")
        await wait_for_text(pilot, "FAILED")
        state = await app.bridge.run_state(run_id)
        gate = state.nodes["publish_gate"]
        assert gate.state is NodeStatus.FAILED
        assert gate.error_class == "rejected"
        assert gate.decision is not None
        assert gate.decision["actor"] == "operator:tester"
        assert gate.decision["reason"] == "nope"


async def test_playback_scrubs_through_a_stored_run(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        run_id = await start(pilot, "hello")
        await wait_for_text(pilot, "SUCCEEDED")
        total = len(await app.bridge.load_events(run_id))
        await pilot.press("p")
        await wait_until(pilot, lambda: isinstance(app.screen, PlaybackScreen))
        screen = app.screen
        assert isinstance(screen, PlaybackScreen)
        await wait_for_text(pilot, f"event 1/{total}")
        await pilot.press("right", "right")
        await wait_for_text(pilot, f"event 3/{total}")
        assert "▶ greet" in screen_text(app)  # folded at 3 events: greet has started
        await pilot.press("left")
        await wait_for_text(pilot, f"event 2/{total}")
        await pilot.press("end")
        await wait_for_text(pilot, f"event {total}/{total}")
        assert "✔ done" in screen_text(app)
        await pilot.press("home", "plus", "plus")
        await wait_for_text(pilot, f"at 5x   event 1/{total}")
        await pilot.press("space")  # plays to the end, then pauses
        await wait_for_text(pilot, f"⏸ paused at 5x   event {total}/{total}", timeout=10)
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen))


async def test_breakers_screen_shows_an_open_breaker_and_resets_it(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot, "flaky")
        await wait_for_text(pilot, "SUCCEEDED")
        await pilot.press("b")
        await wait_until(pilot, lambda: isinstance(app.screen, BreakersScreen))
        await wait_for_text(pilot, "flaky/always_down")
        assert "open" in screen_text(app)
        screen = app.screen
        assert isinstance(screen, BreakersScreen)
        screen.table.move_cursor(row=screen.table.get_row_index("flaky/always_down"))
        await pilot.press("enter")
        await wait_for_text(pilot, "Reset breaker flaky/always_down?")
        await pilot.press("y")
        await wait_until(
            pilot,
            lambda: app.bridge.breakers.get("flaky/always_down") is None
            or app.bridge.breakers["flaky/always_down"].state == "closed",
            what="the breaker to close",
        )
        snapshot = {s.key: s for s in app.bridge.manager.breakers.snapshots()}
        assert snapshot["flaky/always_down"].state == "closed"
        stored = (await app.bridge.store.load_breakers()).get("flaky/always_down")
        assert stored is None or (stored.state, stored.failures) == ("closed", 0)


async def test_slash_filters_the_runs_and_escape_clears_it(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot, "hello")
        await wait_for_text(pilot, "SUCCEEDED")
        await pilot.press("escape")
        await start(pilot, "approval")
        await wait_for_text(pilot, "⏸ publish_gate")
        await pilot.press("escape")
        await wait_for_text(pilot, "Runs  (2 of 2")
        await pilot.press("slash", *"approval")
        await wait_for_text(pilot, "Runs  (1 of 1")  # the store counts those that match
        home = app.screen
        assert isinstance(home, HomeScreen)
        assert [home.runs_table.selected_run] != [None]
        await pilot.press("enter", "escape")
        await wait_for_text(pilot, "Runs  (2 of 2")


async def test_question_mark_lists_every_key(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        text = screen_text(app)
        for key in COMMANDS:
            assert f"{key.title}:" in text
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, HomeScreen))


async def test_every_key_is_in_the_command_palette(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.bridge.ready)
        titles = {c.title for c in app.get_system_commands(app.screen)}
        for key in COMMANDS:
            assert f"{key.title} ({key.shown})" in titles
        await pilot.press("ctrl+p")
        await pilot.press(*"Breakers")
        await wait_for_text(pilot, "Breakers (b)")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, BreakersScreen))


async def test_quitting_with_a_run_active_asks_and_cancels_it(
    make_app: MakeApp, db: Path
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        run_id = await start(pilot, "slow")
        await wait_for_text(pilot, "▶ nap")
        await pilot.press("q")
        await wait_for_text(pilot, "Quit and cancel 1 run?")
        await pilot.press("n")
        await pilot.pause(0.2)
        assert app.bridge.is_running_here(run_id)
        await pilot.press("q")
        await wait_for_text(pilot, "Quit and cancel 1 run?")
        await pilot.press("y")
        await wait_until(pilot, lambda: not app.is_running, what="the app to exit")
    async with Store(db, readonly=True) as store:
        state = await store.fold_run(run_id)
    assert state.state is RunStatus.CANCELLED


async def test_on_a_first_start_the_arrows_pick_the_pipeline_to_launch(
    make_app: MakeApp,
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        home = app.screen
        assert isinstance(home, HomeScreen)
        await wait_until(pilot, lambda: home._listed, what="the first list of runs")
        assert home.pipelines.has_focus  # no runs yet: the pipelines keep the focus
        assert home.highlighted_pipeline == "approval"
        await pilot.press("down")
        assert home.highlighted_pipeline == "branching"
        await pilot.press("l")
        await wait_until(pilot, lambda: isinstance(app.screen, LaunchScreen), what="the dialog")
        assert "branching: " in screen_text(app)


async def test_with_runs_stored_the_runs_table_keeps_the_focus(
    make_app: MakeApp, db: Path, pipelines: Path
) -> None:
    run_id = await interrupted_run(db, pipelines / "hello.yaml", "b" * 32)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        home = app.screen
        assert isinstance(home, HomeScreen)
        await wait_until(pilot, lambda: run_id in home.runs_table.rows, what="the stored run")
        assert home.runs_table.has_focus  # the first list had runs: the focus went to them
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen), what="the run view")


async def test_the_console_shows_an_interrupted_run_without_writing_to_it(
    make_app: MakeApp, db: Path, pipelines: Path
) -> None:
    run_id = await interrupted_run(db, pipelines / "hello.yaml", "c" * 32)
    async with Store(db, readonly=True) as reader:
        before = await reader.last_seq(run_id)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_text(pilot, "↯ interrupted")
        await open_home_run(pilot, run_id)
        await wait_for_text(pilot, "INTERRUPTED")
        for _ in range(3):
            await app.bridge.poll()  # the followers' polls, as many as you like
    async with Store(db, readonly=True) as reader:
        assert await reader.last_seq(run_id) == before
