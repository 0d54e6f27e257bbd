"""Server-Sent Events of a run's stored events.

Contract: a stream sends the run's stored events with seq > `after` in seq order, each as
`id: <seq>` and `data: <event JSON>`, and ends after `run.completed`; no event is sent twice
and none is skipped, because the store (the truth) is read with `after_seq` = the last seq
sent. A comment line (`: keep-alive`) goes out after `keepalive` seconds of silence. If the
store cannot be read mid-stream, an `event: error` message with `{"error", "issues"}` ends it.

Waking: one `RunWatch` per followed run (shared by all of its streams) looks at the run's last
stored seq. Runs of other processes and hosts are polled (every `poll` seconds); for this
process's own runs, the manager's live events (the `Wakeups` sink) say that seq N was just
published, and the watch looks again every few milliseconds until the store's group commit
has made N durable, so a client sees an own run's event within about one commit window.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable

    from engine.events import Event
    from engine.store import Store

POLL = 0.1  # seconds between looks at a run no live event tells us about
COMMIT_POLL = 0.003  # seconds between looks while a published event is not committed yet
COMMIT_WAIT = 2.0  # seconds a published seq may take to be committed before polling slows
KEEPALIVE = 15.0
KEEP = 1000  # events a watch keeps for its streams
BATCH = 500
TERMINAL = frozenset({"succeeded", "failed", "timeout", "cancelled"})


class RunWatch:
    """Follows one run's stored events and keeps the latest of them, encoded, for its streams.

    Each new event is read from the store and encoded once, however many streams follow the
    run; a stream that is behind the kept window (a resume from long ago) reads the store.
    """

    def __init__(self, store: Store, run_id: str, poll: float, keep: int = KEEP) -> None:
        self.store = store
        self.run_id = run_id
        self.poll = poll
        self.keep = keep
        self.known = -1  # the highest seq seen stored (-1: not looked yet)
        self.base = 0  # `recent` holds the events with seq in (base, known]
        self.recent: deque[tuple[int, bytes, bool]] = deque()  # (seq, message, is the end)
        self.hinted = 0  # the highest seq the live events say was published
        self.users = 0
        self.closing = False  # the service is stopping: streams end
        self._changed = asyncio.Event()
        self._hint = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=f"interlock-watch:{self.run_id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def hint(self, seq: int) -> None:
        if seq > self.hinted:
            self.hinted = seq
            self._hint.set()

    def since(self, seq: int) -> list[tuple[int, bytes, bool]] | None:
        """The kept events after `seq`, or None if the window does not reach back to it."""
        if self.known < 0 or seq < self.base:
            return None
        return [item for item in self.recent if item[0] > seq]

    async def wait_beyond(self, seq: int, timeout: float) -> bool:  # noqa: ASYNC109  (a wait with a bound is the point)
        """True once a seq above `seq` is stored; False after `timeout` seconds without."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.known <= seq and not self.closing:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            changed = self._changed
            try:
                async with asyncio.timeout(remaining):
                    await changed.wait()
            except TimeoutError:
                return self.known > seq
        return True

    def close(self) -> None:
        """End the streams of this run (they send what is stored, then stop)."""
        self.closing = True
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _read(self) -> None:
        if self.known < 0:
            # Start from now: streams read what came before from the store themselves.
            self.known = self.base = await self.store.last_seq(self.run_id)
            return
        while True:
            events = await self.store.events(self.run_id, after_seq=self.known, limit=BATCH)
            for event in events:
                ended = event.event_type == "run.completed"
                self.recent.append((event.seq, sse_message(event), ended))
                self.known = event.seq
            while len(self.recent) > self.keep:
                self.base = self.recent.popleft()[0]
            if len(events) < BATCH:
                return

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        hinted_since: float | None = None
        while True:
            before = self.known
            try:
                await self._read()
            except asyncio.CancelledError:
                raise
            except Exception:
                pass  # a failed read is retried on the next look
            if self.known != before:
                # Waiters hold the old event; a fresh one is the next generation.
                changed, self._changed = self._changed, asyncio.Event()
                changed.set()
            if self.hinted > self.known:
                now = loop.time()
                hinted_since = hinted_since if hinted_since is not None else now
                if now - hinted_since < COMMIT_WAIT:
                    await asyncio.sleep(COMMIT_POLL)
                    continue
                # Published but never committed (a store failure): back to plain polling.
                self.hinted = self.known
            hinted_since = None
            self._hint.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll):
                    await self._hint.wait()


class Wakeups:
    """The watches of the runs being streamed; as a manager sink, it hints them of new seqs."""

    def __init__(self, store: Store, poll: float = POLL) -> None:
        self.store = store
        self.poll = poll
        self._watches: dict[str, RunWatch] = {}

    def publish(self, event: Event) -> None:
        watch = self._watches.get(event.run_id)
        if watch is not None:
            watch.hint(event.seq)

    async def flush(self) -> None:
        return None

    def acquire(self, run_id: str) -> RunWatch:
        watch = self._watches.get(run_id)
        if watch is None:
            watch = self._watches[run_id] = RunWatch(self.store, run_id, self.poll)
            watch.start()
        watch.users += 1
        return watch

    async def release(self, watch: RunWatch) -> None:
        watch.users -= 1
        if watch.users == 0 and self._watches.get(watch.run_id) is watch:
            del self._watches[watch.run_id]
            await watch.stop()

    def end_streams(self, keep: Iterable[str] = ()) -> None:
        """End every stream but those of the runs in `keep` (which end at their run.completed)."""
        kept = set(keep)
        for run_id, watch in self._watches.items():
            if run_id not in kept:
                watch.close()

    async def close(self) -> None:
        watches, self._watches = list(self._watches.values()), {}
        for watch in watches:
            await watch.stop()

    def __len__(self) -> int:
        return len(self._watches)


def sse_message(event: Event) -> bytes:
    # Event JSON is one line (compact, newlines inside strings are escaped), so one data field.
    return f"id: {event.seq}\ndata: {event.to_json()}\n\n".encode()


async def event_stream(
    wakeups: Wakeups, run_id: str, after: int, *, keepalive: float = KEEPALIVE
) -> AsyncIterator[bytes]:
    """The SSE body: stored events after `after`, then new ones as they are stored."""
    store = wakeups.store
    watch = wakeups.acquire(run_id)
    last = after
    try:
        yield b": stream of run " + run_id.encode() + b"\n\n"
        row = await store.run_row(run_id)
        if row is not None and row.state in TERMINAL and after >= row.last_seq:
            return  # the client has everything, run.completed included
        while True:
            closing = watch.closing
            # Behind the watch's window, or ending (what is stored now is all that comes):
            # read the store itself.
            items = None if closing else watch.since(last)
            if items is None:
                events = await store.events(run_id, after_seq=last, limit=BATCH)
                items = [(e.seq, sse_message(e), e.event_type == "run.completed")
                         for e in events]
                if len(items) == BATCH:
                    items.append((0, b"", False))  # more to read: do not wait
            for seq, message, ended in items:
                if not message:
                    continue
                last = seq
                yield message
                if ended:
                    return
            if items and not items[-1][1]:
                continue
            if closing:
                yield b": the service is stopping\n\n"
                return
            if not items and not await watch.wait_beyond(last, keepalive):
                yield b": keep-alive\n\n"
    except Exception as exc:
        # The response has started: the failure can only be told in the stream itself.
        error = json.dumps({"error": f"the stream stopped: {exc}", "issues": []})
        yield f"event: error\ndata: {error}\n\n".encode()
    finally:
        await wakeups.release(watch)
