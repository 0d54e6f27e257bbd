"""Retry from failure through the API, where the engine has it (`RunManager.retry`)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from serve.conftest import cli

if TYPE_CHECKING:
    from pathlib import Path

    from serve.conftest import Serve

def test_a_failed_run_is_retried_reusing_what_succeeded(
    serve: Serve, db: Path, tmp_path: Path
) -> None:
    service = serve()
    marker = tmp_path / "fixed"
    failed = service.launch("retryable", params={"marker": str(marker)})
    assert service.wait_done(failed)["state"] == "failed"
    marker.write_text("")
    response = service.client.post(f"/v1/runs/{failed}/retry", json={})
    assert response.status_code == 202, response.text
    retried = response.json()["run_id"]
    assert retried != failed
    assert service.wait_done(retried)["state"] == "succeeded"
    events = [json.loads(line) for line in cli(db, "events", retried).stdout.splitlines()]
    reused = [e for e in events if e["event_type"] == "node.succeeded" and e["node_id"] == "first"]
    assert reused[0]["data"]["reused_from"] == failed
    assert not [e for e in events if e["event_type"] == "node.started" and e["node_id"] == "first"]


def test_a_run_that_has_not_finished_cannot_be_retried(serve: Serve) -> None:
    service = serve()
    run_id = service.launch("gated")
    service.wait_for(run_id, lambda s: s["nodes"]["gate"]["state"] == "waiting")
    response = service.client.post(f"/v1/runs/{run_id}/retry")
    assert response.status_code == 409
    assert set(response.json()) == {"error", "issues"}
