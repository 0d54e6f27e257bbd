"""The CLI contract of DESIGN section 6, checked black-box: exit codes, JSON keys, first lines."""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.request
from typing import TYPE_CHECKING

import pytest

from e2e.conftest import PIPELINES, data_pipeline

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

    from e2e.conftest import Cli, StartRun

RUN_KEYS = {"run_id", "pipeline_id", "state", "started_at", "ended_at"}


def _run_id(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout.splitlines()[0]


def test_runs_json_lists_exactly_the_contract_keys_newest_first_and_honours_limit(
    cli: Cli,
) -> None:
    assert cli.json("runs", "--json") == []
    ids = [_run_id(cli.ok("run", PIPELINES / "hello.yaml")) for _ in range(3)]

    runs = cli.json("runs", "--json")

    assert [r["run_id"] for r in runs] == ids[::-1]
    for run in runs:
        assert set(run) == RUN_KEYS
        assert run["pipeline_id"] == "hello"
        assert run["state"] == "succeeded"
        assert run["started_at"] <= run["ended_at"]
    assert [r["run_id"] for r in cli.json("runs", "--json", "--limit", "2")] == ids[:0:-1]
    assert cli.json("runs", "--json", "--limit", "0") == []
    table = cli.ok("runs").stdout
    assert all(run_id in table for run_id in ids)


def test_status_json_has_the_run_and_every_node_with_state_and_attempts(cli: Cli) -> None:
    run_id = _run_id(cli.ok("run", PIPELINES / "diamond.yaml"))

    status = cli.status(run_id)

    assert status["run_id"] == run_id
    assert status["pipeline_id"] == "diamond"
    assert status["state"] == "succeeded"
    assert set(status["nodes"]) == {"numbers", "square_a", "square_b", "total"}
    for node in status["nodes"].values():
        assert node["state"] == "succeeded"
        assert node["attempts"] == 1
        assert "error_class" not in node
    assert status["nodes"]["total"]["output"] == {"sum": 25}
    text = cli.ok("status", run_id).stdout
    assert run_id in text and "succeeded" in text
    summary = cli.json("summary", run_id, "--json")
    assert summary["state"] == "succeeded"
    assert {n["node_id"] for n in summary["nodes"]} == set(status["nodes"])
    assert "square_a" in cli.ok("summary", run_id).stdout


def test_a_failed_node_shows_its_error_class_in_status(cli: Cli) -> None:
    result = cli("run", data_pipeline("fail"))
    assert result.returncode == 1
    node = cli.status(_run_id(result))["nodes"]["broken"]
    assert node["state"] == "failed"
    assert node["error_class"] == "error"
    assert node["attempts"] == 1


def test_validate_exits_0_for_valid_files_and_2_if_any_file_is_invalid(
    cli: Cli, tmp_path: Path
) -> None:
    bundled = sorted(PIPELINES.glob("*.yaml"))
    ok = cli("validate", *bundled)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.count("ok:") == len(bundled)

    cycle = tmp_path / "cycle.yaml"
    cycle.write_text(
        "id: loop\nnodes:\n"
        "  - {id: a, type: shell, command: 'true', needs: [b]}\n"
        "  - {id: b, type: shell, command: 'true', needs: [a]}\n"
    )
    mixed = cli("validate", PIPELINES / "hello.yaml", cycle)
    assert mixed.returncode == 2
    assert "cycle" in mixed.stderr.lower() and "cycle.yaml" in mixed.stderr
    assert "Traceback" not in mixed.stderr


def test_run_prints_the_run_id_first_and_at_once_before_the_run_ends(
    cli: Cli, start_run: StartRun
) -> None:
    run = start_run(data_pipeline("slow"), "--param", "lines=30", "--param", "every=0.05")

    assert run.running(), "the run id came only after the run ended"
    [listed] = cli.runs()
    assert listed["run_id"] == run.run_id
    assert listed["state"] in ("pending", "running")
    assert listed["ended_at"] is None
    assert run.wait() == 0
    assert run.lines == [run.run_id], "stdout has only the run id without --json"
    assert "tick succeeded" in run.stderr(), "progress goes to stderr"
    [listed] = cli.runs()
    assert listed["state"] == "succeeded"
    assert listed["ended_at"] is not None


def test_run_json_prints_the_final_status_after_the_run_id(cli: Cli) -> None:
    result = cli.ok("run", PIPELINES / "hello.yaml", "--json", "--param", "who=json")
    first, final = result.stdout.splitlines()
    status = json.loads(final)
    assert status["run_id"] == first
    assert status["state"] == "succeeded"
    assert status["nodes"]["greet"]["output"] == {"greeting": "hello, json"}


@pytest.mark.parametrize(
    ("pipeline", "code", "state"),
    [
        (PIPELINES / "hello.yaml", 0, "succeeded"),
        (data_pipeline("fail"), 1, "failed"),
        (data_pipeline("timeout"), 3, "timeout"),
    ],
    ids=["succeeded", "failed", "timeout"],
)
def test_run_exit_code_tells_how_the_run_ended(
    cli: Cli, pipeline: Path, code: int, state: str
) -> None:
    started = time.monotonic()
    result = cli("run", pipeline)
    assert result.returncode == code, result.stderr
    assert cli.status(_run_id(result))["state"] == state
    assert "Traceback" not in result.stderr
    if state == "timeout":
        assert time.monotonic() - started < 5, "a 1s run deadline took too long"


def test_sigint_to_interlock_run_cancels_gracefully_with_exit_4(
    cli: Cli, start_run: StartRun
) -> None:
    run = start_run(data_pipeline("slow"), "--param", "lines=200", "--param", "every=0.05")
    cli.wait_for_node(run.run_id, "tick", "running")

    run.proc.send_signal(signal.SIGINT)

    assert run.wait(10) == 4, run.stderr()
    status = cli.status(run.run_id)
    assert status["state"] == "cancelled"
    assert status["nodes"]["tick"]["state"] == "cancelled"
    assert status["nodes"]["after"]["state"] == "cancelled"
    assert "Traceback" not in run.stderr()


def test_simulate_records_the_run_without_doing_the_work(cli: Cli, tmp_path: Path) -> None:
    log = tmp_path / "invocations.txt"
    result = cli("run", data_pipeline("chain"), "--simulate", "--param", f"log={log}")

    assert result.returncode == 0, result.stderr
    assert not log.exists(), "a simulated run did the work"
    status = cli.status(_run_id(result))
    assert status["state"] == "succeeded"
    assert {n["output"]["simulated"] for n in status["nodes"].values()} == {True}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_metrics_port_serves_prometheus_text_on_localhost_while_the_run_runs(
    cli: Cli, start_run: StartRun
) -> None:
    port = _free_port()
    run = start_run(
        data_pipeline("slow"), "--metrics-port", str(port), "--param", "lines=40", "--param",
        "every=0.05",
    )
    cli.wait_for_node(run.run_id, "tick", "running")

    def scrape() -> str:
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text: str = response.read().decode()
            return text

    assert run.running(), "the run ended before metrics could be fetched"
    text = scrape()
    assert "# TYPE interlock_node_duration_seconds histogram" in text
    assert "# TYPE interlock_breaker_state gauge" in text
    assert run.wait() == 0
    assert f"127.0.0.1:{port}" in run.stderr()


def test_the_db_option_works_before_and_after_the_command_and_interlock_db_is_the_default(
    cli: Cli, db: Path
) -> None:
    run_id = _run_id(cli.ok("run", PIPELINES / "hello.yaml"))
    env = {k: v for k, v in cli.env.items() if k != "INTERLOCK_DB"}
    env["HOME"] = str(db.parent / "home")  # the default database would be under here
    env.pop("XDG_DATA_HOME", None)

    before = cli("--db", str(db), "runs", "--json", db_flag=False, env=env)
    after = cli("runs", "--json", "--db", str(db), db_flag=False, env=env)
    from_env = cli("runs", "--json", db_flag=False)  # $INTERLOCK_DB names the test's database

    assert before.returncode == after.returncode == from_env.returncode == 0, before.stderr
    assert [r["run_id"] for r in json.loads(before.stdout)] == [run_id]
    assert before.stdout == after.stdout == from_env.stdout
