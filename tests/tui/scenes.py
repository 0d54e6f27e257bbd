"""The console's scenes: from a seeded console to a screen worth looking at. Shared by the
snapshot tests (`test_snapshots.py`) and the README's screenshots
(`screenshots/make_screenshots.py`), so the pictures show what the tests check."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import seeding
from console_helpers import app_of, wait_until

from engine.loader import load_file
from tui.screens.breakers import BreakersScreen
from tui.screens.node import NodeScreen
from tui.screens.playback import PlaybackScreen
from tui.screens.run import RunScreen
from tui.screens.timeline import TimelineScreen

if TYPE_CHECKING:
    from textual.pilot import Pilot

    from tui.app import InterlockApp

MIDFLIGHT = seeding.run_id("midflight")


async def settle(pilot: Pilot[Any]) -> None:
    app = app_of(pilot)
    await pilot.pause(0.1)
    await app.workers.wait_for_complete()
    await pilot.pause(0.1)


async def midflight(pilot: Pilot[Any]) -> InterlockApp:
    """Launch the mid-flight run in the console and wait until its long step runs."""
    app = app_of(pilot)
    await wait_until(pilot, lambda: app.bridge.ready)
    # The seeded runs are listed before the new one arrives (one poll lists them all), so the
    # cursor stays on the newest seeded run (the table keeps the cursor on its run), every time.
    await wait_until(pilot, lambda: bool(app.bridge.runs))
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
    await settle(pilot)  # the selection starts on the running node: crunch, with its countdown


async def node_detail(pilot: Pilot[Any]) -> None:
    await run_view(pilot)
    app = app_of(pilot)
    screen = app.screen
    assert isinstance(screen, RunScreen)
    await app.push_screen(NodeScreen(app.ctx, MIDFLIGHT, "fetch", screen.infos))
    await settle(pilot)


async def timeline(pilot: Pilot[Any]) -> None:
    """`T` on the mid-flight run: a healed retry, a failed probe, crunch running, the axis."""
    await run_view(pilot)
    await pilot.press("T")
    app = app_of(pilot)
    await wait_until(pilot, lambda: isinstance(app.screen, TimelineScreen), what="timeline")
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


async def wide_run(pilot: Pilot[Any]) -> None:
    """The seeded wide-200 run (`seeding.run_id("wide-200")`), scrolled into its first layer."""
    app = app_of(pilot)
    await wait_until(pilot, lambda: app.bridge.ready)
    await app.push_screen(RunScreen(app.ctx, seeding.run_id("wide-200")))
    await settle(pilot)
    await pilot.press("down", *["right"] * 6)
    await settle(pilot)


async def diff_view(pilot: Pilot[Any]) -> None:
    """`d` on the seeded branching run with `min_rows: 100` against the branching run before it:
    a param changed, the condition took the other branch."""
    from tui.screens.diff import DiffScreen
    from tui.screens.home import HomeScreen

    app = app_of(pilot)
    later = seeding.run_id("branching-alert")
    await wait_until(pilot, lambda: app.bridge.ready)
    await wait_until(pilot, lambda: any(r.run_id == later for r in app.bridge.runs))
    home_screen = app.screen
    assert isinstance(home_screen, HomeScreen)
    home_screen.runs_table.focus()
    home_screen.runs_table.move_cursor(row=home_screen.runs_table.get_row_index(later))
    await pilot.press("d")
    await wait_until(pilot, lambda: isinstance(app.screen, DiffScreen), what="the diff")


CANCELLING = seeding.run_id("cleanup-cancelled")
INTERRUPTED = seeding.run_id("release-interrupted")


async def cancel_in_grace(pilot: Pilot[Any]) -> None:
    """A run of the `cleanup` pipeline cancelled while its export cleans up: CANCELLING, the
    node `cancelling` with the countdown to its SIGKILL (`K` kills it now)."""
    app = app_of(pilot)
    await wait_until(pilot, lambda: app.bridge.ready)
    await wait_until(pilot, lambda: bool(app.bridge.runs))
    pipeline = load_file(app.ctx.pipelines_dir / "cleanup.yaml")
    await app.bridge.launch(pipeline, {}, run_id=CANCELLING)
    await app.push_screen(RunScreen(app.ctx, CANCELLING))

    async def exporting() -> bool:
        state = await app.bridge.run_state(CANCELLING)
        return "exporting" in state.nodes["export"].logs

    await wait_until(pilot, exporting, what="the export to start")
    screen = app.screen
    assert isinstance(screen, RunScreen)
    screen.dag.select("export")  # the view opened on the node at work then (stage, or export)
    await pilot.press("c")
    await wait_until(pilot, lambda: not isinstance(app.screen, RunScreen), what="the question")
    await pilot.press("enter")

    async def flushing() -> bool:
        state = await app.bridge.run_state(CANCELLING)
        return "flushing partial export" in state.nodes["export"].logs

    await wait_until(pilot, flushing, what="the export to flush in its grace")
    await pilot.pause(1.2)  # a tick of the view's clock: the countdown is drawn
    await settle(pilot)


async def interrupted_view(pilot: Pilot[Any]) -> None:
    """The seeded interrupted release (its owner died): clocks stopped, nodes orphaned."""
    app = app_of(pilot)
    await wait_until(pilot, lambda: app.bridge.ready)
    await wait_until(
        pilot,
        lambda: any(r.run_id == INTERRUPTED and r.state == "interrupted" for r in app.bridge.runs),
        what="the run to be marked interrupted",
    )
    await app.push_screen(RunScreen(app.ctx, INTERRUPTED))
    await wait_until(
        pilot,
        lambda: isinstance(app.screen, RunScreen) and app.screen.dag.current_layout is not None,
        what="the DAG",
    )
    await settle(pilot)


async def node_test(pilot: Pilot[Any]) -> None:
    """`t` on `shout` of a seeded hello run: the node run alone on its inputs from that run
    (what `greet` made there), its log and its output; nothing recorded."""
    from tui.screens.node_test import NodeTestScreen

    app = app_of(pilot)
    source = seeding.run_id("hello-again")
    await wait_until(pilot, lambda: app.bridge.ready)
    await wait_until(pilot, lambda: any(r.run_id == source for r in app.bridge.runs))
    screen = RunScreen(app.ctx, source)
    await app.push_screen(screen)
    await wait_until(pilot, lambda: screen.state is not None, what="the run")
    await app.push_screen(NodeScreen(app.ctx, source, NODE_TESTED, screen.infos))
    await wait_until(
        pilot, lambda: isinstance(app.screen, NodeScreen) and app.screen.state is not None,
        what="the node's detail",
    )
    await pilot.press("t")
    await wait_until(pilot, lambda: isinstance(app.screen, NodeTestScreen), what="the test")
    tested = app.screen
    assert isinstance(tested, NodeTestScreen)
    await wait_until(pilot, lambda: tested.result is not None, what="the test to end")
    await settle(pilot)


NODE_TESTED = "shout"
