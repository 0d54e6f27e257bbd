"""The store backend seam: what the engine, the CLI and the console ask of a store.

Contract: a backend is an async context manager implementing `StoreBackend`; `tests/contract/`
states the behaviour once and runs it against every backend (SQLite today, PostgreSQL next), so
a backend is done when that suite passes. In short:
- Writing: `publish` queues an event and never blocks; `flush` returns once everything published
  before it is durable (raising `StoreError` for a published event that failed since the last
  flush); `append` is durable all-or-nothing for its events; `caught_up` waits without
  reporting; `lagging` says whether something published a while ago is still unacknowledged.
  Commit order is publish order; a run's seqs are stored without gaps (fail-closed: after a
  failed or refused write nothing more of that run is stored, `write_failure` says why).
- Leases (`engine.lease`): `claim_run` takes a run's lease (fence 0 -> 1) and returns the
  stored breakers; `take_over` is a compare-and-set on the fencing number (one winner of any
  number of racers); `heartbeat` renews and reports lost leases; `release_run` gives one up;
  every write of a run's events carries the writer's fence and a stale fence's batch is refused
  whole; nothing is stored after a run's `run.completed`.
- Reads never write: events by seq, the runs index (`RunRow`, filtered pages and counts), the
  fold of a run. Commands are posted, listed while pending and acknowledged once. Breakers count
  outcomes atomically across processes and give a half-open breaker's trial to one claimer.
  A schedule's fire time is claimed by exactly one process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path
    from types import TracebackType

    from engine.breaker import BreakerRecord
    from engine.events import Event
    from engine.run_filter import RunFilter, RunPage
    from engine.state import RunState
    from engine.store.rows import Command, Owner, RunRow, StoreError

__all__ = ["StoreBackend"]


class StoreBackend(Protocol):
    """A durable event store with the runs index, leases, commands, breakers and schedules."""

    readonly: bool
    write_failure_listeners: list[Callable[[str, StoreError], None]]
    commit_listeners: list[Callable[[Sequence[Event]], None]]

    @property
    def path(self) -> Path: ...
    @property
    def is_open(self) -> bool: ...

    async def open(self) -> StoreBackend: ...
    async def close(self) -> None: ...
    async def __aenter__(self) -> StoreBackend: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    # -- writing: group commit -----------------------------------------------------------------
    def publish(self, event: Event) -> None: ...
    async def flush(self) -> None: ...
    async def append(self, events: Sequence[Event]) -> None: ...
    async def caught_up(self) -> None: ...
    def lagging(self, threshold: float = 1.0) -> bool: ...

    # -- leases ----------------------------------------------------------------------------------
    async def claim_run(self, run_id: str, owner: Owner) -> dict[str, BreakerRecord]: ...
    async def take_over(
        self,
        row: RunRow,
        owner: Owner,
        *,
        dead_owner: Owner | None = None,
        reopen: bool = False,
    ) -> RunRow | None: ...
    async def heartbeat(self, run_ids: Sequence[str], owner: Owner) -> list[str]: ...
    async def release_run(self, run_id: str) -> None: ...
    def fence_off(self, run_id: str, error: StoreError) -> None: ...
    def write_failure(self, run_id: str) -> StoreError | None: ...

    # -- reads -----------------------------------------------------------------------------------
    async def events(
        self,
        run_id: str,
        *,
        after_seq: int = 0,
        limit: int | None = None,
        type_prefix: str | None = None,
    ) -> list[Event]: ...
    async def tail_events(self, run_id: str, n: int) -> list[Event]: ...
    async def last_seq(self, run_id: str) -> int: ...
    async def fold_run(self, run_id: str) -> RunState: ...
    async def run_row(self, run_id: str) -> RunRow | None: ...
    async def list_runs(
        self, *, limit: int | None = None, states: Sequence[str] | None = None
    ) -> list[RunRow]: ...
    async def list_runs_page(
        self,
        *,
        limit: int,
        query: RunFilter | None = None,
        after: tuple[str, int] | None = None,
        down_to: tuple[str, int] | None = None,
    ) -> RunPage: ...
    async def count_runs(self, query: RunFilter | None = None) -> int: ...
    async def linked_runs(self, run_id: str) -> list[tuple[str, str]]: ...
    async def find_run(self, prefix: str) -> RunRow | None: ...

    # -- commands --------------------------------------------------------------------------------
    async def post_command(
        self,
        run_id: str,
        kind: str,
        *,
        node_id: str | None = None,
        reason: str | None = None,
        actor: str = "cli",
    ) -> int: ...
    async def pending_commands(self, run_ids: Sequence[str]) -> list[Command]: ...
    async def ack_command(self, command_id: int, result: str) -> None: ...
    async def command(self, command_id: int) -> Command | None: ...

    # -- breakers --------------------------------------------------------------------------------
    async def load_breakers(self) -> dict[str, BreakerRecord]: ...
    async def save_breaker(self, record: BreakerRecord) -> None: ...
    async def delete_breaker(self, key: str) -> bool: ...
    async def reset_breaker(self, key: str) -> bool: ...
    def record_breaker_outcome(
        self,
        key: str,
        *,
        failed: bool,
        failure_threshold: int,
        recovery_timeout: float,
        now: float | None = None,
    ) -> None: ...
    async def claim_breaker_trial(
        self, key: str, owner: Owner, now: float
    ) -> BreakerRecord | None: ...

    # -- schedules -------------------------------------------------------------------------------
    async def claim_fire(
        self, pipeline_id: str, schedule_key: str, fire_time: str, run_id: str, owner: Owner
    ) -> bool: ...
    async def last_fires(self, pipeline_id: str) -> dict[str, tuple[str, str]]: ...
