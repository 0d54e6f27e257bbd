"""The timeline of a run, as plain text: one row per node on a shared time axis (pure).

Contract: no Textual and no I/O. `Timeline` takes a run's events in seq order (all of them, then
more as they arrive: `add` is incremental) and keeps, per node, its spans: each attempt (and how
it ended), the backoff wait before a retry, an approval's wait for its decision, and the cleanup
grace of a cancel (from the engine's "SIGTERM sent" log line to the attempt's end). A node reused
by a retry from failure is one mark at the moment it was recorded. `render(timeline, width, now)`
lays the rows out in `width` columns, against the run's span (up to `now` while it runs), with
a time axis on top and a legend below. Every kind of span has its own character, so the
timeline reads without colour; `ascii=True` uses only ASCII. The screen colours by character.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from engine.events import EventType, parse_timestamp
from tui import format as fmt

if TYPE_CHECKING:
    from collections.abc import Iterable

    from engine.events import Event

# Span kinds, and the character each is drawn with (unicode, ascii).
RAN, FAILED, TIMED_OUT, CANCELLED = "ran", "failed", "timed_out", "cancelled"
RETRY_WAIT, APPROVAL_WAIT, GRACE, REUSED, INTERRUPTED = (
    "retry_wait", "approval_wait", "grace", "reused", "interrupted",
)
MARKS: dict[str, tuple[str, str]] = {
    RAN: ("█", "#"),
    FAILED: ("x", "x"),
    TIMED_OUT: ("!", "!"),
    CANCELLED: ("/", "/"),
    RETRY_WAIT: ("·", "."),
    APPROVAL_WAIT: ("~", "~"),
    GRACE: ("░", "%"),
    REUSED: ("◆", "*"),
    INTERRUPTED: ("?", "?"),
}
LEGEND: tuple[tuple[str, str], ...] = (
    (RAN, "ran"),
    (FAILED, "failed"),
    (TIMED_OUT, "timed out"),
    (RETRY_WAIT, "retry wait"),
    (APPROVAL_WAIT, "approval"),
    (GRACE, "cancel grace"),
    (CANCELLED, "cancelled"),
    (REUSED, "reused"),
    (INTERRUPTED, "owner lost"),
)
# Where spans share a column (a run of minutes leaves a column to seconds), the mark that matters
# most to an operator wins: a failure over the work around it, work over waiting.
_PRIORITY: dict[str, int] = {
    INTERRUPTED: 0, RETRY_WAIT: 1, APPROVAL_WAIT: 2, RAN: 3, GRACE: 4, CANCELLED: 5,
    REUSED: 6, TIMED_OUT: 7, FAILED: 8,
}
# How an attempt's span is drawn, by the event that ended it.
_ENDED_BY: dict[str, str] = {
    EventType.NODE_SUCCEEDED: RAN,
    EventType.NODE_FAILED: FAILED,
    EventType.NODE_TIMED_OUT: TIMED_OUT,
    EventType.NODE_CANCELLED: CANCELLED,
    EventType.NODE_RETRIED: FAILED,
}
# The line the engine logs (stream `interlock`) when it SIGTERMs a node's process group.
_SIGTERM = re.compile(r"SIGTERM sent to process group")
NAME_MAX = 24  # columns a node id may take before it is cut


@dataclass
class Span:
    kind: str
    start: float
    end: float | None = None  # None: still going
    attempt: int = 0


@dataclass
class Lane:
    """One node's row: its spans in time order and its state."""

    node_id: str
    state: str = "pending"
    spans: list[Span] = field(default_factory=list)

    @property
    def open(self) -> Span | None:
        return self.spans[-1] if self.spans and self.spans[-1].end is None else None

    def close(self, at: float, kind: str | None = None) -> None:
        span = self.open
        if span is not None:
            span.end = max(at, span.start)
            if kind is not None and span.kind == RAN:
                span.kind = kind

    def begin(self, kind: str, at: float, attempt: int) -> None:
        span = self.open
        if span is not None and span.kind == RAN and at <= span.start:
            self.spans.pop()  # no time ran before the wait (an approval asks at once)
        self.close(at)
        self.spans.append(Span(kind, at, None, attempt))


