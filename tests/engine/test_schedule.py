"""Schedule fire times: pure functions of the entry and a moment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.errors import PipelineValidationError
from engine.loader import load_text
from engine.schedule import describe, due_fire, fire_time_text, next_fire, schedule_key
from engine.spec import ScheduleEntry


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_every_fires_on_whole_multiples_of_the_interval_since_the_epoch() -> None:
    entry = ScheduleEntry(every=1800)
    assert next_fire(entry, at("2026-03-01T10:07:00")) == at("2026-03-01T10:30:00")
    assert next_fire(entry, at("2026-03-01T10:30:00")) == at("2026-03-01T11:00:00")


def test_cron_follows_its_timezone_across_a_daylight_saving_change() -> None:
    entry = ScheduleEntry(cron="0 2 * * *", timezone="America/New_York")
    # 02:00 New York is 07:00 UTC in winter (EST) and 06:00 UTC in summer (EDT).
    assert next_fire(entry, at("2026-01-10T12:00:00")) == at("2026-01-11T07:00:00")
    assert next_fire(entry, at("2026-07-10T12:00:00")) == at("2026-07-11T06:00:00")


def test_cron_without_a_timezone_is_utc() -> None:
    entry = ScheduleEntry(cron="15 * * * *")
    assert next_fire(entry, at("2026-01-10T12:20:00")) == at("2026-01-10T13:15:00")


def test_missed_fires_are_skipped_and_only_the_latest_due_one_is_returned() -> None:
    entry = ScheduleEntry(every=60)
    last = at("2026-01-10T12:00:00")
    assert due_fire(entry, last, at("2026-01-10T12:00:59")) is None
    assert due_fire(entry, last, at("2026-01-10T12:05:30")) == at("2026-01-10T12:05:00")
    cron = ScheduleEntry(cron="*/10 * * * *")
    assert due_fire(cron, last, at("2026-01-10T13:05:00")) == at("2026-01-10T13:00:00")


def test_the_key_names_the_definition_so_an_edit_is_a_new_schedule() -> None:
    a = ScheduleEntry(every=60, params={"env": "prod"})
    assert schedule_key(a) == schedule_key(ScheduleEntry(every=60, params={"env": "prod"}))
    assert schedule_key(a) != schedule_key(ScheduleEntry(every=60, params={"env": "dev"}))
    assert describe(a) == "every 1m"
    assert describe(ScheduleEntry(cron="0 2 * * *", timezone="Europe/Paris")) == (
        "cron 0 2 * * * (Europe/Paris)"
    )


def test_fire_times_are_written_in_utc_with_milliseconds() -> None:
    moment = at("2026-01-10T12:00:00") + timedelta(microseconds=5500)
    assert fire_time_text(moment) == "2026-01-10T12:00:00.005Z"


BASE = "id: p\nparams: {env: {default: a}}\nnodes: [{id: a, type: trigger}]\nschedule: "


@pytest.mark.parametrize(
    ("schedule", "reason"),
    [
        ("[{cron: 'every day'}]", "bad cron expression"),
        ("[{cron: '0 2 * * * *'}]", "use 5 fields"),
        ("[{every: 500ms}]", "at most once a second"),
        ("[{every: 1m, cron: '* * * * *'}]", "exactly one of 'cron' or 'every'"),
        ("[{params: {env: b}}]", "exactly one of 'cron' or 'every'"),
        ("[{cron: '0 2 * * *', timezone: Mars/Olympus}]", "unknown timezone"),
        ("[{every: 1m, timezone: UTC}]", "'timezone' applies to 'cron' only"),
        ("[{every: 1m, params: {envv: b}}]", "unknown param 'envv'"),
        ("[{evry: 1m}]", "did you mean 'every'"),
    ],
)
def test_a_bad_schedule_entry_is_a_validation_error(schedule: str, reason: str) -> None:
    with pytest.raises(PipelineValidationError) as caught:
        load_text(BASE + schedule + "\n", file="p.yaml")
    assert any(reason in str(issue) for issue in caught.value.issues), caught.value.issues
