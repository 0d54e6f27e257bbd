"""Words for the CLI about leases and fail-closed writes (`interlock run`/`resume` exit 2).

Contract: `write_failure_sentence` turns the store's refusal of a run's events into the one
paragraph `interlock` prints before exiting 2: a run taken over by another process says so
(naming it); any other cause (a full disk, a lock held past the busy timeout, an I/O error)
is named, with what was done (nodes stopped, nothing more written) and how to finish the run.
"""

from __future__ import annotations

from engine.lease import LeaseLostError


def write_failure_sentence(run_id: str, error: BaseException) -> str:
    if isinstance(error.__cause__, LeaseLostError):
        return str(error)
    return (
        f"run {run_id} stopped because its events could not be recorded ({error}); its "
        "running nodes were cancelled, no new node started and nothing more was written; "
        f"once the cause is gone, `interlock resume {run_id}` finishes it"
    )
