"""EventLog: a run's events, one line each, newest at the bottom, filterable."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, ClassVar

from rich.cells import cell_len
from rich.control import strip_control_codes
from rich.segment import Segment
from rich.style import Style
from textual.cache import LRUCache
from textual.geometry import Size
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tui import format as fmt
from tui.ascii import ascii_text
from tui.escape import printable_lines
from tui.widgets.vim import VIM_SCROLL_BINDINGS

if TYPE_CHECKING:
    from collections.abc import Iterable

    from textual.binding import BindingType

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
    elif event.event_type.startswith("notification."):
        parts.append(f"{data.get('channel')} {data.get('target')} on {data.get('on')}")
    elif event.event_type == "node.started":
        parts.append(f"attempt {event.attempt}")
        if data.get("timeout") is not None:
            parts.append(f"timeout {fmt.countdown(float(data['timeout']))}")
    elif event.event_type == "node.retried":
        parts.append(f"attempt {event.attempt}, next in {fmt.duration(data.get('delay'))}")
    elif event.event_type == "breaker.state_changed":
        parts.append(
            f"{data.get('key')}: {fmt.breaker_label(data.get('from'))} -> "
            f"{fmt.breaker_label(data.get('to'))}"
        )
    if event.error_class:
        parts.append(f"[{event.error_class}]")
    if event.reason:
        parts.append(event.reason)
    if event.actor != "engine":
        parts.append(f"by {event.actor}")
    return printable_lines(" ".join(parts))  # a reason may run over lines: shown so


def event_style(event: Event) -> str:
    return _style_of(event.event_type)


@functools.cache
def _style_of(event_type: str) -> str:
    for prefix, style in _TYPE_STYLES.items():
        if event_type.startswith(prefix):
            return style
    return ""


def event_matches(event: Event, query: str) -> bool:
    """Every word of the filter must appear in the event's line (case-insensitive)."""
    return line_matches(describe(event), query)


def line_matches(line: str, query: str) -> bool:
    line = line.lower()
    return all(word in line for word in query.lower().split())


def match_spans(line: str, query: str) -> list[tuple[int, int]]:
    """Where the words of `query` occur in `line` (case-insensitive), as sorted, merged
    (start, end) spans: what the log highlights."""
    words = [w for w in query.lower().split() if w]
    if not words:
        return []
    lower = line.lower()
    spans: list[tuple[int, int]] = []
    for word in words:
        start = lower.find(word)
        while start >= 0:
            spans.append((start, start + len(word)))
            start = lower.find(word, start + len(word))
    spans.sort()
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def log_entry(event: Event) -> tuple[int, str, str]:
    """(seq, text, style) of an event's line, the text as a `Text` would show it: no control
    codes, tabs expanded (a reason may run over several lines)."""
    text = describe(event)
    if not text.isprintable():
        text = strip_control_codes(text).expandtabs(8)
    return event.seq, text, _style_of(event.event_type)


