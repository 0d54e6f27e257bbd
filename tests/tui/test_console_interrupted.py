"""An interrupted run (its owner died) looks dead: clocks stopped when the owner was lost,
running nodes marked orphaned, the owner shown as lost; a resume shows honest attempts."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from console_helpers import (
    SIZE,
    MakeApp,
    notified,
    open_home_run,
    screen_text,
    wait_for_notice,
    wait_for_text,
    wait_until,
)
from seeding import interrupted_run

from tui.screens.home import HomeScreen
from tui.screens.run import RunScreen

if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from textual.pilot import Pilot

    from tui.app import InterlockApp

HOUR = 3600.0


def row_of(text: str, node: str) -> str:
    return next(line for line in text.splitlines() if line.strip().startswith(node + " "))


async def test_an_interrupted_run_stops_its_clocks_and_marks_its_nodes_orphaned(
    make_app: MakeApp, db: Path, pipelines: Path
) -> None:
    run_id = await interrupted_run(db, pipelines / "slow.yaml", "b" * 32, ago=HOUR)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_text(pilot, "↯ interrupted")
        assert "lost (pid" in screen_text(app)  # the runs table's owner column
        screen = await open_home_run(pilot, run_id)
        await wait_for_text(pilot, "INTERRUPTED")
        await wait_for_text(pilot, "owner lost")
        text = screen_text(app)
        row = row_of(text.split("Node ", 1)[1], "warmup")
        assert "orphaned" in row
        assert "█" not in row and "▏" not in row  # no timeout bar counting on
        # Lost an hour ago, when its node had just started: nothing has run for an hour.
        assert "elapsed 1h" not in text and "59m" not in text
        assert "1h00m" not in row
        shown = screen_text(app)
        await pilot.pause(1.3)  # a tick of the view's clock later: the same screen
        screen.refresh_view()
        assert screen_text(app).split("\n")[:2] == shown.split("\n")[:2]
        await pilot.press("enter")  # the node's detail: orphaned, no countdown either
        await wait_for_text(pilot, "Attempts")
        summary = screen_text(app).split("\n")[:2]
        assert "orphaned" in summary[0]
        assert "timeout in" not in summary[1] and "1h" not in summary[1]


async def test_approve_on_an_interrupted_run_refuses_at_once(
    make_app: MakeApp, db: Path, pipelines: Path
) -> None:
    run_id = await interrupted_run(db, pipelines / "slow.yaml", "c" * 32)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_text(pilot, "↯ interrupted")
        await open_home_run(pilot, run_id)
        await wait_for_text(pilot, "INTERRUPTED")
        await pilot.press("a")
        await wait_for_notice(pilot, "resume it (R) first")
        assert "Approve" not in screen_text(app).split("\n")[5]


async def test_after_a_resume_a_node_shows_its_real_attempt_and_duration(
    make_app: MakeApp, db: Path, pipelines: Path
) -> None:
    run_id = await interrupted_run(db, pipelines / "slow.yaml", "d" * 32, ago=HOUR)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_text(pilot, "↯ interrupted")
        await open_home_run(pilot, run_id)
        await wait_for_text(pilot, "INTERRUPTED")
        await pilot.press("R")
        await wait_for_text(pilot, "Resume run")
        await pilot.press("enter")
        await wait_for_text(pilot, "▶ running")
        started = time.monotonic()
        text = screen_text(app).split("Node ", 1)[1]
        row = row_of(text, "warmup")
        assert "2/1" not in row and "2/2" in row  # the second attempt, the last allowed
        assert "1h" not in row and "59m" not in row  # not the hour the run lay dead
        assert time.monotonic() - started < 30
        await app.bridge.close()


async def highlight_home_run(pilot: Pilot[Any], app: InterlockApp, run_id: str) -> None:
    """Put the runs table's cursor on `run_id`, on the home screen (no enter)."""
    home = app.screen
    assert isinstance(home, HomeScreen)
    await wait_until(pilot, lambda: run_id in home.runs_table.rows, what=f"run {run_id[:8]}")
    home.runs_table.focus()
    home.runs_table.move_cursor(row=home.runs_table.get_row_index(run_id))
    await pilot.pause()


