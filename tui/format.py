"""Pure formatting for the console: state glyphs and colours, durations, countdowns and bars.

Contract: plain functions of their arguments (the clock is always passed in as `now`, seconds
since the epoch), no Textual, no I/O, so they are tested without an app. Every state has a glyph
that carries its meaning without colour (NO_COLOR terminals, screen readers of captured panes),
and an ASCII spelling for `--ascii`.
"""

from __future__ import annotations

import math
import time
from typing import Any

from engine.events import parse_timestamp
from engine.state import NodeStatus, RunStatus
from tui.escape import printable

NODE_GLYPHS: dict[str, str] = {
    NodeStatus.PENDING: "·",
    NodeStatus.RUNNING: "▶",
    NodeStatus.RETRYING: "↻",
    NodeStatus.WAITING: "⏸",
    NodeStatus.SUCCEEDED: "✔",
    NodeStatus.FAILED: "✖",
    NodeStatus.TIMED_OUT: "⌛",
    NodeStatus.SKIPPED: "⊘",
    NodeStatus.CANCELLED: "■",
    # Shown, not stored: a running node in its cleanup grace, a running node whose owner is lost.
    "cancelling": "◼",
    "orphaned": "↯",
}
NODE_GLYPHS_ASCII: dict[str, str] = {
    NodeStatus.PENDING: ".",
    NodeStatus.RUNNING: ">",
    NodeStatus.RETRYING: "R",
    NodeStatus.WAITING: "W",
    NodeStatus.SUCCEEDED: "+",
    NodeStatus.FAILED: "X",
    NodeStatus.TIMED_OUT: "T",
    NodeStatus.SKIPPED: "-",
    NodeStatus.CANCELLED: "#",
    "cancelling": "K",
    "orphaned": "!",
}
# Runs reuse the node marks; `timeout` and `interrupted` get their own.
RUN_GLYPHS: dict[str, str] = {
    RunStatus.PENDING: "·",
    RunStatus.RUNNING: "▶",
    RunStatus.WAITING: "⏸",
    RunStatus.SUCCEEDED: "✔",
    RunStatus.FAILED: "✖",
    RunStatus.TIMEOUT: "⌛",
    RunStatus.CANCELLED: "■",
    RunStatus.INTERRUPTED: "↯",
    "cancelling": "◼",
}
RUN_GLYPHS_ASCII: dict[str, str] = {
    RunStatus.PENDING: ".",
    RunStatus.RUNNING: ">",
    RunStatus.WAITING: "W",
    RunStatus.SUCCEEDED: "+",
    RunStatus.FAILED: "X",
    RunStatus.TIMEOUT: "T",
    RunStatus.CANCELLED: "#",
    RunStatus.INTERRUPTED: "!",
    "cancelling": "K",
}
# Rich style per state (node and run states share names where they mean the same).
STATE_STYLES: dict[str, str] = {
    "pending": "dim",
    "running": "bold cyan",
    "retrying": "bold yellow",
    "waiting": "bold magenta",
    "succeeded": "green",
    "failed": "bold red",
    "timed_out": "red",
    "timeout": "red",
    "skipped": "dim italic",
    "cancelled": "yellow",
    "interrupted": "bold yellow",
    "cancelling": "bold yellow",
    "orphaned": "bold yellow",
}
BREAKER_STYLES: dict[str, str] = {"closed": "green", "half_open": "yellow", "open": "bold red"}
BREAKER_LABELS: dict[str, str] = {"closed": "closed", "half_open": "half-open", "open": "open"}


def breaker_label(state: object) -> str:
    """A breaker state as people read it (`half-open`, never `half_open`)."""
    text = str(state or "")
    return BREAKER_LABELS.get(text, text.replace("_", "-"))


def node_glyph(state: str, *, ascii: bool = False) -> str:
    table = NODE_GLYPHS_ASCII if ascii else NODE_GLYPHS
    return table.get(state, "?")


def run_glyph(state: str, *, ascii: bool = False) -> str:
    table = RUN_GLYPHS_ASCII if ascii else RUN_GLYPHS
    return table.get(state, "?")


def state_style(state: str) -> str:
    return STATE_STYLES.get(state, "")


