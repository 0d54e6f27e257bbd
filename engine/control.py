"""Control of runs across processes: ownership, take-over, reconcile, cancel and commands.

Contract (DESIGN sections 4 "Ownership" and 6): this is the one place that decides how a run is
controlled, whoever asks (the CLI, the console's bridge, the service):
- A run of the asking process (its `RunManager`) is acted on in place.
- A run owned by another live process (`engine.lease.owner_alive`) gets a store command
  (`cancel`, `approve`, `reject`); `post_and_wait` posts it and waits up to a given time for
  the owner's acknowledgement (its result), which the owner gives within a second.
- A run no live process owns (`interrupted`) is taken over with a compare-and-set on its lease
  (`take_over`: of racing processes exactly one wins, the others get `TakeOverRefusedError`
  naming the winner and write nothing). A cancel of it is then applied in the store in ONE
  transaction (`cancel_interrupted`); a decision for it is refused (nobody would act on it).
- `reconcile` is how a reader sees a run: a non-terminal run without a live owner reads
  `interrupted`, with the reason; reading never writes.
- Refusals raise `ControlRefusedError` with a `Refusal` code, so that each front end words it
  its own way (an exit code, an HTTP status, a notice); outcomes are plain `Outcome` values.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from engine.errors import InterlockError, ResumeRefusedError, UnknownRunError
from engine.lease import UNSETTLED, TakeOverRefusedError, Verdict, judge, owner_alive, owner_text
from engine.state import RunStatus
from engine.strictjson import check_finite, too_large_message, too_large_path

if TYPE_CHECKING:
    from collections.abc import Mapping

    from engine.manager import RunManager
    from engine.spec import Pipeline
    from engine.state import RunState
    from engine.store import Owner, RunRow, Store

__all__ = [
    "ACK_WAIT",
    "Control",
    "ControlRefusedError",
    "Outcome",
    "Refusal",
    "cancel_interrupted",
    "owner_alive",
    "pipeline_from_state",
    "post_and_wait",
    "reconcile",
    "resolve_params",
    "take_for_resume",
    "take_over",
    "taker",
]

ACK_WAIT = 2.0  # seconds a command waits for the owning process to acknowledge (the CLI's)
ACK_POLL = 0.05  # seconds between looks for the acknowledgement
TERMINAL = frozenset(s.value for s in RunStatus if s.is_terminal)


# ---------------------------------------------------------------------------------------------
# reading a run


def reconcile(state: RunState, row: RunRow, now: float | None = None) -> RunState:
    """The state as a reader sees it: a non-terminal run that lost its owner reads
    `interrupted`, with the lease's reason (worked out, not written). Changes `state` in place
    (a fresh fold) and returns it."""
    if not state.is_terminal:
        verdict = judge(row, time.time() if now is None else now)
        if verdict.interrupted:
            state.state = RunStatus.INTERRUPTED
            state.reason = verdict.reason
    return state


async def taker(store: Store, run_id: str) -> str | None:
    """Who took the run over last, as its latest interruption record says ('pid N on H')."""
    for event in reversed(await store.tail_events(run_id, 64)):
        data = event.data or {}
        if event.event_type == "run.state_changed" and data.get("to") == "interrupted":
            who = data.get("taken_by")
            return who if isinstance(who, str) else None
    return None


async def _taking_over(store: Store, row: RunRow) -> bool:
    """Whether the run's owner took it over and has not recorded the interruption it acts on
    yet (its first append, made a moment after the compare-and-set)."""
    if row.fence <= 1:
        return False
    for event in reversed(await store.tail_events(row.run_id, 256)):
        data = event.data or {}
        if event.event_type == "run.resumed":
            return False  # a reopened run (override) records no interruption
        if event.event_type == "run.state_changed" and data.get("to") == "interrupted":
            return data.get("fence") != row.fence
    return True  # taken over (fence > 1), and no interruption recorded yet


async def _settled(store: Store, row: RunRow, wait: float = ACK_WAIT) -> RunRow:
    """The run's row once the take-over in progress is recorded (or after `wait`)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        await asyncio.sleep(ACK_POLL)
        current = await store.run_row(row.run_id)
        if current is None:
            break
        row = current
        if row.state in TERMINAL or not await _taking_over(store, row):
            break
    return row


# ---------------------------------------------------------------------------------------------
# taking a run over


