"""`interlock retry` (retry from failure) and the history filters of `interlock runs`, through
the real command: exit codes as `run`, reused nodes as events, links both ways."""

from __future__ import annotations

from typing import TYPE_CHECKING

from e2e.conftest import assert_clean_error, assert_gap_free, data_pipeline, wait_until

if TYPE_CHECKING:
    from pathlib import Path

    from e2e.conftest import Cli, StartRun


def _failed_run(cli: Cli, tmp_path: Path) -> tuple[str, Path, Path]:
    log, gate = tmp_path / "work.log", tmp_path / "gate"
    first = cli("run", data_pipeline("retry"), "--param", f"log={log}", "--param", f"gate={gate}")
    assert first.returncode == 1, first.stderr
    return first.stdout.splitlines()[0], log, gate


def test_retry_reuses_the_succeeded_nodes_runs_the_rest_and_exits_as_run(
    cli: Cli, tmp_path: Path
) -> None:
    old, log, gate = _failed_run(cli, tmp_path)
    assert sorted(log.read_text().split()) == ["extract", "load", "notify", "side"]
    gate.touch()
    log.write_text("")

    retry = cli("retry", old)

    assert retry.returncode == 0, retry.stderr
    new = retry.stdout.splitlines()[0]
    assert sorted(log.read_text().split()) == ["load", "report"]  # only they did work
    assert f"✔ extract reused from {old}" in retry.stderr
    status = cli.status(new)
    assert status["state"] == "succeeded"
    assert status["retry_of"] == old
    reused = [e for e in cli.events(new, "--type", "node.") if "reused_from" in e.get("data", {})]
    assert [(e["event_type"], e["node_id"], e["attempt"]) for e in reused] == [
        ("node.succeeded", "extract", 0),
        ("node.succeeded", "side", 0),
    ]
    assert all(e["data"]["reused_from"] == old for e in reused)
    started = [e["node_id"] for e in cli.events(new, "--type", "node.started")]
    assert sorted(started) == ["load", "report"]
    assert_gap_free([e["seq"] for e in cli.events(new)])
    [created] = cli.events(new, "--type", "run.created")
    assert created["data"]["retry_of"] == old
    # Linked both ways: the old run's summary names its retry, the new one's its origin.
    assert f"retried as {new}" in cli.ok("summary", old).stdout
    assert f"retry of {old}" in cli.ok("summary", new).stdout
    assert cli.json("summary", old, "--json")["retries"] == [new]


def test_retry_exits_1_when_the_retried_work_fails_again(cli: Cli, tmp_path: Path) -> None:
    old, log, _ = _failed_run(cli, tmp_path)
    log.write_text("")

    again = cli("retry", old)

    assert again.returncode == 1, again.stderr
    assert log.read_text().split() == ["load", "notify"]
    assert cli.status(again.stdout.splitlines()[0])["nodes"]["load"]["state"] == "failed"


def test_retry_with_node_runs_that_node_and_what_is_downstream_of_it(
    cli: Cli, tmp_path: Path
) -> None:
    old, log, gate = _failed_run(cli, tmp_path)
    gate.touch()
    log.write_text("")

    retry = cli("retry", old, "--node", "extract")

    assert retry.returncode == 0, retry.stderr
    assert sorted(log.read_text().split()) == ["extract", "load", "report"]
    nodes = cli.status(retry.stdout.splitlines()[0])["nodes"]
    assert nodes["side"]["attempts"] == 0 and nodes["extract"]["attempts"] == 1


def test_retry_refuses_an_unknown_node_a_succeeded_run_without_node_and_an_unknown_run(
    cli: Cli, tmp_path: Path
) -> None:
    old, _, gate = _failed_run(cli, tmp_path)
    gate.touch()
    succeeded = cli("retry", old).stdout.splitlines()[0]
    before = cli.runs()

    assert_clean_error(cli("retry", old, "--node", "nope"), expect="has no node nope")
    assert_clean_error(cli("retry", succeeded), expect="a retry would run nothing")
    assert_clean_error(cli("retry", "0123456789abcdef"))
    assert cli.runs() == before  # a refusal creates nothing


def test_runs_filters_by_state_and_pipeline_over_the_whole_history(
    cli: Cli, tmp_path: Path
) -> None:
    old, _, gate = _failed_run(cli, tmp_path)
    gate.touch()
    new = cli("retry", old).stdout.splitlines()[0]
    other = cli("run", data_pipeline("fail")).stdout.splitlines()[0]

    failed = cli.json("runs", "--json", "--state", "failed")
    retried = cli.json("runs", "--json", "--pipeline", "e2e-retry")
    both = cli.json("runs", "--json", "--state", "failed,succeeded", "--pipeline", "e2e-retry")
    newest = cli.json("runs", "--json", "--pipeline", "e2e-retry", "--limit", "1")

    assert [r["run_id"] for r in failed] == [other, old]
    assert [r["run_id"] for r in retried] == [new, old]
    assert [r["run_id"] for r in both] == [new, old]
    assert [r["run_id"] for r in newest] == [new]
    assert cli.json("runs", "--json", "--state", "cancelled") == []


def test_retry_refuses_a_running_run_and_an_interrupted_one_in_one_sentence(
    cli: Cli, start_run: StartRun, tmp_path: Path
) -> None:
    log = tmp_path / "invocations.txt"
    run = start_run(data_pipeline("chain"), "--param", f"log={log}", "--param", "c_pause=30")
    wait_until(lambda: log.exists() and "C" in log.read_text().split(), what="node C to start")

    assert_clean_error(cli("retry", run.run_id), expect="only a finished run can be retried")
    run.crash()
    assert_clean_error(cli("retry", run.run_id), expect="resume it instead")
    assert [r["run_id"] for r in cli.runs()] == [run.run_id]
