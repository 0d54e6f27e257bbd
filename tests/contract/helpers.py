"""Events and owners for the contract suite, built by hand (the executor's job elsewhere)."""

from __future__ import annotations

import socket
import time
from typing import Any

from engine.events import Event, EventType, new_id
from engine.store import Owner

T0 = 1_700_000_000.0


def stamp(i: int) -> str:
    """A distinct, increasing ISO timestamp per event."""
    seconds = int(T0) + i // 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{i % 1000:03d}000Z"


class RunWriter:
    """The events of one run with consecutive seqs."""

    def __init__(self, run_id: str | None = None, *, clock: int = 0) -> None:
        self.run_id = run_id or new_id()
        self.seq = 0
        self.clock = clock

    def event(self, event_type: str, **fields: Any) -> Event:
        self.seq += 1
        self.clock += 1
        return Event(new_id(), self.seq, event_type, self.run_id, stamp(self.clock), **fields)

    def created(self, pipeline_id: str = "etl", **data: Any) -> Event:
        definition = {"id": pipeline_id, "nodes": [{"id": "a", "type": "shell"}]}
        return self.event(
            EventType.RUN_CREATED,
            data={"pipeline_id": pipeline_id, "definition": definition, "params": {}, **data},
        )

    def state(self, to: str) -> Event:
        return self.event(EventType.RUN_STATE_CHANGED, data={"to": to})

    def logs(self, n: int) -> list[Event]:
        return [
            self.event(EventType.NODE_LOG, node_id="a", data={"line": f"line {i}"})
            for i in range(n)
        ]

    def completed(self, state: str = "succeeded") -> Event:
        return self.event(EventType.RUN_COMPLETED, data={"state": state})

    def whole_run(self, logs: int = 5) -> list[Event]:
        return [
            self.created(),
            self.state("running"),
            self.event(EventType.NODE_STARTED, node_id="a", data={"timeout": 5.0}),
            *self.logs(logs),
            self.event(EventType.NODE_SUCCEEDED, node_id="a", data={"output": {"rows": 3}}),
            self.completed(),
        ]


def process(n: int) -> Owner:
    """An owner on this host that no live process is (a pid above any real one)."""
    return Owner(socket.gethostname(), 2**22 + 100 + n, 1.0)