class EventLog(ScrollView, can_focus=True):
    """The live event log of a run, newest at the bottom. Set `query_text` to show only the
    matching events.

    Each event is kept as its line of text, and a line is drawn only while it is on screen: a
    burst of hundreds of events costs a string each. (A `RichLog` renders and measures every
    line as it is written, which under a busy run held the console up for a tenth of a second
    at a time, keys included.) Plain tuples of strings, unlike the events, are no work for the
    garbage collector, however long the run.
    """

    BINDINGS: ClassVar[list[BindingType]] = VIM_SCROLL_BINDINGS

    DEFAULT_CSS = """
    EventLog {
        height: 1fr;
        min-height: 4;
        background: $surface;
        color: $foreground;
        overflow-y: scroll;
        &:focus { background-tint: $foreground 5%; }
    }
    """

    query_text: reactive[str] = reactive("", init=False)
    """The filter: only events whose line contains every word are shown, the words highlighted."""

    follow: reactive[bool] = reactive(True, init=False)
    """Keep the newest line in view as events arrive (off: the view stays where it was
    scrolled to, for reading back while the run goes on)."""

    def __init__(self, *, ascii: bool = False, id: str | None = None) -> None:
        super().__init__(id=id)
        self.ascii = ascii  # --ascii: what nodes print is spelled in ASCII too
        self._entries: list[tuple[int, str, str]] = []  # every event: (seq, text, style)
        self._lines: list[tuple[str, str]] = []  # (text, style) of the lines shown, oldest first
        self._dropped = 0  # lines trimmed off the top so far: line numbers stay unique
        self._widest = 0
        self._styles: dict[str, Style] = {}
        self._cache: LRUCache[tuple[int, int, int], Strip] = LRUCache(128)

    @property
    def lines(self) -> list[str]:
        """The lines shown (at most `SHOWN`), oldest first."""
        return [text for text, _ in self._lines]

    @property
    def last_seq(self) -> int:
        return self._entries[-1][0] if self._entries else 0

    def reset(self, events: Iterable[Event]) -> None:
        self._entries = [log_entry(event) for event in events]
        self._redraw()

    def add(self, events: Iterable[Event]) -> None:
        """Append events; ones already shown (by seq) are skipped."""
        last = self.last_seq
        fresh = [log_entry(event) for event in events if event.seq > last]
        self._entries.extend(fresh)
        self._show(self._matching(fresh))

    def watch_query_text(self) -> None:
        self._redraw()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles.clear()
        self._cache.clear()

    def _matching(self, entries: list[tuple[int, str, str]]) -> list[tuple[int, str, str]]:
        query = self.query_text
        shown = [e for e in entries if line_matches(e[1], query)] if query else entries
        return shown[-SHOWN:]

    def _redraw(self) -> None:
        self._lines.clear()
        self._cache.clear()
        self._dropped = self._widest = 0
        self._show(self._matching(self._entries))
        self.virtual_size = Size(self._widest, len(self._lines))
        self.refresh()

    def _show(self, entries: list[tuple[int, str, str]]) -> None:
        if not entries:
            return
        lines = self._lines
        widest = self._widest
        for _, text, style in entries:
            for line in text.split("\n") if "\n" in text else (text,):
                if self.ascii and not line.isascii():
                    line = ascii_text(line)
                lines.append((line, style))
                widest = max(widest, len(line) if line.isascii() else cell_len(line))
        self._widest = widest
        excess = len(lines) - SHOWN
        if excess > 0:
            del lines[:excess]
            self._dropped += excess
            self.refresh()  # every line moved up
        self.virtual_size = Size(widest, len(lines))
        if self.follow:
            self.scroll_end(animate=False, immediate=False, x_axis=False)

    def watch_follow(self, follow: bool) -> None:
        if follow:
            self.scroll_end(animate=False, immediate=False, x_axis=False)

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.scrollable_content_region.width
        if index >= len(self._lines):
            return Strip.blank(width, self.rich_style)
        key = (index + self._dropped, scroll_x, width)
        strip = self._cache.get(key)
        if strip is None:
            text, style = self._lines[index]
            whole = Strip(self._segments(text, self._style(style)), cell_len(text))
            strip = self._cache[key] = whole.crop_extend(scroll_x, scroll_x + width, None)
        return strip.apply_style(self.rich_style)

    def _segments(self, text: str, style: Style) -> list[Segment]:
        spans = match_spans(text, self.query_text) if self.query_text else []
        if not spans:
            return [Segment(text, style)]
        # Reverse video: a match stands out without colour too (NO_COLOR, --ascii terminals).
        mark = style + Style(reverse=True, bold=True)
        segments, at = [], 0
        for start, end in spans:
            if start > at:
                segments.append(Segment(text[at:start], style))
            segments.append(Segment(text[start:end], mark))
            at = end
        if at < len(text):
            segments.append(Segment(text[at:], style))
        return segments

    def _style(self, name: str) -> Style:
        style = self._styles.get(name)
        if style is None:
            style = self._styles[name] = Style.parse(name) if name else Style.null()
        return style
