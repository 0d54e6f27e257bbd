"""Bodies the API refuses: JSON errors with their status, never a 500 or a stack trace."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

    import httpx

    from serve.conftest import Serve


def _error(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    body: dict[str, object] = response.json()
    assert set(body) == {"error", "issues"}
    assert "Traceback" not in response.text
    return body


def test_a_body_nested_too_deeply_is_a_400_and_an_oversized_one_a_413(serve: Serve) -> None:
    service = serve()
    deep = b"[" * 100_000 + b"]" * 100_000
    body = _error(service.client.post("/v1/runs", content=deep), 400)
    assert "nested too deeply" in str(body["error"])
    huge = b'{"pipeline": "greet", "params": {"who": "' + b"x" * (1024 * 1024) + b'"}}'
    body = _error(service.client.post("/v1/runs", content=huge), 413)
    assert "over 1024 KiB" in str(body["error"])

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(20):
            yield b" " * 100_000

    _error(service.client.post("/v1/runs", content=chunks()), 413)
    assert service.client.get("/v1/runs").json() == []
    assert service.client.get("/healthz").status_code == 200  # and it still serves


def test_every_route_with_a_body_names_an_unknown_field_with_422(serve: Serve) -> None:
    service = serve()
    run_id = service.launch("gated")
    service.wait_for(run_id, lambda s: s["nodes"]["gate"]["state"] == "waiting")
    routes = ["replay", "resume", "cancel", "nodes/gate/approve", "nodes/gate/reject", "retry"]
    for route in routes:
        response = service.client.post(f"/v1/runs/{run_id}/{route}", json={"nodez": ["gate"]})
        body = _error(response, 422)
        assert body["error"] == "unknown field nodez", route
        assert body["issues"] == ["nodez: unknown field"]
    launch = service.client.post("/v1/runs", json={"pipeline": "greet", "parms": {}})
    assert _error(launch, 422)["error"] == "unknown field parms"
    assert service.status(run_id)["state"] == "waiting"  # none of them did anything


def test_a_retry_naming_an_unknown_node_is_404_and_names_no_cli_flag(serve: Serve) -> None:
    service = serve()
    run_id = service.launch("greet")
    assert service.wait_done(run_id)["state"] == "succeeded"
    body = _error(service.client.post(f"/v1/runs/{run_id}/retry", json={"nodes": ["nope"]}), 404)
    assert "has no node nope" in str(body["error"])
    assert body["issues"] == ["nodes: no node nope"]
    nothing = _error(service.client.post(f"/v1/runs/{run_id}/retry", json={}), 409)
    assert "--node" not in str(nothing["error"])
    assert '{"nodes": ["NODE"]}' in str(nothing["error"])