@dataclass
class Timeline:
    """A run's nodes on one time axis, built from its events (see the module)."""

    run_id: str = ""
    state: str = "pending"
    start: float | None = None  # the run's first event
    end: float | None = None  # run.completed
    lanes: dict[str, Lane] = field(default_factory=dict)
    last_seq: int = 0

    @classmethod
    def of(cls, events: Iterable[Event]) -> Timeline:
        timeline = cls()
        timeline.add(events)
        return timeline

    def lane(self, node_id: str) -> Lane:
        lane = self.lanes.get(node_id)
        if lane is None:
            lane = self.lanes[node_id] = Lane(node_id)
        return lane

    def add(self, events: Iterable[Event]) -> None:
        """Take the events after those already taken (older or repeated ones are ignored)."""
        for event in events:
            if event.seq <= self.last_seq:
                continue
            self.last_seq = event.seq
            self._apply(event)

    def _apply(self, event: Event) -> None:
        at = parse_timestamp(event.timestamp_utc)
        etype = event.event_type
        data = event.data or {}
        if self.start is None:
            self.start = at
        self.run_id = self.run_id or event.run_id
        if etype == EventType.RUN_CREATED:
            for node in (data.get("definition") or {}).get("nodes") or ():
                if isinstance(node, dict) and isinstance(node.get("id"), str):
                    self.lane(node["id"])
            return
        if etype in (EventType.RUN_STATE_CHANGED, EventType.RUN_COMPLETED):
            to = data.get("state") if etype == EventType.RUN_COMPLETED else data.get("to")
            self.state = str(to or self.state)
            if etype == EventType.RUN_COMPLETED:
                self.end = at
                for lane in self.lanes.values():
                    lane.close(at)
            return
        if etype == EventType.RUN_RESUMED:
            self.end = None
            for lane in self.lanes.values():
                if lane.open is not None:
                    lane.open.kind = INTERRUPTED
                    lane.close(at)
            return
        if event.node_id is None:
            return
        lane = self.lane(event.node_id)
        if etype == EventType.NODE_STARTED:
            lane.state = "running"
            lane.begin(RAN, at, event.attempt)
        elif etype == EventType.NODE_RETRIED:
            lane.state = "retrying"
            lane.close(at, TIMED_OUT if event.error_class == "timeout" else FAILED)
            lane.begin(RETRY_WAIT, at, event.attempt)
        elif etype == EventType.APPROVAL_REQUESTED:
            lane.state = "waiting"
            lane.begin(APPROVAL_WAIT, at, event.attempt)
        elif etype in (EventType.APPROVAL_GRANTED, EventType.APPROVAL_REJECTED):
            if lane.open is not None and lane.open.kind == APPROVAL_WAIT:
                lane.begin(RAN, at, event.attempt)
        elif etype == EventType.NODE_LOG:
            if data.get("stream") == "interlock" and _SIGTERM.match(str(data.get("line", ""))):
                lane.begin(GRACE, at, event.attempt)
        elif etype == EventType.NODE_SKIPPED:
            lane.state = "skipped"
            lane.close(at)
        elif etype in _ENDED_BY:
            lane.state = etype.removeprefix("node.")
            if etype == EventType.NODE_SUCCEEDED and data.get("reused_from"):
                lane.spans.append(Span(REUSED, at, at, 0))
                return
            # An attempt's span takes the mark of how it ended; a wait or a grace keeps its own.
            lane.close(at, TIMED_OUT if event.error_class == "timeout" else _ENDED_BY[etype])


def _axis_label(seconds: float) -> str:
    return "0s" if seconds <= 0 else fmt.duration(seconds)


def render(
    timeline: Timeline,
    width: int,
    now: float,
    *,
    ascii: bool = False,
    rows: int | None = None,
    lost: bool = False,
) -> tuple[list[str], list[str]]:
    """The timeline in `width` columns: (the axis and one row per node, the legend lines).

    A row is `glyph name |bar|`: the glyph is the node's state mark, the bar the run's span from
    its first event to its end (or `now`), each span painted with its character (at least one
    column, so a short failed attempt still shows). `rows`: draw at most that many nodes, and
    a last line saying how many more there are. `lost`: the run's owner is gone (it is
    `interrupted`): what was at work is marked orphaned, as the run view marks it."""
    lanes = list(timeline.lanes.values())
    hidden = 0
    if rows is not None and len(lanes) > rows:
        hidden, lanes = len(lanes) - rows, lanes[:rows]
    name_width = min(NAME_MAX, max((len(lane.node_id) for lane in lanes), default=4))
    bar = max(10, width - name_width - 5)
    start = timeline.start if timeline.start is not None else now
    end = timeline.end if timeline.end is not None else max(now, start)
    total = max(end - start, 1e-3)

    def column(at: float) -> int:
        return min(bar - 1, max(0, int((at - start) / total * bar)))

    lines = [_axis(name_width, bar, total)]
    mark = 1 if ascii else 0
    for lane in lanes:
        cells = [" "] * bar
        ranks = [-1] * bar
        for span in lane.spans:
            first = column(span.start)
            stop = span.end if span.end is not None else end
            last = max(first + 1, min(bar, math.ceil((stop - start) / total * bar)))
            char, rank = MARKS[span.kind][mark], _PRIORITY[span.kind]
            for i in range(first, last):
                if rank >= ranks[i]:
                    cells[i], ranks[i] = char, rank
        name = lane.node_id
        if len(name) > name_width:
            name = name[: name_width - 1] + "~"
        state = "orphaned" if lost and lane.state in ("running", "waiting") else lane.state
        glyph = fmt.node_glyph(state, ascii=ascii)
        lines.append(f"{glyph} {name:<{name_width}} |{''.join(cells)}|")
    if hidden:
        lines.append(f"  ... and {hidden} more nodes (the timeline draws the first {rows})")
    return lines, _legend(width, ascii=ascii)


def _axis(name_width: int, bar: int, total: float) -> str:
    """`0s` under the bar's first column, the middle time in the middle, the total at the end."""
    cells = [" "] * (bar + 2)
    labels = ((0, _axis_label(0)), (bar // 2, _axis_label(total / 2)), (bar, _axis_label(total)))
    for col, text in labels:
        at = min(max(0, col + 1 - len(text) // 2 if col else 1), bar + 2 - len(text))
        cells[at : at + len(text)] = text
    return " " * (name_width + 2) + "".join(cells).rstrip()


def _legend(width: int, *, ascii: bool) -> list[str]:
    mark = 1 if ascii else 0
    items = [f"{MARKS[kind][mark]} {text}" for kind, text in LEGEND]
    lines, line = [], ""
    for item in items:
        candidate = f"{line}  {item}" if line else item
        if len(candidate) > width and line:
            lines.append(line)
            line = item
        else:
            line = candidate
    return [*lines, line] if line else lines