def duration(seconds: float | None) -> str:
    """A short human duration: `-`, `420ms`, `4.2s`, `1m05s`, `2h03m` (the one spelling of a
    duration: the console, `interlock summary` and the playback bar all use it)."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    return _minutes(int(seconds))


def countdown(seconds: float | None) -> str:
    """A countdown in whole seconds, rounded up (a timer never shows 0 before it fires)."""
    if seconds is None:
        return "-"
    whole = max(0, math.ceil(seconds - 1e-9))
    if whole < 60:
        return f"{whole}s"
    return _minutes(whole)


def _minutes(whole: int) -> str:
    """A minute or more, in whole seconds: `1m05s`, `2h03m`."""
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


# Timestamps already read: a view works out every node's durations once a second, and a
# 10,000-node run's 20,000 timestamps took a quarter of a second to parse each time.
_EPOCHS: dict[str, float] = {}
_EPOCHS_KEPT = 1 << 16


def epoch(timestamp: str | None) -> float | None:
    """Seconds since the epoch of an event timestamp (None stays None)."""
    if not timestamp:
        return None
    value = _EPOCHS.get(timestamp)
    if value is None:
        if len(_EPOCHS) >= _EPOCHS_KEPT:
            _EPOCHS.clear()
        value = _EPOCHS[timestamp] = parse_timestamp(timestamp)
    return value


def remaining(deadline: float | None, now: float) -> float | None:
    """Seconds left until `deadline` (never negative); None when there is no deadline."""
    if deadline is None:
        return None
    return max(0.0, deadline - now)


def elapsed(start: str | None, end: str | None, now: float) -> float | None:
    """Seconds from `start` to `end`, or to `now` while `end` is unknown."""
    began = epoch(start)
    if began is None:
        return None
    finished = epoch(end)
    return max(0.0, (finished if finished is not None else now) - began)


def bar(fraction: float, width: int, *, ascii: bool = False) -> str:
    """A bar `width` cells wide, filled to `fraction` (clamped to 0..1), in eighths."""
    if width <= 0:
        return ""
    fraction = min(1.0, max(0.0, fraction))
    if ascii:
        full = round(fraction * width)
        return "#" * full + "-" * (width - full)
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    partial = " ▏▎▍▌▋▊▉"[part] if part and full < width else ""
    return ("█" * full + partial).ljust(width, "░")


def countdown_bar(
    left: float | None, total: float | None, width: int, *, ascii: bool = False
) -> str:
    """Time left as a draining bar plus the number: `██████    12s`; blank without a deadline."""
    if left is None or not total or total <= 0:
        return " " * width
    text = countdown(left)
    room = width - len(text) - 1
    if room < 3:
        return text.rjust(width)
    return f"{bar(left / total, room, ascii=ascii)} {text}"


def ago(seconds: float | None) -> str:
    """`updated 3s ago` style age: `just now`, `3s ago`, `2m ago`, `1h ago`."""
    if seconds is None:
        return "never"
    if seconds < 1:
        return "just now"
    if seconds < 60:
        return f"{int(seconds)}s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)}m ago"
    return f"{int(seconds // 3600)}h ago"


def short_id(run_id: str) -> str:
    return run_id[:8]


def clock_time(timestamp: str | None) -> str:
    """`HH:MM:SS` (UTC) of an event timestamp, for logs and tables."""
    if not timestamp:
        return "-"
    return timestamp[11:19] if len(timestamp) >= 19 else timestamp


def day_time(timestamp: str | None) -> str:
    """`YYYY-MM-DD HH:MM:SS` (UTC) of a timestamp; sorts as text."""
    if not timestamp:
        return "-"
    return timestamp[:19].replace("T", " ")


def epoch_clock_time(seconds: float) -> str:
    """`HH:MM:SS` (UTC) of an epoch time."""
    return time.strftime("%H:%M:%S", time.gmtime(seconds))


def one_line(text: Any, width: int) -> str:
    """The first line of `text`, cut to `width` characters with an ellipsis."""
    lines = ("" if text is None else str(text)).strip().splitlines()
    value = printable(lines[0]) if lines else ""
    return value if len(value) <= width else value[: max(0, width - 1)] + "…"


def parse_param(text: str) -> Any:
    """A param typed in a form, read like `--param K=V`: a YAML 1.2 scalar (`tui.params`)."""
    from tui.params import parse_param as parse

    try:
        return parse(text)
    except ValueError:  # an int past Python's digit limit (4300)
        raise ValueError(
            f"a number of {len(text.strip()):,} digits is too long (quote it to pass it as text)"
        ) from None


def show_param(value: Any) -> str:
    """A param default as it is pre-filled in the form (the inverse of `parse_param`)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and parse_param(value) != value:
        import json

        return json.dumps(value)  # a string that reads as a number: quoted, it stays a string
    return str(value)
