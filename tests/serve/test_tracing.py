"""OpenTelemetry: a span per run, a child span per node attempt, TRACEPARENT in shell nodes."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import TYPE_CHECKING

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from engine import tracecontext
from engine.loader import load_file
from engine.manager import RunManager
from engine.store import Store
from serve.conftest import PIPELINES
from tui.serve.tracing import TracingSink

if TYPE_CHECKING:
    from pathlib import Path

    from serve.conftest import Serve


async def test_a_run_is_a_span_with_a_child_span_per_node_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracecontext, "ENABLED", True)
    exporter = InMemorySpanExporter()
    sink = TracingSink(SimpleSpanProcessor(exporter))
    async with Store(tmp_path / "db") as store, RunManager(store=store, sinks=[sink]) as manager:
        handle = await manager.start(load_file(PIPELINES / "traced.yaml"))
        state = await handle
    sink.shutdown()
    assert state.state.value == "succeeded"
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert set(spans) == {"run traced", "report #1", "flaky #1", "flaky #2"}
    run = spans["run traced"]
    assert run.parent is None
    assert run.attributes is not None
    assert run.attributes["cicd.pipeline.name"] == "traced"
    assert run.attributes["cicd.pipeline.run.id"] == handle.run_id
    assert run.attributes["cicd.pipeline.result"] == "success"
    for name in ("report #1", "flaky #1", "flaky #2"):
        span = spans[name]
        assert span.parent is not None and span.parent.span_id == run.context.span_id
        assert span.context.trace_id == run.context.trace_id
        assert span.attributes is not None
        assert span.attributes["cicd.pipeline.task.name"] == name.split()[0]
        assert span.start_time is not None and span.end_time is not None
        assert run.start_time is not None and run.end_time is not None
        assert run.start_time <= span.start_time <= span.end_time <= run.end_time
    assert spans["flaky #1"].attributes is not None
    assert spans["flaky #1"].attributes["cicd.pipeline.task.run.result"] == "failure"
    assert spans["flaky #2"].attributes is not None
    assert spans["flaky #2"].attributes["cicd.pipeline.task.run.result"] == "success"

    # The shell node was handed its own attempt span as its parent context.
    report = spans["report #1"]
    expected = f"00-{report.context.trace_id:032x}-{report.context.span_id:016x}-01"
    assert state.nodes["report"].output == {"traceparent": expected}


async def test_without_tracing_shell_nodes_get_no_traceparent(tmp_path: Path) -> None:
    assert tracecontext.ENABLED is False
    async with Store(tmp_path / "db") as store, RunManager(store=store) as manager:
        state = await (await manager.start(load_file(PIPELINES / "traced.yaml")))
    assert state.nodes["report"].output == {"traceparent": None}


def test_the_service_exports_spans_over_otlp_when_an_endpoint_is_set(serve: Serve) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    received: list[tuple[str, bytes]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append((self.path, body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return None

    collector = HTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=collector.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{collector.server_port}"
        service = serve(env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
        run_id = service.launch("traced")
        assert service.wait_done(run_id)["nodes"]["report"]["output"]["traceparent"].startswith(
            f"00-{run_id}-"
        )
        assert service.stop() == 0  # the provider's shutdown sends what is batched
    finally:
        collector.shutdown()
        collector.server_close()
        thread.join(timeout=5)
    assert received
    assert all(path == "/v1/traces" for path, _ in received)
    payload = b"".join(body for _, body in received)
    assert run_id.encode() in payload and b"cicd.pipeline.task.name" in payload
