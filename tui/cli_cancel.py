"""`interlock cancel`, `approve` and `reject`, through `engine.control` (the console's and the
service's way too), and the cancel's wait for the run's end.

Contract (DESIGN section 6): a run owned by a live process is asked through the store and the
command waits up to `engine.control.ACK_WAIT` for its owner's acknowledgement; a run no live
process owns is cancelled in the store (one transaction), and a decision for it is refused with
how to resume it; a run that has ended is said so (exit 0 for a cancel).
`wait_for_end` polls the store (read-only) until the run is terminal, or its owner is gone
(then the run is reconciled to `interrupted`), and returns one line for the operator: how the
run ended and how long the cancel took. A cancel waits out its nodes' cleanup grace, so
"cancelled" is only said once it is true.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from engine.lease import owner_alive
from engine.state import RunStatus
from tui.cli_common import EXIT_OK, UsageError, _find_run, _open_store, _say

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from engine.store import RunRow, Store

POLL = 0.2  # seconds between looks at the run's row


async def wait_for_end(
    store: Store, run_id: str, owner_alive: Callable[[RunRow], bool], *, poll: float = POLL
) -> str:
    """Block until run `run_id` ends; the line that says how."""
    began = time.monotonic()
    while True:
        row = await store.run_row(run_id)
        if row is None:  # deleted under us: nothing more to follow
            return f"run {run_id} is gone from the store"
        took = time.monotonic() - began
        if RunStatus(row.state).is_terminal:
            return f"run {run_id} ended {row.state} ({took:.1f}s after the request)"
        if row.state == RunStatus.INTERRUPTED.value or not owner_alive(row):
            return (
                f"run {run_id} is interrupted: its owner (pid {row.owner_pid}) stopped before "
                "the run ended; `interlock cancel` it again to mark it cancelled"
            )
        await asyncio.sleep(poll)


async def cmd_cancel(args: argparse.Namespace) -> int:
    from engine.control import Control, ControlRefusedError

    async with _open_store(args, create=False) as store:
        row = await _find_run(store, args.run)
        try:
            outcome = await Control(store, actor="cli").cancel(row.run_id, args.reason)
        except ControlRefusedError as exc:  # it has ended: nothing to do is not an error
            _say(str(exc))
            return EXIT_OK
        if outcome.how == "store":
            _say(f"run {row.run_id} had no live owner; marked {outcome.result}")
            return EXIT_OK
        owner = outcome.owner_pid
        if outcome.result is None:
            _say(f"cancel requested for {row.run_id}; the owner (pid {owner}) has not "
                 "acknowledged yet")
            return EXIT_OK
        _say(f"run {row.run_id}: {outcome.result} (acknowledged by pid {owner})")
        if outcome.result != "cancel requested" or args.no_wait:
            return EXIT_OK
        _say("waiting for it to end (its nodes get their cleanup grace; --no-wait not to wait)")
        _say(await wait_for_end(store, row.run_id, owner_alive))
    return EXIT_OK


async def cmd_decide(args: argparse.Namespace) -> int:
    from engine.control import Control, ControlRefusedError

    approve = args.command == "approve"
    async with _open_store(args, create=False) as store:
        row = await _find_run(store, args.run)
        control = Control(store, actor="cli")
        try:
            outcome = await control.decide(
                row.run_id, args.node, approve, getattr(args, "reason", None)
            )
        except ControlRefusedError as exc:  # no such node, not waiting, nobody to act on it
            raise UsageError(str(exc)) from None
    if outcome.result is None:
        _say(f"{args.command} of {args.node} requested; the owner has not acknowledged yet")
        return EXIT_OK
    if outcome.result == "not waiting":
        raise UsageError(f"node '{args.node}' is no longer waiting for approval")
    _say(f"{args.node}: {outcome.result} (acknowledged by pid {outcome.owner_pid})")
    return EXIT_OK
