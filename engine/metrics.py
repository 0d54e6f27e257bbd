"""Prometheus metrics derived from events (a sink), served on 127.0.0.1 on request.

Contract: metrics are computed from the event stream only, like every other view: node and run
duration histograms (seconds), node and run timeout counters, runs by final state, and a gauge of
breaker state per key (0 closed, 1 half-open, 2 open). Each `Metrics` has its own
`CollectorRegistry`, so several managers in one process (tests) do not collide.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import start_http_server

from engine.events import Event, EventType, parse_timestamp

if TYPE_CHECKING:
    from threading import Thread
    from wsgiref.simple_server import WSGIServer

BREAKER_VALUE = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 3600)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.node_duration = Histogram(
            "interlock_node_duration_seconds", "Node attempt duration", ["pipeline", "node"],
            registry=r, buckets=_BUCKETS,
        )
        self.run_duration = Histogram(
            "interlock_run_duration_seconds", "Run duration", ["pipeline"], registry=r,
            buckets=_BUCKETS,
        )
        self.node_timeouts = Counter(
            "interlock_node_timeouts", "Node attempts that timed out", ["pipeline", "node"],
            registry=r,
        )
        self.run_timeouts = Counter(
            "interlock_run_timeouts", "Runs that hit their deadline", ["pipeline"], registry=r
        )
        self.runs = Counter(
            "interlock_runs", "Runs by final state", ["pipeline", "state"], registry=r
        )
        self.breaker_state = Gauge(
            "interlock_breaker_state", "Breaker state (0 closed, 1 half-open, 2 open)", ["key"],
            registry=r,
        )
        self._pipelines: dict[str, str] = {}
        self._started: dict[tuple[str, str], float] = {}
        self._run_started: dict[str, float] = {}
        self._server: tuple[WSGIServer, Thread] | None = None

    def publish(self, event: Event) -> None:
        etype = event.event_type
        if etype == EventType.NODE_LOG:
            return
        run_id = event.run_id
        if etype == EventType.RUN_CREATED:
            self._pipelines[run_id] = str((event.data or {}).get("pipeline_id", ""))
            return
        pipeline = self._pipelines.get(run_id, "")
        if etype == EventType.RUN_STATE_CHANGED and (event.data or {}).get("to") == "running":
            self._run_started.setdefault(run_id, parse_timestamp(event.timestamp_utc))
        elif etype == EventType.NODE_STARTED and event.node_id:
            self._started[(run_id, event.node_id)] = parse_timestamp(event.timestamp_utc)
        elif etype in (
            EventType.NODE_SUCCEEDED,
            EventType.NODE_FAILED,
            EventType.NODE_TIMED_OUT,
            EventType.NODE_RETRIED,
            EventType.NODE_CANCELLED,
        ) and event.node_id:
            started = self._started.pop((run_id, event.node_id), None)
            if started is not None:
                elapsed = parse_timestamp(event.timestamp_utc) - started
                self.node_duration.labels(pipeline, event.node_id).observe(max(0.0, elapsed))
            if event.error_class == "timeout" and etype != EventType.NODE_CANCELLED:
                self.node_timeouts.labels(pipeline, event.node_id).inc()
        elif etype == EventType.BREAKER_STATE_CHANGED:
            data = event.data or {}
            self.breaker_state.labels(str(data.get("key"))).set(
                BREAKER_VALUE.get(str(data.get("to")), 0.0)
            )
        elif etype == EventType.RUN_COMPLETED:
            state = str((event.data or {}).get("state", ""))
            self.runs.labels(pipeline, state).inc()
            if state == "timeout":
                self.run_timeouts.labels(pipeline).inc()
            started = self._run_started.pop(run_id, None)
            if started is not None:
                elapsed = parse_timestamp(event.timestamp_utc) - started
                self.run_duration.labels(pipeline).observe(max(0.0, elapsed))
            self._pipelines.pop(run_id, None)

    async def flush(self) -> None:
        return None

    def text(self) -> str:
        """The Prometheus text exposition of these metrics."""
        return generate_latest(self.registry).decode()

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Serve /metrics on `addr:port` in a daemon thread; returns the bound port."""
        server, thread = start_http_server(port, addr=addr, registry=self.registry)
        self._server = (server, thread)
        return int(server.server_port)

    def stop(self) -> None:
        if self._server is not None:
            server, thread = self._server
            server.shutdown()
            server.server_close()
            thread.join(timeout=2)
            self._server = None
