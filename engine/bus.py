"""Where events go: the sink interface, and an in-memory sink.

Contract: a sink has `publish(event)` (synchronous, must not block the loop) and `flush()`
(returns once everything published so far is durable, or at once for sinks that are not
durable). The executor publishes each event to every sink in order and awaits `flush()` of
every sink before it reports a run as ended. The durable `Store` is one such sink; whatever
follows a run live in this process (the console's bridge, metrics, `interlock run`'s progress)
is another, given to the `RunManager` as a sink: a slow one batches on its side, nothing
buffers on its behalf.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from engine.events import Event


@runtime_checkable
class EventSink(Protocol):
    def publish(self, event: Event) -> None: ...

    async def flush(self) -> None: ...


class MemorySink:
    """Keeps every event in memory, by run: for tests, embedding and benchmarks."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.by_run: dict[str, list[Event]] = defaultdict(list)

    def publish(self, event: Event) -> None:
        self.events.append(event)
        self.by_run[event.run_id].append(event)

    async def flush(self) -> None:
        return None

    def of(self, run_id: str) -> list[Event]:
        return list(self.by_run.get(run_id, ()))

    def clear(self) -> None:
        """Forget every event kept so far."""
        self.events.clear()
        self.by_run.clear()
