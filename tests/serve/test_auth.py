"""Who may talk to the service: loopback by default, a bearer token for everything else."""

from __future__ import annotations

import json
import subprocess
from typing import TYPE_CHECKING

from serve.conftest import INTERLOCK, PIPELINES, environment

if TYPE_CHECKING:
    from pathlib import Path

    from serve.conftest import Serve

TOKEN = "s3cret-token-for-tests"


def test_a_non_loopback_host_without_a_token_is_refused_at_start(db: Path) -> None:
    result = subprocess.run(
        [INTERLOCK, "serve", "--host", "0.0.0.0", "--port", "0", "--pipelines", str(PIPELINES),
         "--db", str(db)],
        env=environment(db), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "without a token" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not db.exists()  # refused before anything was opened


def test_an_empty_token_file_is_refused_at_start(db: Path, tmp_path: Path) -> None:
    empty = tmp_path / "token"
    empty.write_text("\n")
    result = subprocess.run(
        [INTERLOCK, "serve", "--port", "0", "--token-file", str(empty), "--pipelines",
         str(PIPELINES), "--db", str(db)],
        env=environment(db), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "is empty" in result.stderr
    assert "Traceback" not in result.stderr


def test_with_a_token_every_route_but_healthz_needs_it(serve: Serve, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    service = serve("--token-file", str(token_file), token=TOKEN)
    bare = service.client.__class__(base_url=service.url, timeout=20)
    try:
        assert bare.get("/healthz").json() == {"ok": True}
        for method, path in (("GET", "/v1/runs"), ("GET", "/v1/pipelines"), ("GET", "/metrics"),
                             ("POST", "/v1/runs"), ("GET", "/v1/breakers")):
            response = bare.request(method, path)
            assert response.status_code == 401, (method, path)
            assert set(response.json()) == {"error", "issues"}
            assert response.headers["www-authenticate"] == "Bearer"
        wrong = bare.get("/v1/runs", headers={"Authorization": f"Bearer {TOKEN}x"})
        assert wrong.status_code == 401
        assert service.client.get("/v1/runs").status_code == 200
        run_id = service.launch("greet")
        assert service.wait_done(run_id)["state"] == "succeeded"
    finally:
        bare.close()
    assert service.stop() == 0
    assert TOKEN not in service.stderr


def test_the_token_can_come_from_the_environment(serve: Serve) -> None:
    service = serve("--host", "0.0.0.0", token=TOKEN, env={"INTERLOCK_TOKEN": TOKEN})
    assert service.client.get("/v1/runs").status_code == 200
    anonymous = service.client.get("/v1/runs", headers={"Authorization": ""})
    assert anonymous.status_code == 401
    assert TOKEN not in service.stderr


def test_a_node_does_not_inherit_the_token(serve: Serve, tmp_path: Path) -> None:
    """Nodes inherit the service's environment: the token is taken out of it once read, so a
    node printing its environment puts it in no event and no stream."""
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "dump.yaml").write_text(
        "id: dump\nnodes:\n  - {id: env, type: shell, command: [env]}\n"
        "  - {id: py, type: python, needs: [env], call: 'leak:read'}\n"
    )
    (folder / "leak.py").write_text(
        "import os\n\ndef read(inputs, ctx):\n"
        "    return {'token': os.environ.get('INTERLOCK_TOKEN')}\n"
    )
    service = serve(pipelines=folder, token=TOKEN, env={"INTERLOCK_TOKEN": TOKEN})
    run_id = service.launch("dump")
    status = service.wait_done(run_id)
    stream = service.client.get(f"/v1/runs/{run_id}/events")
    assert stream.status_code == 200
    assert "INTERLOCK_RUN_ID=" in stream.text  # the node did print its environment
    assert TOKEN not in stream.text
    assert status["state"] == "succeeded"
    assert status["nodes"]["py"]["output"] == {"token": None}
    assert TOKEN not in json.dumps(status)


def test_the_token_leaves_the_environment_also_when_a_file_gives_it(tmp_path: Path) -> None:
    """`interlock web` reads it the same way: the consoles its tabs start do not inherit it."""
    from tui.serve.auth import load_token

    environ = {"INTERLOCK_TOKEN": TOKEN, "HOME": "/"}
    assert load_token(None, environ) == TOKEN
    assert environ == {"HOME": "/"}
    (tmp_path / "token").write_text("from-file\n")
    environ = {"INTERLOCK_TOKEN": TOKEN}
    assert load_token(str(tmp_path / "token"), environ) == "from-file"
    assert environ == {}
