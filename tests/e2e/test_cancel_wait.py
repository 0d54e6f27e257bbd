"""`interlock cancel` says what is true: a cancel is requested, then the run ends after its
nodes' cleanup grace; it waits for that end unless `--no-wait`."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from e2e.conftest import data_pipeline

if TYPE_CHECKING:
    from e2e.conftest import Cli, StartRun


def test_cancel_says_requested_then_waits_out_the_grace_and_reports_the_end(
    cli: Cli, start_run: StartRun
) -> None:
    run = start_run(data_pipeline("stubborn"))
    cli.wait_for_node(run.run_id, "hold", "running")
    time.sleep(0.3)  # the trap is set once `holding` is printed; the shell is up by now
    issued = time.monotonic()
    cancel = cli.ok("cancel", run.run_id)
    took = time.monotonic() - issued
    assert f"run {run.run_id}: cancel requested" in cancel.stdout
    assert f"run {run.run_id} ended cancelled" in cancel.stdout
    assert took >= 1.5  # the 2 s grace of a node that ignores SIGTERM was waited out
    assert cli.status(run.run_id)["state"] == "cancelled"
    assert run.wait(10) == 4
    lines = [e["data"]["line"] for e in cli.events(run.run_id, "--type", "node.log")]
    assert "cleaning up after SIGTERM" in lines  # what the node wrote in its grace


def test_cancel_no_wait_returns_while_the_run_is_still_in_its_grace(
    cli: Cli, start_run: StartRun
) -> None:
    run = start_run(data_pipeline("stubborn"))
    cli.wait_for_node(run.run_id, "hold", "running")
    time.sleep(0.3)
    cancel = cli.ok("cancel", run.run_id, "--no-wait")
    assert "cancel requested" in cancel.stdout
    assert "ended" not in cancel.stdout
    assert cli.status(run.run_id)["state"] == "running"  # still in its grace
    assert run.wait(10) == 4
