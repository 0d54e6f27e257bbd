"""An interrupted run (its owner died) looks dead: clocks stopped when the owner was lost,
running nodes marked orphaned, the owner shown as lost; a resume shows honest attempts."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from console_helpers import (
    SIZE,
    MakeApp,
    open_home_run,
    screen_text,
    wait_for_notice,
    wait_for_text,
)
from seeding import interrupted_run

if TYPE_CHECKING:
    from pathlib import Path

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