def lease_data(before: RunRow, taken: RunRow) -> dict[str, Any]:
    """What an interruption record says about the lease it acts on."""
    return {
        "owner_pid": before.owner_pid,
        "owner_host": before.owner_host,
        "fence": taken.fence,
        "taken_by": f"pid {taken.owner_pid} on {taken.owner_host}",
    }


async def take_over(
    store: Store, row: RunRow, owner: Owner, *, reopen: bool = False, abandoned: bool = False
) -> tuple[RunRow, str]:
    """Take the lease of the run `row` shows without a live owner (compare-and-set); returns
    the run's row as taken and why it was interrupted. `TakeOverRefusedError`, naming the
    owner or the winner, if the run has a live owner or another process took it first.
    `abandoned`: the owner is the caller's own process, which no longer runs the run."""
    from engine.store import Owner as OwnerOf

    now = time.time()
    verdict = judge(row, now)
    if abandoned and not verdict.interrupted and row.state in ("pending", "running", "waiting"):
        verdict = Verdict(True, f"its owner ({owner_text(row)}) stopped it: the store failed")
    if not reopen and not verdict.interrupted:
        if row.state not in UNSETTLED:
            raise TakeOverRefusedError(f"run {row.run_id} is already {row.state}")
        raise TakeOverRefusedError(
            f"run {row.run_id} is owned by a live process ({owner_text(row)}); cancel it "
            "there or wait for it"
        )
    # A dead owner whose lease has not run out yet is named, so the store may fence it off
    # before the expiry (the same-host shortcut of `judge`).
    dead: Owner | None = None
    if row.owner_host is not None and row.owner_pid is not None:
        candidate = OwnerOf(row.owner_host, int(row.owner_pid), float(row.owner_started_at or 0))
        lease_over = row.lease_expires_at is None or row.lease_expires_at < now
        if not lease_over and (abandoned or not candidate.is_alive()):
            dead = candidate
    taken = await store.take_over(row, owner, dead_owner=dead, reopen=reopen)
    if taken is None:
        current = await store.run_row(row.run_id)
        if current is not None and current.owner_pid is not None:
            winner = f"another process ({owner_text(current)}) took it first"
        else:
            # The winner has finished already (a cancel): its interruption record names it.
            who = await taker(store, row.run_id)
            winner = f"another process{f' ({who})' if who else ''} took it first"
            if current is not None and current.state not in UNSETTLED:
                winner += f" and it is {current.state} now"
        raise TakeOverRefusedError(
            f"run {row.run_id} was not taken over by this process: {winner}; nothing was "
            "written here"
        )
    return taken, verdict.reason


@dataclass(frozen=True)
class Resumable:
    """A run taken over for a resume: its state folded after the take-over (the former owner
    fenced off, nothing it still sends can be stored after it), and the interruption to record
    (`why`, lease data), None when a gate-failed run is reopened."""

    state: RunState
    interruption: tuple[str, dict[str, Any]] | None


async def take_for_resume(
    store: Store, run_id: str, owner: Owner, *, override: bool, reason: str | None
) -> Resumable:
    """Take over `run_id` to resume it in the process `owner` (DESIGN 4: terminal runs are
    refused, gate-failed runs only with an override and a reason); what the dead owner left
    running here is killed. `ResumeRefusedError` or `TakeOverRefusedError` otherwise."""
    from engine.containment import kill_run_orphans

    state = await store.fold_run(run_id)
    row = await store.run_row(run_id)
    if row is None:
        raise UnknownRunError(run_id)
    reopen = False
    if state.gate_failures and state.state is RunStatus.FAILED:
        if not override:
            raise ResumeRefusedError(
                f"run {run_id} failed a hard gate ({', '.join(state.gate_failures)}); "
                "resume it only with --override --reason TEXT"
            )
        if not reason:
            raise ResumeRefusedError("an override needs a reason (--reason TEXT)")
        reopen = True
    elif state.is_terminal:
        who = await taker(store, run_id)
        by = f" (ended by {who}, which took it over)" if who else ""
        raise ResumeRefusedError(
            f"run {run_id} is {state.state.value}{by}; terminal runs cannot be resumed "
            "(replay it instead)"
        )
    # A run this very process owned and stopped (fail-closed) is not running here any more:
    # its lease names a live process, but one that will never write to it again.
    taken, why = await take_over(
        store, row, owner, reopen=reopen, abandoned=row.owner_id == owner.id
    )
    state = await store.fold_run(run_id)
    if state.is_terminal and not reopen:
        raise ResumeRefusedError(
            f"run {run_id} ended ({state.state.value}) just before it could be resumed"
        )
    await kill_run_orphans(store, run_id)  # what the dead owner left running here
    return Resumable(state, None if reopen else (why, lease_data(row, taken)))


