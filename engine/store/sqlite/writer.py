"""The group-commit writer: one writer task per store, the only path by which the store writes.

Contract:
- `publish(event)` only appends to a queue and never blocks. The writer takes what is queued in
  batches (closed at `batch_size` events, after `batch_window` seconds, or at once when somebody
  is waiting on the batch and nothing more is queued) and writes each batch in one transaction
  (`batch.transact`, one hand-over to the connection's thread). "Acknowledged" means committed:
  `flush()` returns, and `append()` returns, only after the COMMIT that made durable everything
  published before the call (for `append`, its own events) has succeeded.
- Why one writer task: publish order = commit order without callers coordinating, one fsync for
  many events (the only way past a few hundred commits per second with FULL), no contention
  between writers of one process for SQLite's write lock, and cancellation safety: callers await
  shielded futures, so cancelling a caller never abandons a half-written batch. Other writes
  (`_submit`: ownership, commands, breakers) go through the same queue, so they are ordered after
  the events published before them; a claim and a breaker outcome join the batch being collected
  (a new run's `run.created` and its claim take one commit, not two).
- The default batch cap is 2048 events and the window 10 ms, both measured (benchmarks/NOTES.md):
  bigger batches write far fewer index pages per event under bulk load, and a commit in the
  middle of a run's burst of events competes with it for the GIL and the CPU. Waiters are not
  kept waiting by the window.
- Failure isolation (`batch`): a unit that breaks a constraint fails alone with `StoreError`; a
  failed published event is reported to the `append` that owns it, else to the next `flush()`.
- Fail-closed: once a batch holding a run's published events fails (lock past the busy timeout,
  disk full, I/O error) or is refused by the lease check, nothing more of that run is written
  (its log has no seq gap) and `write_failure_listeners` are told. `lagging()` says whether
  something published over a second ago is still unacknowledged, or a lease held here has gone
  unconfirmed for half its length (the executor starts no node meanwhile: `caught_up` renews
  it); `commit_listeners` see the events of every commit (what the CLI prints as done is what
  is stored). A listener's error never stops the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sqlite3
import time
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any, TypeVar

from engine.dbfile import describe
from engine.errors import UnknownRunError
from engine.events import Event
from engine.store.rows import StoreError
from engine.store.sqlite.base import StoreBase
from engine.store.sqlite.batch import (
    Batch,
    Claim,
    Group,
    Item,
    Job,
    Marker,
    Outcome,
    Stop,
    event_row,
    transact,
    unit_error,
)
from engine.store.sqlite.connection import in_transaction

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Sequence

    from engine.store.rows import Owner

_log = logging.getLogger("engine.store")
_T = TypeVar("_T")

__all__ = ["GroupCommitWriter"]


async def _writer_loop(
    ref: weakref.ref[GroupCommitWriter], queue: deque[Item], wakeup: asyncio.Event
) -> None:
    """The store's writer. Holds the store only while it has work, so an open store that its
    owner drops can still be collected (and warn)."""
    while True:
        if not queue:
            wakeup.clear()
            await wakeup.wait()
            continue
        store = ref()
        if store is None:
            return
        try:
            if await store._write_next():
                return
        finally:
            del store


class GroupCommitWriter(StoreBase):
    """The writing half of the store (see the module's contract)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        readonly: bool,
        batch_size: int,
        batch_window: float,
    ) -> None:
        super().__init__(path, readonly=readonly)
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if batch_window < 0:
            raise ValueError("batch_window must not be negative")
        self.batch_size = batch_size
        self.batch_window = batch_window
        self._queue: deque[Item] = deque()
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._busy = False  # the writer holds items taken from the queue
        self._unreported: list[StoreError] = []  # failed published events no flush has reported
        self.batches_committed = 0
        self.events_committed = 0
        # Leases: the fencing number this store writes each run's events with (a run absent
        # writes with 0: it was never claimed), and the runs this store may not write any more
        # (fail-closed: a failed batch, or a lease lost), with why.
        self._fences: dict[str, int] = {}
        self._poisoned: dict[str, StoreError] = {}
        # Told when a run becomes unwritable here (the run id and why), and of the events of
        # every commit, in order (what is printed as done must be what is stored).
        self.write_failure_listeners: list[Callable[[str, StoreError], None]] = []
        self.commit_listeners: list[Callable[[Sequence[Event]], None]] = []
        # Monotonic time since when something published is unacknowledged (None: nothing is):
        # `lagging` lets the executor hold back new nodes while the record is behind.
        self._unacked_since: float | None = None
        # Leases this store holds, with the monotonic time each was last confirmed (claimed,
        # taken over or renewed), and when the oldest confirmation goes stale: past it,
        # `lagging` holds new nodes back until a renewal confirms the fence. A process that
        # was stopped (SIGSTOP, a frozen VM) longer than that may have been taken over while
        # it slept, and must not start work before it knows (`Control.renew_stale`).
        self._confirmed: dict[str, tuple[Owner, float]] = {}
        self._stale_at = math.inf

    def _start_writer(self) -> None:
        self._writer = asyncio.create_task(
            _writer_loop(weakref.ref(self), self._queue, self._wakeup),
            name=f"interlock-store-writer {self._path.name}",
        )

    async def _stop_writer(self) -> None:
        """Write everything queued, then end the writer task."""
        writer = self._writer
        if writer is not None and not writer.done():
            self._enqueue(Stop())
            await asyncio.shield(writer)

    # -- the API ---------------------------------------------------------------------------------

    def publish(self, event: Event) -> None:
        """Queue `event` for the writer; returns at once (durable after the next `flush`)."""
        if self._closing or self._conn is None or self.readonly:
            raise self._not_writable()
        if self._poisoned and event.run_id in self._poisoned:
            return  # fail-closed: nothing more of this run is written (no seq gap)
        if self._unacked_since is None:
            self._unacked_since = time.monotonic()
        queue = self._queue
        queue.append(event)
        # The writer is woken when idle, or when a batch it is collecting is full; an event
        # that only joins the batch being collected does not wake it (its window closes it).
        if (not self._busy or len(queue) >= self.batch_size) and not self._wakeup.is_set():
            self._wakeup.set()

    async def flush(self) -> None:
        """Return once everything published before the call is committed.

        Raises StoreError if a published event failed to commit since the last flush.
        """
        if self._conn is None or self.readonly:
            return
        if self._closing and self._writer is not None:
            await asyncio.shield(self._writer)  # close is writing everything queued
        if (not self._queue and not self._busy) or self._closing:
            self._report_failures()
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(Marker(future))
        await asyncio.shield(future)

    async def append(self, events: Sequence[Event]) -> None:
        """Publish `events` and return once they are committed (all of them, or none)."""
        group = tuple(events)
        if not group:
            return
        if self._closing or self._conn is None or self.readonly:
            raise self._not_writable()
        if self._poisoned and group[0].run_id in self._poisoned:
            raise self._poisoned[group[0].run_id]
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(Group(group, future))
        await asyncio.shield(future)

    async def caught_up(self) -> None:
        """Return once everything published before the call is committed or has failed
        (failures are left for `flush` to report)."""
        if self._conn is None or self.readonly or self._closing:
            return
        if not self._queue and not self._busy:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(Marker(future, quiet=True))
        with contextlib.suppress(StoreError):
            await asyncio.shield(future)

    def lagging(self, threshold: float = 1.0) -> bool:
        """Whether something published more than `threshold` seconds ago is unacknowledged,
        or a lease held here has gone unconfirmed for half its length."""
        since = self._unacked_since
        now = time.monotonic()
        return (since is not None and now - since > threshold) or now > self._stale_at

    def write_failure(self, run_id: str) -> StoreError | None:
        """Why this store writes nothing more of `run_id` (None: it still writes it)."""
        return self._poisoned.get(run_id)

    def fence_off(self, run_id: str, error: StoreError) -> None:
        """Write nothing more of `run_id` from here (its lease was found lost)."""
        self._poison(run_id, error)

    # -- for the other layers --------------------------------------------------------------------

    def _enqueue(self, item: Item) -> None:
        self._queue.append(item)
        self._wakeup.set()

    def _enqueue_quietly(self, item: Item) -> None:
        """Queue an item nobody waits on: it joins the batch being collected."""
        self._queue.append(item)
        if not self._busy and not self._wakeup.is_set():
            self._wakeup.set()

    async def _submit(self, job: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run `job(db)` in a write transaction of its own, in queue order (on the thread)."""
        if self._closing or self._conn is None or self.readonly:
            raise self._not_writable()
        future: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self._enqueue(Job(job, future))
        return await asyncio.shield(future)

    def _confirm(self, run_id: str, owner: Owner | None, at: float) -> None:
        """Note that the lease of `run_id` was confirmed at monotonic time `at` (owner None:
        it is not held here any more)."""
        from engine.lease import lease_seconds

        if owner is None:
            self._confirmed.pop(run_id, None)
        else:
            self._confirmed[run_id] = (owner, at)
        oldest = min((at for _, at in self._confirmed.values()), default=math.inf)
        self._stale_at = oldest + lease_seconds() / 2

    def _poison(self, run_id: str, error: StoreError) -> None:
        if run_id in self._poisoned:
            return
        self._poisoned[run_id] = error
        if run_id in self._confirmed:
            self._confirm(run_id, None, 0.0)
        for listener in list(self.write_failure_listeners):
            with contextlib.suppress(Exception):  # a listener never breaks the writer
                listener(run_id, error)

    def _report_failures(self) -> None:
        if not self._unreported:
            return
        failures, self._unreported = self._unreported, []
        if len(failures) == 1:
            raise failures[0]
        raise StoreError(f"{len(failures)} published writes failed; the first: {failures[0]}")

    # -- the writer task -------------------------------------------------------------------------

    async def _write_next(self) -> bool:
        """Write the next batch, or run the next job; True once the stop marker is reached."""
        self._busy = True
        try:
            head = self._queue[0]
            if isinstance(head, Stop):
                self._queue.popleft()
                self._fail_queued()
                return True
            if isinstance(head, Job):
                self._queue.popleft()
                await self._run_job(head)
            else:
                items = await self._collect_batch()
                try:
                    await self._write_batch(self._prepare(items))
                except Exception as exc:
                    # Whatever went wrong, the writer lives on and nobody waits forever: the
                    # batch's waiters get the error, and published events report it at flush.
                    error = StoreError(f"could not write to {self._path}: {exc}")
                    self._poison_items(items, error)
                    self._fail_items(items, error)
            return False
        finally:
            self._busy = False
            # What is still queued was published while this batch was written: its age is
            # counted from now (an underestimate by at most one batch's write).
            self._unacked_since = time.monotonic() if self._queue else None

    async def _collect_batch(self) -> list[Item]:
        """Take events, appends and flush markers off the queue until the batch closes."""
        queue, items = self._queue, list[Item]()
        count, waited_on, yielded = 0, False, False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.batch_window
        while True:
            while queue and count < self.batch_size:
                item = queue[0]
                if type(item) is Event:
                    count += 1
                elif isinstance(item, Group):
                    count += len(item.events)
                    waited_on = True
                elif isinstance(item, Marker | Claim):
                    waited_on = True
                elif not isinstance(item, Outcome):
                    return items  # a job or the stop marker goes after this batch
                items.append(queue.popleft())
            if count >= self.batch_size:
                return items
            if waited_on:
                # Somebody waits: give tasks that are ready one turn to join, then commit.
                if yielded:
                    return items
                yielded = True
                await asyncio.sleep(0)
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                return items
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                # Woken early by a full queue, a flush, an append or a job; else the window
                # closes, and what was published meanwhile joins on the next pass.
                async with asyncio.timeout(remaining):
                    await self._wakeup.wait()

    def _prepare(self, items: list[Item]) -> Batch:
        """Serialize the batch's events; an event that cannot be serialized fails its unit.
        The events of runs this store may no longer write (fail-closed) are dropped."""
        batch = Batch(items)
        rows, events, units = batch.rows, batch.events, batch.units
        poisoned = self._poisoned
        for position, item in enumerate(items):
            if type(item) is Event:  # nearly every item: one published event, its own unit
                unit: Sequence[Event] = (item,)
            elif isinstance(item, Group):
                unit = item.events
            else:
                continue
            if poisoned and unit and unit[0].run_id in poisoned:
                if isinstance(item, Group):
                    batch.failed[position] = poisoned[unit[0].run_id]
                continue
            start = len(rows)
            try:
                for event in unit:  # a loop, not a comprehension: no function call per item
                    rows.append(event_row(event))
            except (TypeError, ValueError) as exc:
                del rows[start:]
                batch.failed[position] = unit_error(unit, exc, self._path)
                continue
            units.append((start, len(rows), position))
            events += unit
        return batch

    async def _write_batch(self, batch: Batch) -> None:
        """Write one batch and tell its callers (never raises: the writer must go on)."""
        failed = batch.failed
        claims = [position for position, item in enumerate(batch.items) if type(item) is Claim]
        committed: list[Event] = []
        outcomes = any(type(item) is Outcome for item in batch.items)
        if batch.units or claims or outcomes:
            try:
                committed = await self._transact(batch)
            except Exception as exc:  # the whole batch failed (I/O error, lock timeout...)
                error = StoreError(
                    f"could not write {len(batch.events)} events to {self._path}: "
                    f"{describe(exc, self._path)}"
                )
                error.__cause__ = exc
                failed.update((position, error) for _, _, position in batch.units)
                failed.update((position, error) for position in claims)
                self._poison_items(batch.items, error)
        for run_id, error in batch.refused.items():
            self._poison(run_id, error)
        self._fences.update(batch.fences)
        for position, item in enumerate(batch.items):
            if type(item) is Event and not failed:  # a published event: nobody waits on it
                continue
            self._settle(position, item, batch)
        if committed and self.commit_listeners:
            for listener in list(self.commit_listeners):
                with contextlib.suppress(Exception):  # a listener never breaks the writer
                    listener(committed)

    def _settle(self, position: int, item: Item, batch: Batch) -> None:
        """Tell whoever waits on the batch's item at `position` how it went."""
        failure = batch.failed.get(position)
        if isinstance(item, Claim):
            if item.future.done():
                return
            if failure is not None:
                item.future.set_exception(failure)
            elif not batch.claimed.get(position):
                item.future.set_exception(UnknownRunError(item.run_id))
            else:
                item.future.set_result(batch.breakers)
        elif isinstance(item, Marker):
            if item.future.done():
                return
            if self._unreported and not item.quiet:
                try:
                    self._report_failures()
                except StoreError as report:
                    item.future.set_exception(report)
            else:
                item.future.set_result(None)
        elif isinstance(item, Group):
            if item.future.done():
                return
            if failure is None:
                item.future.set_result(None)
            else:
                item.future.set_exception(failure)
        elif failure is not None and failure not in self._unreported:
            _log.warning("%s", failure)
            self._unreported.append(failure)

    async def _transact(self, batch: Batch) -> list[Event]:
        """Write the batch in one transaction, as ONE call on the connection's thread: each
        call is a hand-over to that thread and a wake-up of the event loop on the way back,
        which cost a running pipeline the loop and the GIL (benchmarks/NOTES.md)."""
        thread = self._thread
        if thread is None:
            raise self._not_writable()
        fences, path = self._fences, self._path
        committed = await thread.run(lambda db: transact(db, batch, fences, path))
        self.batches_committed += 1
        self.events_committed += len(committed)
        return committed

    async def _run_job(self, job: Job) -> None:
        thread = self._thread
        try:
            if thread is None:
                raise self._not_writable()
            run = job.run
            result: Any = await thread.run(lambda db: in_transaction(run, db))
        except sqlite3.Error as exc:
            error = StoreError(f"could not write to {self._path}: {describe(exc, self._path)}")
            error.__cause__ = exc
            if not job.future.done():
                job.future.set_exception(error)
        except Exception as exc:
            if not job.future.done():
                job.future.set_exception(exc)
        else:
            if not job.future.done():
                job.future.set_result(result)

    def _poison_items(self, items: Sequence[Item], error: StoreError) -> None:
        """A batch failed as a whole: none of the runs whose published events it held is
        written any more (fail-closed: a later batch of such a run would leave a seq gap where
        this one failed). An `append` is all-or-nothing and its caller is told: its run is not
        poisoned by it."""
        runs: dict[str, None] = {}
        for item in items:
            if type(item) is Event:
                runs[item.run_id] = None
        for run_id in runs:
            self._poison(run_id, error)

    def _fail_items(self, items: Sequence[Item], error: StoreError) -> None:
        published = False
        for item in items:
            if isinstance(item, Group | Marker | Claim | Job):
                if not item.future.done():
                    item.future.set_exception(error)
            elif type(item) is Event:
                published = True
        if published:
            self._unreported.append(error)

    def _fail_queued(self) -> None:
        """Fail whatever is still queued (published after close began, or left at shutdown)."""
        while self._queue:
            item = self._queue.popleft()
            if isinstance(item, Group | Marker | Claim | Job) and not item.future.done():
                item.future.set_exception(self._not_writable())
