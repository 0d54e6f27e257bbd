"""Pilot tests of retry from failure (`f`) and the timeline (`T`) on real runs."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from console_helpers import (
    SIZE,
    open_home_run,
    screen_text,
    start,
    wait_for_text,
    wait_until,
)

from engine.state import NodeStatus, RunStatus
from tui.screens.node import NodeScreen
from tui.screens.retry import RetryScreen
from tui.screens.run import RunScreen
from tui.screens.timeline import TimelineScreen

if TYPE_CHECKING:
    from console_helpers import MakeApp

    from tui.app import InterlockApp

DATA = Path(__file__).parent / "data" / "pipelines"


def _add_retry_pipeline(pipelines: Path) -> None:
    shutil.copy(DATA / "retry.yaml", pipelines / "retry.yaml")


async def test_f_shows_what_is_reused_and_what_runs_again_and_enter_starts_the_retry(
    make_app: MakeApp, pipelines: Path, tmp_path: Path
) -> None:
    _add_retry_pipeline(pipelines)
    gate = tmp_path / "gate"
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        first = await start(pilot, "retry", gate=str(gate))
        await wait_for_text(pilot, "FAILED")
        gate.touch()

        await pilot.press("f")
        await wait_until(pilot, lambda: isinstance(app.screen, RetryScreen), what="the dialog")
        await wait_for_text(pilot, f"Retry run {first[:8]} from failure?")
        text = screen_text(app)
        assert "Reuses the stored outputs of 2 nodes (no work, no time):" in text
        assert "Runs again 2 nodes:" in text
        lines = [line.strip(" █") for line in text.splitlines()]
        assert lines.index("extract, side") < lines.index("load, report")
        await pilot.press("enter")

        await wait_until(
            pilot,
            lambda: isinstance(app.screen, RunScreen) and app.screen.run_id != first,
            what="the retry's run view",
        )
        await wait_for_text(pilot, "SUCCEEDED")
        await wait_for_text(pilot, f"retry of {first[:8]}")
        screen = app.screen
        assert isinstance(screen, RunScreen)
        state = await app.bridge.run_state(screen.run_id)
        await pilot.press("escape")  # the retry replaced the old run's view: home, one escape
        await open_home_run(pilot, first)  # the old run names its retry
        await wait_for_text(pilot, f"retried as {screen.run_id[:8]}")
    assert state.state is RunStatus.SUCCEEDED
    assert state.retry_of == first
    assert state.nodes["extract"].reused_from == first
    assert state.nodes["load"].reused_from is None
    assert state.nodes["load"].state is NodeStatus.SUCCEEDED


async def test_declining_the_retry_starts_nothing_and_a_running_run_is_refused(
    make_app: MakeApp,
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        running = await start(pilot, "slow")
        await wait_for_text(pilot, "▶ nap")
        await pilot.press("f")
        await wait_until(
            pilot,
            lambda: any(
                "is running; only a finished run can be retried" in n.message
                for n in app._notifications
            ),
            what="the refusal",
        )
        assert not isinstance(app.screen, RetryScreen)
        await app.bridge.cancel(running)
        await wait_for_text(pilot, "CANCELLED")

        await pilot.press("f")
        await wait_until(pilot, lambda: isinstance(app.screen, RetryScreen), what="the dialog")
        await wait_for_text(pilot, "Runs again 1 node:")
        assert "  nap" in screen_text(app)
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen))
        await pilot.pause(0.3)
        runs = await app.bridge.store.list_runs()
    assert [r.run_id for r in runs] == [running]


def _bar(app: InterlockApp, node: str) -> str:
    row = next(line for line in screen_text(app).splitlines() if f" {node} " in line + " ")
    return row[row.index("|") + 1 : row.rindex("|")]


async def test_t_shows_one_row_per_node_on_a_time_axis_live_and_escape_goes_back(
    make_app: MakeApp,
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        run_id = await start(pilot, "slow")
        await wait_for_text(pilot, "▶ nap")
        await pilot.press("T")
        await wait_until(pilot, lambda: isinstance(app.screen, TimelineScreen), what="timeline")
        await wait_for_text(pilot, "(live)")
        await wait_for_text(pilot, "▶ nap")
        text = screen_text(app)
        assert f"run {run_id[:8]}" in text and "RUNNING" in text
        assert "✔ warmup" in text
        assert "█ ran" in text and "· retry wait" in text  # the legend says what marks mean
        first = _bar(app, "nap").count("█")
        await pilot.pause(1.6)
        await wait_until(
            pilot, lambda: _bar(app, "nap").count("█") > first, what="nap's bar to grow"
        )
        await app.bridge.cancel(run_id)
        await wait_for_text(pilot, "CANCELLED")
        assert "(live)" not in screen_text(app)
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen), what="the run view")


async def test_the_timeline_at_80x24_in_ascii_shows_every_node_in_ascii_only(
    make_app: MakeApp, pipelines: Path, tmp_path: Path
) -> None:
    _add_retry_pipeline(pipelines)
    app = make_app(ascii=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await start(pilot, "retry", gate=str(tmp_path / "missing"))
        await wait_for_text(pilot, "FAILED")
        await pilot.press("T")
        await wait_until(pilot, lambda: isinstance(app.screen, TimelineScreen), what="timeline")
        await wait_for_text(pilot, "report")
        lines = screen_text(app).splitlines()
    rows = [line for line in lines if "|" in line]
    assert [row.split()[1] for row in rows] == ["extract", "side", "load", "report"]
    assert "x" in rows[2][rows[2].index("|"):]  # load's failed attempt
    assert rows[3][rows[3].index("|") + 1 : rows[3].rindex("|")].strip() == ""  # report skipped
    timeline_text = "\n".join(line for line in lines if "|" in line or "ran" in line)
    assert all(ord(c) < 127 for c in timeline_text)


async def test_f_on_a_node_detail_also_runs_that_node_again_with_what_follows_it(
    make_app: MakeApp, pipelines: Path, tmp_path: Path
) -> None:
    _add_retry_pipeline(pipelines)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        first = await start(pilot, "retry", gate=str(tmp_path / "missing"))
        await wait_for_text(pilot, "FAILED")
        run_screen = app.screen
        assert isinstance(run_screen, RunScreen)
        await app.push_screen(NodeScreen(app.ctx, first, "extract", run_screen.infos))
        await pilot.press("f")
        await wait_until(pilot, lambda: isinstance(app.screen, RetryScreen), what="the dialog")
        await wait_for_text(pilot, f"Retry run {first[:8]} from extract?")
        text = screen_text(app)
        assert "Reuses the stored outputs of 1 node (no work, no time):" in text
        assert "Runs again 3 nodes:" in text
        assert "extract, load, report" in text
        await pilot.press("n")