async def cancel_interrupted(
    store: Store, run_id: str, reason: str | None, actor: str, owner: Owner | None = None
) -> RunState:
    """Cancel a run that no live process owns, directly in the store: take its lease (as a
    resume would), then record the interruption, the nodes' cancellation and the run's end
    in ONE transaction: applied entirely or not at all."""
    from engine.bus import MemorySink
    from engine.containment import kill_run_orphans
    from engine.executor import Executor
    from engine.store import Owner as OwnerOf

    row = await store.run_row(run_id)
    if row is None:
        raise UnknownRunError(run_id)
    taken, why = await take_over(store, row, owner or OwnerOf.current())
    await kill_run_orphans(store, run_id)  # what the dead owner left running here
    state = await store.fold_run(run_id)
    collected = MemorySink()
    executor = Executor(pipeline_from_state(state), state=state, sinks=[collected])
    executor.record_interrupted(why, lease_data(row, taken))
    executor.cancel(reason or "cancelled", actor)
    final = await executor.execute()
    await store.append(collected.events)
    return final


# ---------------------------------------------------------------------------------------------
# commands to a run's owner


async def post_and_wait(
    store: Store,
    run_id: str,
    kind: str,
    *,
    node_id: str | None = None,
    reason: str | None = None,
    actor: str = "engine",
    wait: float = ACK_WAIT,
    poll: float = ACK_POLL,
) -> tuple[int, str | None]:
    """Post a command for the run's owner and wait up to `wait` seconds for its
    acknowledgement: the command's id and the owner's result (None: not acknowledged yet)."""
    command_id = await store.post_command(run_id, kind, node_id=node_id, reason=reason, actor=actor)
    if wait <= 0:
        return command_id, None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        command = await store.command(command_id)
        if command is not None and command.acked_at is not None:
            return command_id, command.result
        if loop.time() >= deadline:
            return command_id, None
        await asyncio.sleep(poll)


class Refusal(StrEnum):
    """Why a command was not carried out."""

    UNKNOWN = "unknown"  # no such run
    ENDED = "ended"  # the run is terminal already
    NO_NODE = "no_node"  # the run has no such node
    NOT_WAITING = "not_waiting"  # the node is not waiting for a decision
    INTERRUPTED = "interrupted"  # a decision for a run no live process owns


class ControlRefusedError(InterlockError):
    """A command refused before anything was written; `why` says which case."""

    def __init__(self, why: Refusal, message: str, row: RunRow | None = None) -> None:
        self.why = why
        self.row = row
        super().__init__(message)


@dataclass(frozen=True)
class Outcome:
    """What became of a command.

    `how`: `here` (the asking process runs the run and acted), `store` (no live process owned
    it: applied in the store), `acknowledged` (its owner acknowledged, with `result`) or
    `posted` (its owner has not acknowledged within the wait)."""

    run_id: str
    kind: str
    how: str
    result: str | None = None
    row: RunRow | None = None
    command_id: int | None = None
    state: RunState | None = None  # the final state, when applied in the store

    @property
    def owner_pid(self) -> int | None:
        return self.row.owner_pid if self.row is not None else None


