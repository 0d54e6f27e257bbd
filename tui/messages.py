"""The messages the bridge posts to the console's screens: past-tense facts, one module.

Bursts coalesce: a message still queued when a newer one of the same kind arrives is replaced
by it (`Message.can_replace`), and run events merge so none is lost on the way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:

    from engine.events import Event
    from engine.state import RunState
    from tui.pipeline_folder import PipelineEntry
    from tui.view import BreakerView, NodeInfo


@dataclass(frozen=True)
class RunSummary:
    """One line of the runs table (a stored run, with whether this console owns it)."""

    run_id: str
    pipeline_id: str
    state: str
    created_at: str | None
    started_at: str | None
    ended_at: str | None
    own: bool
    owner: str
    replay_of: str | None = None
    heartbeat_at: float | None = None
    last_seq: int = 0
    retry_of: str | None = None


class PipelinesScanned(Message):
    """The pipelines folder was read and every file validated."""

    def __init__(self, entries: list[PipelineEntry]) -> None:
        super().__init__()
        self.entries = entries

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, PipelinesScanned)


class RunsListed(Message):
    """The stored runs loaded so far, newest first (own and other processes'); `total`: how
    many stored runs match the runs filter (None if not counted)."""

    def __init__(self, runs: list[RunSummary], total: int | None = None) -> None:
        super().__init__()
        self.runs = runs
        self.total = total

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunsListed)


class RunEventsArrived(Message):
    """New events of a run; `state` is the fold of all its events so far."""

    def __init__(self, run_id: str, state: RunState, events: list[Event], live: bool) -> None:
        super().__init__()
        self.run_id = run_id
        self.state = state
        self.events = events
        self.live = live  # True: from this process's manager; False: polled from the store

    def can_replace(self, message: Message) -> bool:
        if isinstance(message, RunEventsArrived) and message.run_id == self.run_id:
            # The newer message replaces this one: hand it our events so none is dropped.
            message.events = self.events + message.events
            return True
        return False


class BreakersChanged(Message):
    """The breakers known to the console (this process's and the store's), by key."""

    def __init__(self, breakers: dict[str, BreakerView]) -> None:
        super().__init__()
        self.breakers = breakers

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, BreakersChanged)


# -- asked of the app: a screen opens another through it, so no screen imports one above it ----


class RunRequested(Message):
    """The operator asked for a run's view (launched, replayed, resumed, or picked)."""

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id


class NodeRequested(Message):
    """The operator asked for a node's detail; `infos` are the run view's node facts."""

    def __init__(self, run_id: str, node_id: str, infos: dict[str, NodeInfo]) -> None:
        super().__init__()
        self.run_id = run_id
        self.node_id = node_id
        self.infos = infos


class PlaybackRequested(Message):
    """The operator asked to play a stored run back."""

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
