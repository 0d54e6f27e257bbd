"""Leases, commands, breakers and schedule fires: the store's writes other than events.

Contract: every write here goes through the writer's queue (`GroupCommitWriter._submit`, one
transaction of its own on the connection's thread, or joining the batch being collected), so
it is ordered after the events published before it.
- Leases (`engine.lease`): `claim_run` takes the lease of a run this process created (fence
  0 -> 1) or took over, in the transaction of the batch holding its `run.created`, and returns
  the stored breakers read in that transaction. `take_over` is a compare-and-set on the fencing
  number (`SQL_TAKE_OVER`): of racing takers exactly one gets the row, the others None and
  nothing written. `heartbeat` renews the leases this process holds and returns (and fences
  off) the runs it found taken over. Ownership is not derived from events, except that the
  commit of a `run.completed` releases the run (`SQL_UPDATE_RUN`).
- Commands: `post_command` (UnknownRunError for a run not stored), `pending_commands`,
  `ack_command` (the first acknowledgement wins), `command`.
- Breakers: `record_breaker_outcome` counts an attempt's outcome with one atomic statement in
  the batch's transaction (attempts in every process count); `claim_breaker_trial` gives a
  half-open breaker's one trial to one process (compare-and-set).
- Schedules: `claim_fire` is true for exactly one claimer of a (pipeline, schedule, fire time).
All of it is plain SQL (`sql`), for the PostgreSQL store to reuse.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import TYPE_CHECKING, Any

from engine.breaker import BreakerRecord
from engine.errors import UnknownRunError
from engine.store.rows import COMMAND_KINDS, Command, RunRow, StoreError
from engine.store.sqlite.batch import Claim, Outcome, lease_error
from engine.store.sqlite.sql import (
    SQL_ACK_COMMAND,
    SQL_BREAKER,
    SQL_BREAKER_FAILED,
    SQL_BREAKER_SUCCEEDED,
    SQL_BREAKERS,
    SQL_CLAIM_FIRE,
    SQL_CLAIM_TRIAL,
    SQL_COMMAND,
    SQL_DELETE_BREAKER,
    SQL_HEARTBEAT,
    SQL_LAST_FIRES,
    SQL_LEASE,
    SQL_PENDING_COMMANDS,
    SQL_POST_COMMAND,
    SQL_RELEASE_RUN,
    SQL_RESET_BREAKER,
    SQL_RUN,
    SQL_SAVE_BREAKER,
    SQL_TAKE_OVER,
)
from engine.store.sqlite.writer import GroupCommitWriter

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Sequence

    from engine.store.rows import Owner

__all__ = ["Control"]


class Control(GroupCommitWriter):
    """Leases, commands, breakers and schedule fires (see the module's contract)."""

    # -- ownership -------------------------------------------------------------------------------

    async def claim_run(self, run_id: str, owner: Owner) -> dict[str, BreakerRecord]:
        """Take the lease of a run this process created (fence 0 -> 1) or took over (its fence
        stays), with a fresh expiry; returns the stored breakers, by key, as of the claim (what
        other processes have saved: a run starts from them).

        The claim commits with whatever was published before it: in the same transaction as
        the run's `run.created` when that is not committed yet. If an event of the run in that
        transaction failed, so does the claim, with the event's error (which the next `flush`
        reports as well). The breakers are read in the same transaction, so a run costs a
        single hand-over to the connection's thread before it starts, not two. A run another
        process holds now fails the claim with a StoreError caused by `LeaseLostError`.
        """
        from engine.lease import lease_seconds

        if self._closing or self._conn is None or self.readonly:
            raise self._not_writable()
        if run_id in self._poisoned:
            raise self._poisoned[run_id]
        now = time.time()
        params = (
            owner.id, owner.host, owner.pid, owner.started_at, now, now + lease_seconds(), run_id
        )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, BreakerRecord]] = loop.create_future()
        self._enqueue(Claim(run_id, params, future))
        asked = time.monotonic()
        breakers = await asyncio.shield(future)
        self._confirm(run_id, owner, asked)
        return breakers

    async def take_over(
        self,
        row: RunRow,
        owner: Owner,
        *,
        dead_owner: Owner | None = None,
        reopen: bool = False,
    ) -> RunRow | None:
        """Take the lease of a run that `row` (as read) shows without a live owner: a
        compare-and-set on its fencing number, in a transaction of its own. Returns the run's
        row with this process as owner; None if another process won (or the owner came back),
        and then nothing was written. `dead_owner`: the owner found dead on this host (the
        shortcut past an unexpired lease). `reopen`: the run has completed and is reopened (an
        override of a failed hard gate)."""
        from engine.lease import lease_seconds

        now = time.time()
        params = (
            owner.id, owner.host, owner.pid, owner.started_at, now, now + lease_seconds(),
            row.run_id, row.fence,
            dead_owner.host if dead_owner else None, dead_owner.pid if dead_owner else None,
            int(reopen),
        )

        def take(db: sqlite3.Connection) -> tuple[Any, ...] | None:
            if db.execute(SQL_TAKE_OVER, params).rowcount != 1:
                return None
            return tuple(db.execute(SQL_RUN, (row.run_id,)).fetchone())

        asked = time.monotonic()
        found = await self._submit(take)
        if found is None:
            return None
        taken = RunRow(*found)
        self._fences[row.run_id] = taken.fence
        self._poisoned.pop(row.run_id, None)
        self._confirm(row.run_id, owner, asked)
        return taken

    async def heartbeat(self, run_ids: Sequence[str], owner: Owner) -> list[str]:
        """Renew the leases of those of `run_ids` this process holds (with its fencing number);
        returns the runs whose lease it found lost (taken over by another process)."""
        from engine.lease import lease_seconds

        if not run_ids:
            return []
        now, asked = time.time(), time.monotonic()
        targets = [(run_id, self._fences.get(run_id, 0)) for run_id in run_ids]

        def beat(db: sqlite3.Connection) -> tuple[list[str], dict[str, tuple[Any, ...]]]:
            renewed: list[str] = []
            lost: dict[str, tuple[Any, ...]] = {}
            for run_id, fence in targets:
                params = (now, now + lease_seconds(), run_id, owner.id, fence)
                if db.execute(SQL_HEARTBEAT, params).rowcount:
                    renewed.append(run_id)
                    continue
                found = db.execute(SQL_LEASE, (run_id,)).fetchone()
                if found is not None and found[1] is None and found[0] != fence:
                    lost[run_id] = tuple(found)
            return renewed, lost

        renewed, lost = await self._submit(beat)
        for run_id in run_ids:  # renewed; or ended, released or lost: not held here any more
            if run_id in self._confirmed:
                self._confirm(run_id, owner if run_id in renewed else None, asked)
        for run_id, found in lost.items():
            self._poison(run_id, lease_error(run_id, found))
        return list(lost)

    async def renew_stale(self) -> None:
        """Renew the leases held here once their confirmation is stale (`lagging` says so):
        what `caught_up` does before new nodes may start. A run found taken over meanwhile is
        fenced off, which stops it."""
        if time.monotonic() <= self._stale_at:
            return
        by_owner: dict[str, tuple[Owner, list[str]]] = {}
        for run_id, (owner, _) in list(self._confirmed.items()):
            by_owner.setdefault(owner.id, (owner, []))[1].append(run_id)
        for owner, run_ids in by_owner.values():
            await self.heartbeat(run_ids, owner)

    async def caught_up(self) -> None:
        """Return once everything published before the call is committed or has failed, and
        the leases held here are confirmed (renewed, or found lost and fenced off)."""
        await super().caught_up()
        if self._closing or self._conn is None or self.readonly:
            return
        with contextlib.suppress(StoreError):  # a failed renewal is the next write's failure
            await self.renew_stale()

    async def release_run(self, run_id: str) -> None:
        """Give up the run's lease (only if this process still holds it)."""
        params = (run_id, self._fences.get(run_id, 0))
        self._confirm(run_id, None, 0.0)
        await self._submit(lambda db: db.execute(SQL_RELEASE_RUN, params))

    # -- cross-process control -------------------------------------------------------------------

    async def post_command(
        self,
        run_id: str,
        kind: str,
        *,
        node_id: str | None = None,
        reason: str | None = None,
        actor: str = "cli",
    ) -> int:
        """Ask the run's owner to `cancel`, `approve` or `reject`; returns the command id."""
        if kind not in COMMAND_KINDS:
            choices = ", ".join(sorted(COMMAND_KINDS))
            raise ValueError(f"unknown command kind {kind!r} (expected one of: {choices})")
        params = (run_id, kind, node_id, reason, actor, time.time())
        try:
            return await self._submit(
                lambda db: int(db.execute(SQL_POST_COMMAND, params).lastrowid or 0)
            )
        except StoreError as exc:
            if "FOREIGN KEY" in str(exc):
                raise UnknownRunError(run_id) from exc
            raise

    async def pending_commands(self, run_ids: Sequence[str]) -> list[Command]:
        """Commands to these runs not yet acknowledged, oldest first."""
        if not run_ids:
            return []
        rows = await self._fetch(SQL_PENDING_COMMANDS, (json.dumps(list(run_ids)),))
        return [Command(*row) for row in rows]

    async def ack_command(self, command_id: int, result: str) -> None:
        """Mark a command handled, with what came of it (the first acknowledgement wins)."""
        params = (time.time(), result, command_id)
        await self._submit(lambda db: db.execute(SQL_ACK_COMMAND, params))

    async def command(self, command_id: int) -> Command | None:
        rows = await self._fetch(SQL_COMMAND, (command_id,))
        return Command(*rows[0]) if rows else None

    # -- breakers --------------------------------------------------------------------------------

    async def load_breakers(self) -> dict[str, BreakerRecord]:
        rows = await self._fetch(SQL_BREAKERS)
        return {row[0]: BreakerRecord(*row) for row in rows}

    async def save_breaker(self, record: BreakerRecord) -> None:
        """Insert or replace the breaker's record."""
        params = (
            record.key,
            record.state,
            record.failures,
            record.opened_at,
            record.recovery_timeout,
            record.updated_at,
        )
        await self._submit(lambda db: db.execute(SQL_SAVE_BREAKER, params))

    async def delete_breaker(self, key: str) -> bool:
        """Forget the breaker; True if it was stored."""
        return await self._submit(lambda db: db.execute(SQL_DELETE_BREAKER, (key,)).rowcount > 0)

    async def reset_breaker(self, key: str) -> bool:
        """Close the breaker and clear its count (it stays listed); True if it was stored."""
        params = (key, time.time())
        return await self._submit(lambda db: db.execute(SQL_RESET_BREAKER, params).rowcount > 0)

    def record_breaker_outcome(
        self,
        key: str,
        *,
        failed: bool,
        failure_threshold: int,
        recovery_timeout: float,
        now: float | None = None,
    ) -> None:
        """Count an attempt's outcome in the stored breaker, atomically (`SQL_BREAKER_FAILED`,
        `SQL_BREAKER_SUCCEEDED`), in the transaction of the batch being collected: the events
        published with it commit with it. Returns at once."""
        if self._closing or self._conn is None or self.readonly:
            return
        at = time.time() if now is None else now
        if failed:
            item = Outcome(SQL_BREAKER_FAILED, (key, failure_threshold, recovery_timeout, at))
        else:
            item = Outcome(SQL_BREAKER_SUCCEEDED, (key, recovery_timeout, at))
        self._enqueue_quietly(item)

    async def claim_breaker_trial(
        self, key: str, owner: Owner, now: float
    ) -> BreakerRecord | None:
        """Claim the trial of a half-open breaker for `owner` (`SQL_CLAIM_TRIAL`): None if it
        is the owner's (or the breaker is not stored), else the stored breaker, whose trial is
        another process's or which is not due for one."""
        def claim(db: sqlite3.Connection) -> tuple[Any, ...] | None:
            if db.execute(SQL_CLAIM_TRIAL, (key, now, owner.id)).rowcount:
                return None
            found = db.execute(SQL_BREAKER, (key,)).fetchone()
            return None if found is None else tuple(found)

        found = await self._submit(claim)
        return None if found is None else BreakerRecord(*found)

    # -- schedules -------------------------------------------------------------------------------

    async def claim_fire(
        self, pipeline_id: str, schedule_key: str, fire_time: str, run_id: str, owner: Owner
    ) -> bool:
        """Claim one fire time of a schedule for `run_id`: True for exactly one claimer of
        (pipeline, schedule, fire time), whichever process or host it runs in."""
        params = (
            pipeline_id, schedule_key, fire_time, run_id, owner.host, owner.pid, time.time()
        )
        return await self._submit(lambda db: db.execute(SQL_CLAIM_FIRE, params).rowcount == 1)

    async def last_fires(self, pipeline_id: str) -> dict[str, tuple[str, str]]:
        """The latest claimed fire of each of the pipeline's schedules: key -> (time, run id)."""
        rows = await self._fetch(SQL_LAST_FIRES, (pipeline_id,))
        return {str(key): (str(fire), str(run_id)) for key, fire, run_id in rows}
