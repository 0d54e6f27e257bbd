"""When `schedule:` entries fire: pure functions over `ScheduleEntry`, no I/O, no clock.

Contract:
- `next_fire(entry, after)` is the first fire time strictly after `after` (an aware datetime),
  in UTC. `cron` entries follow croniter in the entry's `timezone` (UTC by default), so
  `0 2 * * *` with `Europe/Paris` fires at 02:00 Paris time across DST changes. `every`
  entries fire at whole multiples of the interval since the Unix epoch: every process computes
  the same fire times without talking to the others, which is what lets two services claim
  them in the store (one INSERT wins).
- `due_fire(entry, last_planned, now)` is the fire to start at `now`, or None: the latest fire
  time in `(last_planned, now]`. Earlier fire times in that window are missed fires, skipped
  and not made up.
- `schedule_key(entry)` names an entry stably across restarts and processes (a hash of its
  definition): an edited entry is a new schedule with its own fire history.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.spec import ScheduleEntry

__all__ = ["describe", "due_fire", "fire_time_text", "next_fire", "schedule_key"]


def schedule_key(entry: ScheduleEntry) -> str:
    """A short stable id of the entry: the same definition gives the same key everywhere."""
    body = json.dumps(entry.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def describe(entry: ScheduleEntry) -> str:
    """`cron 0 2 * * * (Europe/Paris)` or `every 30m`, for listings."""
    from engine.spec import format_duration

    if entry.cron is not None:
        return f"cron {entry.cron}" + (f" ({entry.timezone})" if entry.timezone else "")
    assert entry.every is not None
    return f"every {format_duration(entry.every)}"


def next_fire(entry: ScheduleEntry, after: datetime) -> datetime:
    """The first fire time strictly after `after`, in UTC."""
    if after.tzinfo is None:
        raise ValueError("next_fire needs an aware datetime")
    if entry.every is not None:
        step = entry.every
        stamp = after.timestamp()
        # The next whole multiple of the interval, strictly after `after`.
        k = math.floor(stamp / step) + 1
        return datetime.fromtimestamp(k * step, UTC)
    assert entry.cron is not None
    from zoneinfo import ZoneInfo

    from croniter import croniter

    zone = ZoneInfo(entry.timezone) if entry.timezone else UTC
    start = after.astimezone(zone)
    found: datetime = croniter(entry.cron, start).get_next(datetime)
    return found.astimezone(UTC)


def due_fire(entry: ScheduleEntry, last_planned: datetime, now: datetime) -> datetime | None:
    """The latest fire time in `(last_planned, now]`, or None if none falls there."""
    first = next_fire(entry, last_planned)
    if first > now:
        return None
    if entry.every is not None:
        # Jump straight to the last multiple at or before `now`.
        k = math.floor(now.timestamp() / entry.every)
        return max(first, datetime.fromtimestamp(k * entry.every, UTC))
    latest = first
    # Cron fire times in a long gap (a suspended laptop) are walked; a gap of a day of
    # minutely fires is 1,440 steps, done once after the wake, not per tick.
    for _ in range(100_000):
        candidate = next_fire(entry, latest)
        if candidate > now:
            break
        latest = candidate
    return latest


def fire_time_text(moment: datetime) -> str:
    """A fire time as stored and shown: ISO 8601 UTC with milliseconds and a Z."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def seconds_until(moment: datetime, now: datetime) -> float:
    return max(0.0, (moment - now) / timedelta(seconds=1))
