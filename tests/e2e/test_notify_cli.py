"""`notify:` from a pipeline file run by `interlock run`: the owning process posts the run's
summary to a local HTTP server and the delivery is in the stored events, before run.completed."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from e2e.conftest import Cli


def test_a_failed_cli_run_posts_its_summary_and_stores_the_delivery(
    cli: Cli, tmp_path: Path
) -> None:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        pipeline = tmp_path / "notified.yaml"
        pipeline.write_text(
            "id: notified\n"
            "notify:\n"
            f"  - {{on: [failed], webhook: 'http://127.0.0.1:{server.server_address[1]}/x'}}\n"
            "nodes:\n"
            "  - {id: broken, type: shell, command: ['sh', '-c', 'exit 3']}\n"
        )
        result = cli("run", pipeline)
    finally:
        server.shutdown()
        server.server_close()

    assert result.returncode == 1, result.stderr
    run_id = result.stdout.splitlines()[0]
    [body] = received
    assert body["run_id"] == run_id and body["state"] == "failed"
    events = cli.events(run_id)
    assert [e["event_type"] for e in events][-2:] == ["notification.sent", "run.completed"]
    assert events[-2]["data"]["status"] == 204
    target = f"http://127.0.0.1:{server.server_address[1]}/x"
    assert f"notified webhook {target}: sent" in result.stderr  # the progress line
