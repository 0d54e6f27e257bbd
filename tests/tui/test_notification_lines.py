"""How notification events read in the console's event log (a pure function of the event)."""

from __future__ import annotations

from engine.events import Event, EventType
from tui.widgets.event_log import describe


def test_a_notification_line_names_the_channel_target_and_outcome() -> None:
    failed = Event("e9", 9, EventType.NOTIFICATION_FAILED, "r1", "2026-12-07T10:00:09.000000Z",
                   reason="HTTP 500",
                   data={"channel": "webhook", "target": "https://hooks.example/x",
                         "on": "failed", "attempts": 3, "status": 500})

    line = describe(failed)

    assert "notification.failed" in line
    assert "webhook https://hooks.example/x on failed HTTP 500" in line
