"""Controlling a run from another process: cancel, SIGTERM, approve, reject, shared breakers."""

from __future__ import annotations

import signal
import time
from typing import TYPE_CHECKING

from e2e.conftest import PIPELINES, data_pipeline, descendants, is_gone, wait_until

if TYPE_CHECKING:
    from pathlib import Path

    import psutil

    from e2e.conftest import Cli, RunProcess, StartRun

CANCEL_WITHIN = 1.0  # DESIGN section 6: the owner acts within 1 s


def _spawned_sleeps(run: RunProcess) -> list[psutil.Process]:
    """The node's shell and its two `sleep 30` children, once they all run."""

    def found() -> list[psutil.Process] | None:
        procs = descendants(run.pid)
        sleeps = [p for p in procs if p.name() == "sleep"]
        return procs if len(sleeps) == 2 else None

    procs: list[psutil.Process] = wait_until(found, what="the node's two sleep children")
    return procs


def test_cancel_from_another_process_stops_the_run_within_a_second_and_kills_its_children(
    cli: Cli, start_run: StartRun
) -> None:
    run = start_run(data_pipeline("spawner"))
    children = _spawned_sleeps(run)

    issued = time.monotonic()
    # --no-wait: the clock stops when the run ends, not when `cancel` has seen it end.
    cancel = cli("cancel", run.run_id, "--reason", "operator says stop", "--no-wait")
    code = run.wait()
    elapsed = time.monotonic() - issued

    assert cancel.returncode == 0, cancel.stderr
    assert code == 4, run.stderr()
    assert elapsed < CANCEL_WITHIN, f"the run took {elapsed:.2f}s to stop after `cancel`"
    wait_until(lambda: all(map(is_gone, children)), timeout=2, what="the node's processes to go")
    status = cli.status(run.run_id)
    assert status["state"] == "cancelled"
    assert status["nodes"]["spawn"]["state"] == "cancelled"
    assert status["nodes"]["spawn"]["error_class"] == "cancelled"
    completed = cli.events(run.run_id, "--type", "run.completed")
    assert completed[-1]["reason"] == "operator says stop"


def test_sigterm_to_interlock_run_cancels_the_run_with_exit_4(
    cli: Cli, start_run: StartRun
) -> None:
    run = start_run(data_pipeline("spawner"))
    children = _spawned_sleeps(run)

    run.proc.send_signal(signal.SIGTERM)

    assert run.wait(10) == 4, run.stderr()
    assert cli.status(run.run_id)["state"] == "cancelled"
    wait_until(lambda: all(map(is_gone, children)), timeout=2, what="the node's processes to go")


def test_approve_from_another_process_lets_the_run_finish_with_exit_0(
    cli: Cli, start_run: StartRun
) -> None:
    run = start_run(PIPELINES / "approval.yaml")
    cli.wait_for_node(run.run_id, "publish_gate", "waiting")
    assert cli.status(run.run_id)["state"] == "waiting"

    approve = cli("approve", run.run_id, "publish_gate")

    assert approve.returncode == 0, approve.stderr
    assert run.wait(20) == 0, run.stderr()
    status = cli.status(run.run_id)
    assert status["state"] == "succeeded"
    assert status["nodes"]["publish"]["output"] == {"published": True, "channel": "internal"}
    granted = cli.events(run.run_id, "--type", "approval.granted")
    assert [(e["node_id"], e["actor"]) for e in granted] == [("publish_gate", "cli")]


def test_reject_from_another_process_fails_the_run_with_exit_1_and_class_rejected(
    cli: Cli, start_run: StartRun
) -> None:
    run = start_run(PIPELINES / "approval.yaml")
    cli.wait_for_node(run.run_id, "publish_gate", "waiting")

    reject = cli("reject", run.run_id, "publish_gate", "--reason", "not this week")

    assert reject.returncode == 0, reject.stderr
    assert run.wait(20) == 1, run.stderr()
    status = cli.status(run.run_id)
    assert status["state"] == "failed"
    gate = status["nodes"]["publish_gate"]
    assert gate["state"] == "failed"
    assert gate["error_class"] == "rejected"
    assert status["nodes"]["publish"]["state"] == "skipped"
    # A decided node cannot be decided again.
    again = cli("approve", run.run_id, "publish_gate")
    assert again.returncode == 2
    assert "Traceback" not in again.stderr


def test_a_breaker_opened_by_one_process_refuses_the_node_in_a_run_of_another_process(
    cli: Cli, tmp_path: Path
) -> None:
    marker = tmp_path / "invoked.txt"
    pipeline = data_pipeline("breaker")
    key = "e2e-breaker/call_service"

    first = cli("run", pipeline, "--param", f"marker={marker}")
    assert first.returncode == 1, first.stderr
    first_id = first.stdout.splitlines()[0]
    assert cli.status(first_id)["nodes"]["call_service"]["error_class"] == "error"
    assert marker.read_text().splitlines() == ["invoked"]
    breakers = cli.json("breakers", "--json")
    assert [(b["key"], b["state"]) for b in breakers] == [(key, "open")]

    second = cli("run", pipeline, "--param", f"marker={marker}")
    assert second.returncode == 1, second.stderr
    node = cli.status(second.stdout.splitlines()[0])["nodes"]["call_service"]
    assert node["state"] == "failed"
    assert node["error_class"] == "circuit_open"
    assert marker.read_text().splitlines() == ["invoked"], "the work ran behind an open breaker"

    reset = cli("breakers", "reset", key)
    assert reset.returncode == 0, reset.stderr
    # Reset closes it and clears its count; it stays listed, as the console lists it.
    after = cli.json("breakers", "--json")
    assert [(b["key"], b["state"], b["failures"]) for b in after] == [(key, "closed", 0)]
    third = cli("run", pipeline, "--param", f"marker={marker}")
    assert third.returncode == 1
    assert marker.read_text().splitlines() == ["invoked", "invoked"]
    assert cli.status(third.stdout.splitlines()[0])["nodes"]["call_service"]["error_class"] == (
        "error"
    )


def test_breakers_json_lists_key_state_and_failures_and_reset_of_an_unknown_key_is_refused(
    cli: Cli, tmp_path: Path
) -> None:
    assert cli.json("breakers", "--json") == []
    cli("run", data_pipeline("breaker"), "--param", f"marker={tmp_path / 'm.txt'}")

    [breaker] = cli.json("breakers", "--json")
    assert breaker["key"] == "e2e-breaker/call_service"
    assert breaker["state"] == "open"
    assert breaker["failures"] == 1
    text = cli.ok("breakers").stdout
    assert "e2e-breaker/call_service" in text and "open" in text

    unknown = cli("breakers", "reset", "no/such-key")
    assert unknown.returncode == 2
    assert "no/such-key" in unknown.stderr and "Traceback" not in unknown.stderr
