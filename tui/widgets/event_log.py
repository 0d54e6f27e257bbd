"""EventLog: a run's events, one line each, newest at the bottom, filterable."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import RichLog

from tui import format as fmt

if TYPE_CHECKING:
    from collections.abc import Iterable

    from engine.events import Event

SHOWN = 2000  # lines kept on screen; the store keeps every event

_TYPE_STYLES = {
    "run.": "bold",
    "node.succeeded": "green",
    "node.failed": "red",
    "node.timed_out": "red",
    "node.retried": "yellow",
    "node.cancelled": "yellow",
    "node.skipped": "dim",
    "node.log": "dim",
    "gate.": "bold red",
    "breaker.": "magenta",
    "approval.": "bold magenta",
}


def describe(event: Event) -> str:
    """One line for an event: time, seq, type, node, and what matters about it."""
    data = event.data or {}
    parts = [fmt.clock_time(event.timestamp_utc), f"#{event.seq:<4}", f"{event.event_type:<22}"]
    if event.node_id:
        parts.append(event.node_id)
    if event.event_type == "node.log":
        parts.append(f"| {data.get('line', '')}")
    elif event.event_type == "run.state_changed":
        parts.append(f"{data.get('from', '?')} -> {data.get('to', '?')}")
    elif event.event_type == "run.completed":
        parts.append(str(data.get("state", "")))
    elif event.event_type == "node.started":
        parts.append(f"attempt {event.attempt}")
        if data.get("timeout") is not None:
            parts.append(f"timeout {fmt.countdown(float(data['timeout']))}")
    elif event.event_type == "node.retried":
        parts.append(f"attempt {event.attempt}, next in {fmt.duration(data.get('delay'))}")
    elif event.event_type == "breaker.state_changed":
        parts.append(f"{data.get('key')}: {data.get('from')} -> {data.get('to')}")
    if event.error_class:
        parts.append(f"[{event.error_class}]")
    if event.reason:
        parts.append(event.reason)
    if event.actor != "engine":
        parts.append(f"by {event.actor}")
    return " ".join(parts)


def event_style(event: Event) -> str:
    for prefix, style in _TYPE_STYLES.items():
        if event.event_type.startswith(prefix):
            return style
    return ""


def event_matches(event: Event, query: str) -> bool:
    """Every word of the filter must appear in the event's line (case-insensitive)."""
    line = describe(event).lower()
    return all(word in line for word in query.lower().split())


class EventLog(RichLog):
    """The live event log of a run. Set `query` to show only the matching events."""

    DEFAULT_CSS = """
    EventLog {
        height: 1fr;
        min-height: 4;
        background: $surface;
    }
    """

    query_text: reactive[str] = reactive("", init=False)
    """The filter: only events whose line contains every word are shown."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, max_lines=SHOWN, wrap=False, markup=False, auto_scroll=True)
        self._events: list[Event] = []

    @property
    def events(self) -> list[Event]:
        return self._events

    def reset(self, events: Iterable[Event]) -> None:
        self._events = list(events)
        self._redraw()

    def add(self, events: Iterable[Event]) -> None:
        """Append events; ones already shown (by seq) are skipped."""
        last = self._events[-1].seq if self._events else 0
        fresh = [event for event in events if event.seq > last]
        self._events.extend(fresh)
        query = self.query_text
        self._write_lines([e for e in fresh if not query or event_matches(e, query)][-SHOWN:])

    def watch_query_text(self) -> None:
        self._redraw()

    def _redraw(self) -> None:
        self.clear()
        query = self.query_text
        shown = [e for e in self._events if not query or event_matches(e, query)]
        self._write_lines(shown[-SHOWN:])

    def _write_lines(self, events: list[Event]) -> None:
        # One write per batch: RichLog renders and measures on every call, so a burst of events
        # written line by line costs a render each (the console's hot spot under load).
        if events:
            self.write(Text("\n").join(Text(describe(e), style=event_style(e)) for e in events))
