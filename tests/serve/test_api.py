"""The HTTP API drives ordinary stored runs: launch, status, cancel, approve, replay, resume."""

from __future__ import annotations

import signal
import subprocess
import time
from typing import TYPE_CHECKING

import psutil

from serve.conftest import INTERLOCK, PIPELINES, TERMINAL, cli, environment

if TYPE_CHECKING:
    from pathlib import Path

    from serve.conftest import Serve


def test_a_launched_run_is_an_ordinary_stored_run_the_cli_sees(serve: Serve, db: Path) -> None:
    service = serve()
    run_id = service.launch("greet", params={"who": "api"})
    status = service.wait_done(run_id)
    assert status["state"] == "succeeded"
    assert status["nodes"]["hello"]["output"] == {"greeting": "hello api"}
    listed = service.client.get("/v1/runs", params={"pipeline": "greet", "limit": 5}).json()
    assert [item["run_id"] for item in listed] == [run_id]
    assert listed[0]["state"] == "succeeded"
    from_cli = cli(db, "status", run_id, "--json")
    assert from_cli.returncode == 0, from_cli.stderr
    assert '"state":"succeeded"' in from_cli.stdout


def test_a_launch_with_bad_params_is_refused_with_the_issues(serve: Serve) -> None:
    service = serve()
    response = service.client.post("/v1/runs", json={"pipeline": "greet", "params": {"whom": 1}})
    assert response.status_code == 422
    body = response.json()
    assert "unknown param whom" in body["error"]
    assert body["issues"]
    missing = service.client.post("/v1/runs", json={"pipeline": "nope"})
    assert missing.status_code == 404
    assert "no pipeline 'nope'" in missing.json()["error"]
    broken = service.client.post("/v1/runs", content=b"{not json")
    assert broken.status_code == 400
    assert set(broken.json()) == {"error", "issues"}
    assert service.client.get("/v1/runs").json() == []  # nothing was started


def test_pipelines_are_listed_valid_or_not_and_an_invalid_one_cannot_launch(
    serve: Serve,
) -> None:
    service = serve()
    listed = {item["id"]: item for item in service.client.get("/v1/pipelines").json()}
    assert listed["greet"]["valid"] is True
    assert listed["greet"]["params"] == {"who": "world"}
    assert listed["greet"]["schedules"] == []
    assert listed["broken"]["valid"] is False
    assert any("cycle: a -> b -> a" in issue for issue in listed["broken"]["issues"])
    refused = service.client.post("/v1/runs", json={"pipeline": "broken"})
    assert refused.status_code == 422
    assert any("cycle" in issue for issue in refused.json()["issues"])


def test_a_simulated_launch_does_no_work(serve: Serve) -> None:
    service = serve()
    run_id = service.launch("greet", simulate=True)
    status = service.wait_done(run_id)
    assert status["state"] == "succeeded"
    assert status["nodes"]["hello"]["output"] == {"simulated": True}
    wrong = service.client.post("/v1/runs", json={"pipeline": "greet", "simulate": "yes"})
    assert wrong.status_code == 422


def test_unknown_runs_and_routes_are_json_errors_without_a_stack_trace(serve: Serve) -> None:
    service = serve()
    for response in (
        service.client.get("/v1/runs/does-not-exist"),
        service.client.post("/v1/runs/does-not-exist/cancel"),
        service.client.get("/v1/runs/does-not-exist/events"),
        service.client.get("/v2/whatever"),
        service.client.post("/v1/breakers/none/reset"),
    ):
        assert response.status_code == 404
        assert set(response.json()) == {"error", "issues"}
        assert "Traceback" not in response.text
    assert service.client.delete("/v1/runs").status_code == 405
    assert "Traceback" not in service.stderr


def test_a_run_is_cancelled_through_the_api(serve: Serve) -> None:
    service = serve()
    run_id = service.launch("slow")
    service.wait_for(run_id, lambda s: s["nodes"]["nap"]["state"] == "running")
    response = service.client.post(f"/v1/runs/{run_id}/cancel", json={"reason": "enough"})
    assert response.status_code == 202
    status = service.wait_done(run_id, timeout=15)
    assert status["state"] == "cancelled"
    again = service.client.post(f"/v1/runs/{run_id}/cancel")
    assert again.status_code == 409


