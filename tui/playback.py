"""Playback arithmetic: which events of a stored run are "on screen" at a playhead time (pure)."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.events import parse_timestamp
from engine.state import RunState, apply, fold

if TYPE_CHECKING:
    from collections.abc import Sequence

    from engine.events import Event

SPEEDS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 50.0)


@dataclass
class Tape:
    """A stored run's events with the playhead after the first `k` of them.

    The shown state is `fold(events[:k])`, kept incrementally while moving forward and folded
    again from the start when moving back. The playhead never goes before `run.created` (k=1):
    before it there is no run to show.
    """

    run_id: str
    events: Sequence[Event]
    k: int = 0
    _state: RunState | None = None
    _folded: int = 0

    def __post_init__(self) -> None:
        self._times = [parse_timestamp(e.timestamp_utc) for e in self.events]

    @property
    def total(self) -> int:
        return len(self.events)

    @property
    def start(self) -> float:
        return self._times[0] if self._times else 0.0

    @property
    def length(self) -> float:
        """Seconds from the first event to the last."""
        return self._times[-1] - self._times[0] if self._times else 0.0

    @property
    def at(self) -> float:
        """Seconds into the run at the playhead (the time of the last shown event)."""
        return self._times[self.k - 1] - self.start if self.k else 0.0

    @property
    def now(self) -> float:
        """The wall clock as it was at the playhead (for countdowns as they stood then)."""
        return self.start + self.at

    def seek(self, k: int) -> None:
        self.k = max(min(1, self.total), min(self.total, k))

    def seek_time(self, seconds: float) -> None:
        """Show every event up to `seconds` into the run."""
        self.seek(bisect_right(self._times, self.start + seconds))

    def step(self, delta: int) -> None:
        self.seek(self.k + delta)

    def state(self) -> RunState:
        if self._state is None or self.k < self._folded:
            self._state = fold(self.events[: self.k], self.run_id)
            self._folded = self.k
        for event in self.events[self._folded : self.k]:
            apply(self._state, event)
        self._folded = self.k
        return self._state

    @property
    def shown(self) -> Sequence[Event]:
        return self.events[: self.k]


def faster(speed: float) -> float:
    later = [s for s in SPEEDS if s > speed]
    return later[0] if later else speed


def slower(speed: float) -> float:
    earlier = [s for s in SPEEDS if s < speed]
    return earlier[-1] if earlier else speed
