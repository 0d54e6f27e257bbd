"""`interlock cancel`'s wait: after the owner acknowledged the request, follow the run to its end.

Contract: `wait_for_end` polls the store (read-only) until the run is terminal, or its owner is
gone (then the run is reconciled to `interrupted`), and returns one line for the operator: how
the run ended and how long the cancel took. A cancel waits out its nodes' cleanup grace, so
"cancelled" is only said once it is true.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from engine.state import RunStatus

if TYPE_CHECKING:
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