def test_an_approval_is_granted_and_another_rejected_through_the_api(serve: Serve) -> None:
    service = serve()
    approved = service.launch("gated")
    rejected = service.launch("gated")
    for run_id in (approved, rejected):
        service.wait_for(run_id, lambda s: s["nodes"]["gate"]["state"] == "waiting")
    ok = service.client.post(f"/v1/runs/{approved}/nodes/gate/approve", json={"reason": "fine"})
    assert ok.status_code == 202
    no = service.client.post(f"/v1/runs/{rejected}/nodes/gate/reject", json={"reason": "no"})
    assert no.status_code == 202
    assert service.wait_done(approved)["state"] == "succeeded"
    assert service.wait_done(rejected)["state"] == "failed"
    late = service.client.post(f"/v1/runs/{approved}/nodes/gate/approve")
    assert late.status_code == 409
    unknown = service.client.post(f"/v1/runs/{approved}/nodes/nope/approve")
    assert unknown.status_code == 404


def test_a_run_of_another_process_is_steered_through_the_store(serve: Serve, db: Path) -> None:
    service = serve()
    other = subprocess.Popen(
        [INTERLOCK, "run", str(PIPELINES / "gated.yaml"), "--db", str(db)],
        env=environment(db), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert other.stdout is not None
        run_id = other.stdout.readline().strip()
        service.wait_for(run_id, lambda s: s["nodes"]["gate"]["state"] == "waiting")
        response = service.client.post(f"/v1/runs/{run_id}/nodes/gate/approve")
        assert response.status_code == 202
        assert response.json()["owner_pid"] == other.pid
        assert other.wait(timeout=30) == 0
        assert service.status(run_id)["state"] == "succeeded"
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()
        assert other.stdout is not None
        other.stdout.close()


def test_a_finished_run_is_replayed_and_an_interrupted_one_resumed(
    serve: Serve, db: Path
) -> None:
    service = serve()
    first = service.launch("greet")
    service.wait_done(first)
    response = service.client.post(f"/v1/runs/{first}/replay")
    assert response.status_code == 202
    replayed = response.json()["run_id"]
    assert service.wait_done(replayed)["state"] == "succeeded"
    refused = service.client.post(f"/v1/runs/{first}/resume")
    assert refused.status_code == 409
    assert "terminal" in refused.json()["error"]

    # A run whose process was killed is interrupted; the service takes it over.
    other = subprocess.Popen(
        [INTERLOCK, "run", str(PIPELINES / "gated.yaml"), "--db", str(db)],
        env=environment(db), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert other.stdout is not None
    run_id = other.stdout.readline().strip()
    service.wait_for(run_id, lambda s: s["nodes"]["gate"]["state"] == "waiting")
    other.kill()
    other.wait()
    other.stdout.close()
    assert service.wait_for(run_id, lambda s: s["state"] == "interrupted")
    resumed = service.client.post(f"/v1/runs/{run_id}/resume")
    assert resumed.status_code == 202, resumed.text
    service.wait_for(run_id, lambda s: s["nodes"]["gate"]["state"] == "waiting")
    assert service.client.post(f"/v1/runs/{run_id}/nodes/gate/approve").status_code == 202
    assert service.wait_done(run_id)["state"] == "succeeded"


def test_breakers_are_listed_and_reset(serve: Serve) -> None:
    service = serve()
    assert service.client.get("/v1/breakers").json() == []
    assert service.client.post("/v1/breakers/greet%2Fhello/reset").status_code == 404


def test_sigterm_cancels_the_services_own_runs_and_exits_0(serve: Serve, db: Path) -> None:
    service = serve()
    run_id = service.launch("slow")
    service.wait_for(run_id, lambda s: s["nodes"]["nap"]["state"] == "running")
    sleepers = psutil.Process(service.process.pid).children(recursive=True)
    assert sleepers
    began = time.monotonic()
    assert service.stop(signal.SIGTERM) == 0
    assert time.monotonic() - began < 20
    assert all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in sleepers)
    stored = cli(db, "status", run_id, "--json")
    assert '"state":"cancelled"' in stored.stdout
    assert any(state in stored.stdout for state in TERMINAL)


def test_sighup_stops_the_service_too(serve: Serve) -> None:
    service = serve()
    assert service.client.get("/healthz").status_code == 200
    assert service.stop(signal.SIGHUP) == 0
    assert "stopped" in service.stderr
