"""OpenTelemetry spans derived from events (the optional `otel` extra).

Contract: `TracingSink` is an event sink: `run.created` (or `run.resumed`) opens a span for the
run, `node.started` a child span for the node attempt, the attempt's end event closes it with
its result, and `run.completed` closes the run span (and any attempt span still open). Span
start and end times are the events' timestamps. Trace and span ids come from
`engine.tracecontext`, so the `TRACEPARENT` a shell node gets names its attempt's span.
Attributes follow the OpenTelemetry CICD semantic conventions: `cicd.pipeline.name`,
`cicd.pipeline.run.id`, `cicd.pipeline.result`, `cicd.pipeline.task.name`,
`cicd.pipeline.task.run.id`, `cicd.pipeline.task.run.result`, plus `interlock.*` extras.
`tracing_sink()` returns None unless OTEL_EXPORTER_OTLP_ENDPOINT is set and the SDK and the
OTLP/HTTP exporter are importable.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from engine import tracecontext
from engine.events import parse_timestamp

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.trace import Span

    from engine.events import Event

# cicd.pipeline.result / cicd.pipeline.task.run.result values of the semantic conventions.
RUN_RESULT = {"succeeded": "success", "failed": "failure", "timeout": "timeout",
              "cancelled": "cancellation"}
ATTEMPT_RESULT = {"node.succeeded": "success", "node.failed": "failure",
                  "node.timed_out": "timeout", "node.retried": "failure",
                  "node.cancelled": "cancellation", "node.skipped": "skip"}


class _ChosenIds(IdGenerator):
    """Hands out the ids set just before a span starts (the event loop is one thread)."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()
        self._local = threading.local()

    def choose(self, trace_id: int, span_id: int) -> None:
        self._local.ids = (trace_id, span_id)

    def generate_trace_id(self) -> int:
        ids = getattr(self._local, "ids", None)
        return ids[0] if ids else self._random.generate_trace_id()

    def generate_span_id(self) -> int:
        ids = getattr(self._local, "ids", None)
        if ids:
            self._local.ids = None
            return int(ids[1])
        return self._random.generate_span_id()


def _ns(timestamp: str) -> int:
    return int(parse_timestamp(timestamp) * 1_000_000_000)


class TracingSink:
    def __init__(self, processor: SpanProcessor) -> None:
        self._ids = _ChosenIds()
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": "interlock"}), id_generator=self._ids
        )
        self.provider.add_span_processor(processor)
        self._tracer = self.provider.get_tracer("interlock")
        self._runs: dict[str, Span] = {}
        self._pipelines: dict[str, str] = {}
        self._attempts: dict[tuple[str, str], Span] = {}

    def publish(self, event: Event) -> None:
        etype = event.event_type
        if etype == "node.log":
            return
        run_id = event.run_id
        if etype == "run.created":
            self._pipelines[run_id] = str((event.data or {}).get("pipeline_id", ""))
            self._open_run(event)
        elif etype == "run.resumed" and run_id not in self._runs:
            self._open_run(event)
        elif etype == "node.started" and event.node_id:
            self._open_attempt(event)
        elif etype in ATTEMPT_RESULT and event.node_id:
            span = self._attempts.pop((run_id, event.node_id), None)
            if span is not None:
                span.set_attribute("cicd.pipeline.task.run.result", ATTEMPT_RESULT[etype])
                if etype != "node.succeeded":
                    span.set_status(Status(StatusCode.ERROR, event.reason or etype))
                    if event.error_class:
                        span.set_attribute("error.type", event.error_class)
                span.end(end_time=_ns(event.timestamp_utc))
        elif etype == "run.completed":
            end = _ns(event.timestamp_utc)
            for key in [k for k in self._attempts if k[0] == run_id]:
                self._attempts.pop(key).end(end_time=end)
            span = self._runs.pop(run_id, None)
            state = str((event.data or {}).get("state", ""))
            if span is not None:
                span.set_attribute("cicd.pipeline.result", RUN_RESULT.get(state, state))
                if state != "succeeded":
                    span.set_status(Status(StatusCode.ERROR, event.reason or state))
                span.end(end_time=end)
            self._pipelines.pop(run_id, None)

    async def flush(self) -> None:
        return None

    def _open_run(self, event: Event) -> None:
        run_id = event.run_id
        pipeline = self._pipelines.get(run_id) or str((event.data or {}).get("pipeline_id", ""))
        self._ids.choose(tracecontext.trace_id(run_id), tracecontext.run_span_id(run_id))
        attributes: dict[str, Any] = {"cicd.pipeline.run.id": run_id}
        if pipeline:
            attributes["cicd.pipeline.name"] = pipeline
        self._runs[run_id] = self._tracer.start_span(
            f"run {pipeline or run_id}", kind=SpanKind.INTERNAL, attributes=attributes,
            start_time=_ns(event.timestamp_utc), context=trace.set_span_in_context(
                trace.INVALID_SPAN),
        )

    def _open_attempt(self, event: Event) -> None:
        run_id, node_id = event.run_id, str(event.node_id)
        parent = self._runs.get(run_id) or NonRecordingSpan(
            SpanContext(
                tracecontext.trace_id(run_id), tracecontext.run_span_id(run_id),
                is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED),
            )
        )
        self._ids.choose(
            tracecontext.trace_id(run_id),
            tracecontext.attempt_span_id(run_id, node_id, event.attempt),
        )
        attributes: dict[str, Any] = {
            "cicd.pipeline.run.id": run_id,
            "cicd.pipeline.task.name": node_id,
            "cicd.pipeline.task.run.id": f"{run_id}/{node_id}/{event.attempt}",
            "interlock.attempt": event.attempt,
        }
        pipeline = self._pipelines.get(run_id)
        if pipeline:
            attributes["cicd.pipeline.name"] = pipeline
        self._attempts[(run_id, node_id)] = self._tracer.start_span(
            f"{node_id} #{event.attempt}", context=trace.set_span_in_context(parent),
            attributes=attributes, start_time=_ns(event.timestamp_utc),
        )

    def shutdown(self) -> None:
        tracecontext.ENABLED = False
        self.provider.shutdown()


def tracing_sink() -> TracingSink | None:
    """The OTLP-exporting sink when OTEL_EXPORTER_OTLP_ENDPOINT is set, else None."""
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    sink = TracingSink(BatchSpanProcessor(OTLPSpanExporter()))
    tracecontext.ENABLED = True
    return sink
