"""Pure conversions of stored rows into what the console lists: runs, breakers, filters, sorts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.state import RunStatus
from tui import format as fmt
from tui.messages import RunSummary

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from engine.breaker import BreakerRecord

TERMINAL = frozenset(s.value for s in RunStatus if s.is_terminal)
SETTLED = TERMINAL | {RunStatus.INTERRUPTED.value}


def summary(row: Any, *, own: bool) -> RunSummary:
    """A `RunRow` of the store as one line of the runs table."""
    if own:
        owner = "this console"
    elif row.owner_pid:
        owner = f"pid {row.owner_pid}"
    else:
        owner = "-"
    # Another process's run that lost its lease shows `interrupted` (worked out, not written).
    shown = getattr(row, "shown_state", None)
    state = str(row.state) if own or shown is None else str(shown())
    if state == RunStatus.INTERRUPTED.value and not own:
        # Its owner is gone: the pid names a dead process, not one to look for.
        owner = "lost" if owner == "-" else f"lost ({owner})"
    return RunSummary(
        run_id=row.run_id,
        pipeline_id=row.pipeline_id,
        state=state,
        created_at=row.created_at,
        started_at=row.started_at,
        ended_at=row.ended_at,
        own=own,
        owner=owner,
        replay_of=row.replay_of,
        heartbeat_at=row.heartbeat_at,
        last_seq=int(row.last_seq or 0),
        retry_of=getattr(row, "retry_of", None),
    )


def merge_breakers(
    records: Mapping[str, BreakerRecord], snapshots: Iterable[BreakerRecord]
) -> dict[str, BreakerRecord]:
    """Breakers by key: the store's records (every process counts its attempts there, so
    they are what `interlock breakers` shows too), plus this process's live breakers that
    are not stored yet."""
    views = dict(records)
    for snap in snapshots:
        views.setdefault(snap.key, snap)
    return dict(sorted(views.items()))


def breaker_item(view: BreakerRecord, now: float) -> dict[str, Any]:
    """One breaker as `interlock breakers --json` lists it (`BreakerRecord.item`)."""
    return view.item(now)


# The quick filters of the home screen's number keys (0 clears); the store reads them
# (`engine.run_filter.parse_filter`), like any filter typed after `/`.
QUICK_FILTERS: dict[str, str] = {
    "1": "state:active",
    "2": "state:failed,timeout",
    "3": "state:succeeded",
    "4": "state:cancelled",
    "5": "state:interrupted",
}


SORT_KEYS = ("created", "pipeline", "state", "duration")
SORT_ORDER = {  # how each sort runs, as the runs table's title says it
    "created": "newest first", "pipeline": "A to Z", "state": "A to Z",
    "duration": "longest first",
}


def sort_runs(runs: list[RunSummary], key: str, now: float) -> list[RunSummary]:
    """Runs ordered by `key`; newest first for `created`, longest first for `duration`."""
    if key == "pipeline":
        return sorted(runs, key=lambda r: (r.pipeline_id, r.created_at or ""))
    if key == "state":
        return sorted(runs, key=lambda r: (r.state, r.created_at or ""))
    if key == "duration":
        return sorted(runs, key=lambda r: -(run_seconds(r, now) or 0.0))
    return sorted(runs, key=lambda r: r.created_at or "", reverse=True)


def run_seconds(run: RunSummary, now: float) -> float | None:
    end = run.ended_at
    if end is None and run.state in SETTLED:
        return None
    return fmt.elapsed(run.started_at or run.created_at, end, now)
