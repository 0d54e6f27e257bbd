"""Replay, and the guards of resume: terminal runs are refused, a failed hard gate needs an
explicit override with a reason, which is recorded and lets the run go on to its end."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from e2e.conftest import PIPELINES, assert_clean_error, assert_gap_free, data_pipeline

if TYPE_CHECKING:
    from pathlib import Path

    from e2e.conftest import Cli

RELEASE = PIPELINES / "release.yaml"
RELEASE_NODES = (
    "preflight_contract_check",
    "phase_benchmark",
    "stage_data_layout",
    "build_steward_bundle",
    "validate_bundle_quality",
    "build_minimal_deliverable",
    "verify_artifacts",
    "publish_internal",
)


def test_replay_starts_a_new_run_linked_to_the_old_one_with_the_same_params(cli: Cli) -> None:
    first = cli("run", PIPELINES / "hello.yaml", "--param", "who=replayer")
    assert first.returncode == 0, first.stderr
    old = first.stdout.splitlines()[0]

    replay = cli("replay", old)

    assert replay.returncode == 0, replay.stderr
    new = replay.stdout.splitlines()[0]
    assert new != old
    status = cli.status(new)
    assert status["state"] == "succeeded"
    assert status["replay_of"] == old
    assert status["nodes"]["shout"]["output"] == {"shout": "HELLO, REPLAYER!"}
    [created] = cli.events(new, "--type", "run.created")
    [original] = cli.events(old, "--type", "run.created")
    assert created["data"]["params"] == original["data"]["params"] == {"who": "replayer"}
    assert created["data"]["replay_of"] == old
    assert created["data"]["definition"] == original["data"]["definition"]
    assert [r["run_id"] for r in cli.runs()] == [new, old]


def test_resume_of_a_gate_failed_run_needs_an_override_then_records_it_and_runs_to_the_end(
    cli: Cli, tmp_path: Path
) -> None:
    workdir = tmp_path / "release"
    failed = cli(
        "run", RELEASE, "--param", "fail_at=phase_benchmark", "--param", f"workdir={workdir}"
    )
    assert failed.returncode == 1, failed.stderr
    run_id = failed.stdout.splitlines()[0]
    status = cli.status(run_id)
    assert status["state"] == "failed"
    assert status["gate_failures"] == ["phase_benchmark"]
    assert status["nodes"]["phase_benchmark"]["error_class"] == "gate"
    assert status["nodes"]["stage_data_layout"]["state"] == "skipped"

    refused = cli("resume", run_id)
    assert_clean_error(refused, expect="override")
    no_reason = cli("resume", run_id, "--override")
    assert_clean_error(no_reason, expect="reason")
    assert cli.status(run_id)["state"] == "failed", "a refused resume changed the run"

    resumed = cli.start("resume", run_id, "--override", "--reason", "benchmark host was noisy")
    assert resumed.run_id == run_id
    cli.wait_for_node(run_id, "publish_internal", "waiting", timeout=30)
    cli.ok("approve", run_id, "publish_internal")
    assert resumed.wait() == 0, resumed.stderr()

    status = cli.status(run_id)
    assert status["state"] == "succeeded"
    assert {n: status["nodes"][n]["state"] for n in RELEASE_NODES} == dict.fromkeys(
        RELEASE_NODES, "succeeded"
    )
    events = cli.events(run_id)
    assert_gap_free([int(e["seq"]) for e in events])
    [override] = [e for e in events if e["event_type"] == "run.override_applied"]
    assert override["reason"] == "benchmark host was noisy"
    assert override["actor"] == "cli"
    assert override["data"]["nodes"] == ["phase_benchmark"]
    # The gate that passed before the failure did not run again.
    started = [e["node_id"] for e in events if e["event_type"] == "node.started"]
    assert started.count("preflight_contract_check") == 1
    assert started.count("phase_benchmark") == 1
    assert (workdir / run_id / "deliverable" / "release.tar.gz").is_file()
    summary = cli.ok("summary", run_id).stdout
    assert "benchmark host was noisy" in summary


@pytest.mark.parametrize(
    "gate", ["preflight_contract_check", "validate_bundle_quality", "verify_artifacts"]
)
def test_every_hard_gate_of_the_release_can_be_overridden_and_the_release_then_succeeds(
    cli: Cli, tmp_path: Path, gate: str
) -> None:
    failed = cli(
        "run", RELEASE, "--param", f"fail_at={gate}", "--param", f"workdir={tmp_path / 'rel'}"
    )
    assert failed.returncode == 1, failed.stderr
    run_id = failed.stdout.splitlines()[0]

    resumed = cli.start("resume", run_id, "--override", "--reason", f"accepting {gate}")
    cli.wait_for_node(run_id, "publish_internal", "waiting", timeout=30)
    cli.ok("approve", run_id, "publish_internal")

    assert resumed.wait() == 0, resumed.stderr()
    status = cli.status(run_id)
    assert status["state"] == "succeeded"
    assert status["nodes"][gate]["output"]["overridden"] is True


def test_resume_of_a_succeeded_run_is_refused_with_exit_2_and_a_clear_message(cli: Cli) -> None:
    done = cli("run", PIPELINES / "hello.yaml")
    assert done.returncode == 0
    run_id = done.stdout.splitlines()[0]
    before = cli.event_lines(run_id)

    refused = cli("resume", run_id)

    assert_clean_error(refused, expect="succeeded")
    assert refused.stdout == "", "a refused resume must not print a run id"
    assert cli.event_lines(run_id) == before, "a refused resume wrote events"
    assert cli.status(run_id)["state"] == "succeeded"


def test_resume_of_a_run_owned_by_a_live_process_is_refused(cli: Cli) -> None:
    run = cli.start("run", data_pipeline("slow"), "--param", "lines=100", "--param", "every=0.05")

    refused = cli("resume", run.run_id)

    assert_clean_error(refused, expect="live process")
    cli.ok("cancel", run.run_id)
    assert run.wait() == 4