class Control:
    """Cancel and decide runs wherever they run, for one asking process.

    `manager`: the asking process's `RunManager` (its own runs are acted on in place), or None
    (the CLI's commands, which own no runs). `wait`: how long to wait for an owner's
    acknowledgement (0: post and return)."""

    def __init__(
        self,
        store: Store,
        manager: RunManager | None = None,
        *,
        actor: str = "engine",
        wait: float = ACK_WAIT,
    ) -> None:
        self.store = store
        self.manager = manager
        self.actor = actor
        self.wait = wait

    async def _row(self, run_id: str) -> RunRow:
        row = await self.store.run_row(run_id)
        if row is None:
            raise ControlRefusedError(Refusal.UNKNOWN, f"no run with id '{run_id}'")
        return row

    async def cancel(self, run_id: str, reason: str | None = None) -> Outcome:
        """Cancel the run: here, through its owner, or in the store if it has none."""
        if self.manager is not None and self.manager.cancel(run_id, reason, actor=self.actor):
            return Outcome(run_id, "cancel", "here", "cancel requested")
        row = await self._row(run_id)
        if row.state in TERMINAL:
            raise ControlRefusedError(
                Refusal.ENDED, f"run {run_id} is already {row.state}; nothing to cancel", row
            )
        if not owner_alive(row):
            final = await cancel_interrupted(self.store, run_id, reason, self.actor)
            return Outcome(run_id, "cancel", "store", final.state.value, row, state=final)
        if await _taking_over(self.store, row):
            # Its owner took it over a moment ago (a racing cancel or resume) and has not
            # recorded the take-over yet: a command would wait for a process that may never
            # read it. What its first append says decides: ended, this cancel lost the race.
            settled = await _settled(self.store, row)
            if settled.state in TERMINAL:
                raise TakeOverRefusedError(
                    f"run {run_id} was not taken over by this process: another process "
                    f"({owner_text(row)}) took it first and it is {settled.state} now; "
                    "nothing was written here"
                )
            row = settled
        command_id, result = await post_and_wait(
            self.store, run_id, "cancel", reason=reason, actor=self.actor, wait=self.wait
        )
        how = "posted" if result is None else "acknowledged"
        return Outcome(run_id, "cancel", how, result, row, command_id)

    async def decide(
        self, run_id: str, node_id: str, approve: bool, reason: str | None = None
    ) -> Outcome:
        """Approve or reject the run's waiting approval node, here or through its owner."""
        kind = "approve" if approve else "reject"
        manager = self.manager
        if manager is not None:
            decide = manager.approve if approve else manager.reject
            if decide(run_id, node_id, actor=self.actor, reason=reason):
                return Outcome(run_id, kind, "here", "approved" if approve else "rejected")
        row = await self._row(run_id)
        state = await self.store.fold_run(run_id)
        node = state.nodes.get(node_id)
        if node is None:
            known = ", ".join(n for n, s in state.nodes.items() if s.node_type == "approval")
            raise ControlRefusedError(
                Refusal.NO_NODE,
                f"run {run_id} has no node '{node_id}'"
                + (f" (approval nodes: {known})" if known else ""),
                row,
            )
        if node.state.value != "waiting":
            raise ControlRefusedError(
                Refusal.NOT_WAITING,
                f"node '{node_id}' of run {run_id} is not waiting for approval "
                f"(it is {node.state.value})",
                row,
            )
        if not owner_alive(row):
            # Nobody would act on the decision: it would wait in the store and surprise
            # whoever resumes the run later.
            raise ControlRefusedError(
                Refusal.INTERRUPTED,
                f"run {run_id} is interrupted (the process that ran it is gone), so nobody "
                f"can act on the decision; resume it with `interlock resume {run_id}`, then "
                f"{kind} {node_id}",
                row,
            )
        command_id, result = await post_and_wait(
            self.store, run_id, kind, node_id=node_id, reason=reason, actor=self.actor,
            wait=self.wait,
        )
        how = "posted" if result is None else "acknowledged"
        return Outcome(run_id, kind, how, result, row, command_id)


# ---------------------------------------------------------------------------------------------
# what a run is made from (shared by the manager, the CLI and the console)


def resolve_params(pipeline: Pipeline, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """The pipeline's param defaults overlaid with `given`; unknown names are an error."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(pipeline.params))
    if unknown:
        known = ", ".join(sorted(pipeline.params)) or "none"
        raise ValueError(f"unknown param {', '.join(unknown)} (this pipeline takes: {known})")
    merged = {name: spec.default for name, spec in pipeline.params.items()}
    merged.update(given)
    for name, value in given.items():  # stored in run.created: strict JSON (a ValueError)
        check_finite(value, f"param '{name}'")
        if too_large_path(value) is not None:  # `0x` and 4,000 hex digits: no text for it
            raise ValueError(too_large_message(f"param '{name}'"))
    return merged


def pipeline_from_state(state: RunState) -> Pipeline:
    """The pipeline a stored run was created from (its definition snapshot)."""
    from engine.loader import load_dict

    if not state.definition:
        raise UnknownRunError(state.run_id)
    return load_dict(state.definition, file=f"<run {state.run_id}>")


async def stored_search_path(store: Store, run_id: str) -> str | None:
    """The folder the run's `call:` modules and relative paths were found in (its pipeline
    file's), as recorded in `run.created`: a resume or replay from elsewhere still finds them."""
    first = await store.events(run_id, limit=1)
    value = (first[0].data or {}).get("search_path") if first else None
    return value if isinstance(value, str) else None
