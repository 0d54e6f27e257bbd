"""A cancel as the operator lives it: the grace shown with its countdown, `K` to skip it, the
output of the grace in the log, a quit that says what it waits for, the refusals at once."""

from __future__ import annotations

import shutil
import time
from typing import TYPE_CHECKING

from console_helpers import (
    SIZE,
    MakeApp,
    cancel_into_grace,
    screen_text,
    start,
    start_holding,
    wait_for_notice,
    wait_for_text,
    wait_until,
)
from seeding import TEST_PIPELINES

from engine.events import EventType
from engine.state import NodeStatus, RunStatus
from engine.store import Store
from tui.screens.quitting import QuittingScreen, quitting_text

if TYPE_CHECKING:
    from pathlib import Path


def add_stubborn(pipelines: Path) -> None:
    shutil.copy(TEST_PIPELINES / "stubborn.yaml", pipelines / "stubborn.yaml")


async def test_a_cancel_in_its_grace_shows_cancelling_and_k_kills_at_once(
    make_app: MakeApp, pipelines: Path
) -> None:
    add_stubborn(pipelines)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        run_id = await start_holding(pilot)
        await pilot.press("c")
        await wait_for_text(pilot, "Cancel run")
        await pilot.press("enter")  # the dialog's main action
        await wait_for_text(pilot, "CANCELLING")
        await wait_for_text(pilot, "SIGKILL in")
        text = screen_text(app)
        assert "cancelling" in text  # the node's row
        assert "RUNNING" not in text
        # The grace's countdown, not the node's 2-minute timeout.
        assert "SIGKILL in 30s" in text or "SIGKILL in 29s" in text or "SIGKILL in 28s" in text
        await pilot.press("K")
        await wait_for_text(pilot, "Kill the nodes of run")
        asked = time.monotonic()
        await pilot.press("enter")
        await wait_for_text(pilot, "CANCELLED", timeout=20)
        assert time.monotonic() - asked < 15  # not the 30 s grace
        events = await app.bridge.load_events(run_id)
    lines = [e.data.get("line") for e in events if e.event_type == EventType.NODE_LOG and e.data]
    assert "cleaning up after SIGTERM" in lines  # written in the grace, logged
    completed = events[-1]
    assert completed.event_type == EventType.RUN_COMPLETED
    assert completed.actor == "operator:tester"
    assert completed.reason == "cancelled from the console"  # the actor is not said twice


async def test_k_on_a_run_that_is_not_cancelling_refuses_at_once(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        run_id = await start(pilot, "slow")
        await wait_for_text(pilot, "▶ nap")
        await pilot.press("K")
        await wait_for_notice(pilot, "press c first")
        assert "Kill the nodes" not in screen_text(app)
        assert app.bridge.is_running_here(run_id)


async def test_c_on_a_finished_run_refuses_at_once_without_asking(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        run_id = await start(pilot, "hello", who="x")
        await wait_for_text(pilot, "SUCCEEDED")
        await pilot.press("c")
        await wait_for_notice(pilot, "already ended (succeeded)")
        assert "Cancel run" not in screen_text(app)
        state = await app.bridge.run_state(run_id)
    assert state.state is RunStatus.SUCCEEDED


async def test_quitting_during_a_grace_says_so_and_k_ends_it(
    make_app: MakeApp, pipelines: Path, db: Path
) -> None:
    add_stubborn(pipelines)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        run_id = await start_holding(pilot)
        await pilot.press("q")
        await wait_for_text(pilot, "Quit and cancel 1 run?")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, QuittingScreen))
        await wait_for_text(pilot, "SIGKILL within")
        assert "K kills them now" in screen_text(app)
        pressed = time.monotonic()
        await pilot.press("K")
        await wait_until(pilot, lambda: not app.is_running, timeout=20, what="the app to exit")
        assert time.monotonic() - pressed < 15
    async with Store(db, readonly=True) as store:
        state = await store.fold_run(run_id)
    assert state.state is RunStatus.CANCELLED
    assert state.nodes["hold"].state is NodeStatus.CANCELLED


def test_the_quitting_notice_counts_down_to_the_sigkill() -> None:
    assert "SIGKILL within 8s" in quitting_text(1, 7.2)
    assert "Cancelling 2 runs" in quitting_text(2, None)


async def test_quitting_in_a_cancels_grace_counts_down_to_the_nodes_sigkill(
    make_app: MakeApp, pipelines: Path
) -> None:
    """A quit 3 s into a 30 s grace says the SIGKILL is about 27 s away, not 30 s."""
    add_stubborn(pipelines)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_holding(pilot)
        await cancel_into_grace(pilot)
        await pilot.pause(3.0)
        await pilot.press("q")
        await wait_for_text(pilot, "Quit and cancel 1 run?")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, QuittingScreen))
        await wait_for_text(pilot, "SIGKILL within")
        text = screen_text(app)
        seconds = [n for n in range(31) if f"within {n}s" in text]
        assert seconds and 22 <= seconds[0] <= 27, text  # the grace began 3 s before the quit
        await pilot.press("K")
        await wait_until(pilot, lambda: not app.is_running, timeout=20, what="the app to exit")


async def test_the_timeline_of_a_run_in_its_cancel_grace_says_cancelling(
    make_app: MakeApp, pipelines: Path
) -> None:
    """As the run view's header: CANCELLING, not RUNNING, while the nodes wait out the grace;
    the legend names every mark, `?` too."""
    from tui.screens.timeline import TimelineScreen

    add_stubborn(pipelines)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        run_id = await start_holding(pilot)
        await cancel_into_grace(pilot)
        await pilot.press("T")
        await wait_until(pilot, lambda: isinstance(app.screen, TimelineScreen), what="timeline")
        await wait_for_text(pilot, "CANCELLING")
        text = screen_text(app)
        assert "RUNNING" not in text.split("\n")[0]
        assert "? owner lost" in text  # the legend
        app.bridge.force(run_id)  # not the 30 s grace on the way out
        await app.bridge.close()
