"""The pipelines table shows when a scheduled pipeline fires next."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from console_helpers import SIZE, screen_text, wait_for_text

from engine.loader import load_file, load_text
from tui.widgets.pipeline_table import next_fire_label

if TYPE_CHECKING:
    from console_helpers import MakeApp

SCHEDULED = Path(__file__).resolve().parents[1] / "serve" / "data" / "scheduled"


def test_the_earliest_next_fire_of_a_pipeline_is_labelled() -> None:
    pipeline = load_file(SCHEDULED / "every_second.yaml")
    now = datetime(2026, 1, 10, 12, 0, 0, 400_000, tzinfo=UTC)
    assert next_fire_label(pipeline, now) == "next 12:00:01 UTC"


def test_a_fire_on_another_day_shows_its_date() -> None:
    pipeline = load_text(
        "id: p\nnodes: [{id: a, type: trigger}]\nschedule: [{cron: '0 2 * * *'}]\n"
    )
    now = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
    assert next_fire_label(pipeline, now) == "next Jan 11 02:00 UTC"


def test_a_pipeline_without_a_schedule_has_no_label() -> None:
    pipeline = load_text("id: p\nnodes: [{id: a, type: trigger}]\n")
    assert next_fire_label(pipeline, datetime.now(UTC)) is None


async def test_the_home_screen_shows_the_next_fire_of_a_scheduled_pipeline(
    make_app: MakeApp, pipelines: Path
) -> None:
    shutil.copy(SCHEDULED / "every_second.yaml", pipelines / "every_second.yaml")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_text(pilot, "every-second")
        await wait_for_text(pilot, "next ")
        line = next(row for row in screen_text(app).splitlines() if "every-second" in row)
        assert "UTC" in line
        hello = next(row for row in screen_text(app).splitlines() if "hello" in row)
        assert "next " not in hello


async def test_the_next_fire_is_worked_out_again_once_the_one_shown_has_passed(
    make_app: MakeApp, pipelines: Path
) -> None:
    """The console's clock passes the fire shown: the table shows the one after it (it kept
    showing the past fire time)."""
    (pipelines / "hourly.yaml").write_text(
        "id: hourly\nnodes: [{id: a, type: trigger}]\nschedule: [{every: 1h}]\n"
    )
    now = [datetime(2026, 1, 10, 10, 30, tzinfo=UTC).timestamp()]
    app = make_app(clock=lambda: now[0])
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_text(pilot, "next 11:00:00 UTC")
        now[0] = datetime(2026, 1, 10, 11, 0, 5, tzinfo=UTC).timestamp()
        await wait_for_text(pilot, "next 12:00:00 UTC", timeout=5)
        assert "next 11:00:00" not in screen_text(app)