async def test_from_home_an_interrupted_run_resumes_and_approve_refuses_at_once(
    make_app: MakeApp, db: Path, pipelines: Path
) -> None:
    """The home screen's keys judge the run by its lease, as the run view does: `a` refuses
    without asking, `R` asks and resumes (it said "still running (lost (pid N))")."""
    run_id = await interrupted_run(db, pipelines / "slow.yaml", "e" * 32)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_text(pilot, "↯ interrupted")
        await highlight_home_run(pilot, app, run_id)
        await pilot.press("a")
        await wait_for_notice(pilot, "resume it (R) first")
        assert isinstance(app.screen, HomeScreen)  # no question was asked
        assert not notified(app, "still running")
        await pilot.press("R")
        await wait_for_text(pilot, "Resume run")
        assert not notified(app, "still running")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen), what="the run view")
        await wait_until(pilot, lambda: app.bridge.is_running_here(run_id), what="the resume")
        await app.bridge.close()


PAIR = """
id: pair
nodes:
  - id: work
    type: shell
    command: ["sleep", "60"]
  - id: gate
    type: approval
    message: Go?
"""


async def test_an_interrupted_runs_header_counts_its_orphans_as_the_table_and_attempts_say_lost(
    make_app: MakeApp, db: Path, pipelines: Path
) -> None:
    """A running node and a waiting approval of a dead owner: the header counts 2 orphaned
    (it said `waiting 1 orphaned 1`), and the node's attempt is lost, not `running`."""
    (pipelines / "pair.yaml").write_text(PAIR)
    also: tuple[tuple[str, str | None, dict[str, Any]], ...] = (
        ("node.started", "gate", {}),
        ("approval.requested", "gate", {"message": "Go?"}),
    )
    run_id = await interrupted_run(db, pipelines / "pair.yaml", "f" * 32, also=also)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_text(pilot, "↯ interrupted")
        screen = await open_home_run(pilot, run_id)
        await wait_for_text(pilot, "INTERRUPTED")
        header = screen_text(app).split("\n")[1]
        assert "↯2 orphaned" in header, header
        assert "waiting" not in header and "running" not in header
        table = screen_text(app).split("Node ", 1)[1]
        assert "orphaned" in row_of(table, "work") and "orphaned" in row_of(table, "gate")
        screen.dag.select("work")
        await pilot.press("enter")
        await wait_for_text(pilot, "Attempts")

        def attempts_shown() -> str:
            return screen_text(app).split("Attempts", 1)[1].split("Inputs", 1)[0]

        await wait_until(pilot, lambda: "orphaned" in attempts_shown(), what="the attempt's row")
        attempts = attempts_shown()
        assert "lost" in attempts and "running" not in attempts, attempts


async def test_the_timeline_of_an_interrupted_run_stands_still_at_the_owners_loss(
    make_app: MakeApp, db: Path, pipelines: Path
) -> None:
    """`T` from the home screen on a run whose owner died an hour ago: INTERRUPTED, not live,
    its spans frozen where the owner was lost (they grew on, an hour long, `WAITING (live)`)."""
    from tui.screens.timeline import TimelineScreen

    run_id = await interrupted_run(db, pipelines / "slow.yaml", "9" * 32, ago=HOUR)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_text(pilot, "↯ interrupted")
        await highlight_home_run(pilot, app, run_id)
        await pilot.press("T")
        await wait_until(pilot, lambda: isinstance(app.screen, TimelineScreen), what="timeline")
        await wait_for_text(pilot, "Timeline")
        title = screen_text(app).split("\n")[0]
        assert "INTERRUPTED" in title and "(live)" not in title, title
        assert "1h" not in title and "59m" not in title, title
        assert "↯ warmup" in screen_text(app)  # the node at work is orphaned, as in the run view
        shown = screen_text(app)
        await pilot.pause(1.3)
        screen = app.screen
        assert isinstance(screen, TimelineScreen)
        screen.refresh_view()
        await pilot.pause()
        assert screen_text(app) == shown
