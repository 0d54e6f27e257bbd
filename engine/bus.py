"""Where events go: the sink interface, an in-memory sink, and the live in-process bus.

Contract: a sink has `publish(event)` (synchronous, must not block the loop) and `flush()`
(returns once everything published so far is durable, or at once for sinks that are not
durable). The executor publishes each event to every sink in order and awaits `flush()` of
every sink before it reports a run as ended. The durable `Store` is one such sink.

The `Bus` delivers events live to subscribers in this process (the console's bridge, metrics,
`interlock run`'s progress): each subscriber gets a callback; a slow subscriber must batch on
its side, the bus never buffers on its behalf.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Protocol, runtime_checkable

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


Subscriber = Callable[[Event], None]


class Bus:
    """Live fan-out of events to in-process subscribers."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Register `callback`; returns a function that unsubscribes it."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def publish(self, event: Event) -> None:
        for callback in tuple(self._subscribers):
            callback(event)

    async def flush(self) -> None:
        return None

    async def stream(self, run_id: str | None = None) -> AsyncIterator[Event]:
        """Iterate over live events (of one run, or all) until the consumer stops."""
        queue: asyncio.Queue[Event] = asyncio.Queue()

        def put(event: Event) -> None:
            if run_id is None or event.run_id == run_id:
                queue.put_nowait(event)

        unsubscribe = self.subscribe(put)
        try:
            while True:
                yield await queue.get()
        finally:
            unsubscribe()
