"""Runs waiting for approvals do not starve the service; a queued resume reads `pending`.

`--max-runs N` bounds the runs at work at once; a run waiting for a decision lends its slot, so
any number of them leave room for launches. A run that does wait for a slot (every slot busy
with work) is `pending`, including a resumed one (it read `interrupted` while it queued).
"""

from __future__ import annotations

import json
import subprocess
from typing import TYPE_CHECKING

from serve.conftest import INTERLOCK, PIPELINES, cli, environment

if TYPE_CHECKING:
    from pathlib import Path

    from serve.conftest import Serve, ServeProcess


def test_runs_waiting_for_approvals_leave_room_for_a_launch(serve: Serve) -> None:
    service = serve("--max-runs", "2")
    gated = [service.launch("gated") for _ in range(3)]
    for run_id in gated:  # all three wait, though only two slots exist
        service.wait_for(run_id, lambda s: s["state"] == "waiting")
    launched = service.launch("greet")
    assert service.wait_done(launched)["state"] == "succeeded"
    replayed = service.client.post(f"/v1/runs/{launched}/replay").json()["run_id"]
    assert service.wait_done(replayed)["state"] == "succeeded"
    for run_id in gated:
        assert service.client.post(f"/v1/runs/{run_id}/nodes/gate/approve").status_code == 202
    for run_id in gated:  # back from waiting, each goes on (above the limit if need be)
        assert service.wait_done(run_id)["state"] == "succeeded"


def _interrupted_gated_run(db: Path, service: ServeProcess) -> str:
    """A run of `gated` whose process was killed while its approval waited."""
    other = subprocess.Popen(
        [INTERLOCK, "run", str(PIPELINES / "gated.yaml"), "--db", str(db)],
        env=environment(db), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert other.stdout is not None
    try:
        run_id = other.stdout.readline().strip()
        service.wait_for(run_id, lambda s: s["nodes"]["gate"]["state"] == "waiting")
    finally:
        other.kill()
        other.wait()
        other.stdout.close()
    service.wait_for(run_id, lambda s: s["state"] == "interrupted")
    return run_id


def test_a_resume_queued_behind_busy_slots_reads_pending_not_interrupted(
    serve: Serve, db: Path
) -> None:
    service = serve("--max-runs", "1")
    busy = service.launch("slow")
    service.wait_for(busy, lambda s: s["nodes"]["nap"]["state"] == "running")
    run_id = _interrupted_gated_run(db, service)
    resumed = service.client.post(f"/v1/runs/{run_id}/resume")
    assert resumed.status_code == 202, resumed.text
    assert resumed.json()["result"] == "resumed"
    assert service.status(run_id)["state"] == "pending"
    listed = {item["run_id"]: item["state"] for item in service.client.get("/v1/runs").json()}
    assert listed[run_id] == "pending"
    from_cli = cli(db, "status", run_id, "--json")
    assert json.loads(from_cli.stdout)["state"] == "pending", from_cli.stderr
    # The slot frees: the resumed run goes on, and waits for its approval again.
    assert service.client.post(f"/v1/runs/{busy}/cancel").status_code == 202
    service.wait_for(run_id, lambda s: s["state"] == "waiting")
    assert service.client.post(f"/v1/runs/{run_id}/nodes/gate/approve").status_code == 202
    assert service.wait_done(run_id)["state"] == "succeeded"
