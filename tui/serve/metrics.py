"""`/metrics`: Prometheus text for every run in the store, whichever process ran it.

Contract: a custom `prometheus_client` Collector over a snapshot the service takes from the
store at each scrape (runs index, folded runs, breakers). Like every other view, the figures
are derived from the events (`fold`), so a run made by a separate `interlock run` counts the
same as one of the service's. A finished run never changes, so its figures are computed once
and cached by run id; unfinished runs are folded again at every scrape.

Families (all labelled by `pipeline` where it applies):
- `interlock_runs` (gauge): runs by shown state (a run whose owner is gone is `interrupted`).
- `interlock_nodes` (gauge): nodes of the stored runs by state.
- `interlock_run_duration_seconds`, `interlock_node_attempt_duration_seconds` (histograms).
- `interlock_node_attempts_total`, `interlock_node_retries_total`,
  `interlock_node_timeouts_total`, `interlock_run_timeouts_total` (counters).
- `interlock_breaker_state{key, state}`: 1 for the breaker's current state, 0 for the others.
- store health: `interlock_store_up`, `interlock_store_scrape_duration_seconds`,
  `interlock_store_size_bytes`, `interlock_store_events_total`.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from engine.events import parse_timestamp

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from prometheus_client.metrics_core import Metric

    from engine.state import RunState
    from engine.store import Store

BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)
BREAKER_STATES = ("closed", "half_open", "open")
TERMINAL = frozenset({"succeeded", "failed", "timeout", "cancelled"})


@dataclass(frozen=True)
class RunFigures:
    """What one run contributes to the metrics."""

    pipeline: str
    nodes: Counter[str]
    attempt_durations: tuple[tuple[str, float], ...]  # (node id, seconds) per finished attempt
    attempts: Counter[str]
    retries: Counter[str]
    timeouts: Counter[str]
    duration: float | None
    timed_out: bool


def figures(state: RunState) -> RunFigures:
    nodes: Counter[str] = Counter()
    attempts: Counter[str] = Counter()
    retries: Counter[str] = Counter()
    timeouts: Counter[str] = Counter()
    durations: list[tuple[str, float]] = []
    for node in state.nodes.values():
        nodes[node.state.value] += 1
        for record in node.history:
            attempts[node.node_id] += 1
            if record.outcome == "retrying":
                retries[node.node_id] += 1
            if record.error_class == "timeout":
                timeouts[node.node_id] += 1
            if record.ended_at and record.started_at:
                seconds = parse_timestamp(record.ended_at) - parse_timestamp(record.started_at)
                durations.append((node.node_id, max(0.0, seconds)))
    duration = None
    if state.is_terminal and state.started_at and state.ended_at:
        duration = max(0.0, parse_timestamp(state.ended_at) - parse_timestamp(state.started_at))
    return RunFigures(
        state.pipeline_id, nodes, tuple(durations), attempts, retries, timeouts, duration,
        state.state.value == "timeout",
    )


@dataclass
class Snapshot:
    runs: Counter[tuple[str, str]] = field(default_factory=Counter)  # (pipeline, state)
    figures: list[RunFigures] = field(default_factory=list)
    breakers: dict[str, str] = field(default_factory=dict)
    up: bool = True
    scrape_seconds: float = 0.0
    size_bytes: int = 0
    events: int = 0


def _histogram(
    name: str, doc: str, labels: Sequence[str], samples: dict[tuple[str, ...], list[float]]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=list(labels))
    for key, values in sorted(samples.items()):
        buckets = [(str(b), float(sum(1 for v in values if v <= b))) for b in BUCKETS]
        buckets.append(("+Inf", float(len(values))))
        family.add_metric(list(key), buckets, sum(values))
    return family


class StoreMetrics(Collector):
    """The collector; `render()` takes a fresh snapshot and returns the exposition text."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.snapshot = Snapshot()
        self._finished: dict[str, RunFigures] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    async def render(self) -> str:
        await self.refresh()
        return generate_latest(self.registry).decode()

    async def refresh(self) -> None:
        from engine.lease import shown_state

        began = time.perf_counter()
        snap = Snapshot()
        try:
            rows = await self.store.list_runs()
            seen: set[str] = set()
            for row in rows:
                state = shown_state(row)
                snap.runs[(row.pipeline_id, state)] += 1
                snap.events += row.last_seq
                seen.add(row.run_id)
                cached = self._finished.get(row.run_id)
                if cached is None:
                    folded = await self.store.fold_run(row.run_id)
                    cached = figures(folded)
                    if folded.is_terminal:
                        self._finished[row.run_id] = cached
                snap.figures.append(cached)
            for run_id in set(self._finished) - seen:
                del self._finished[run_id]
            now = time.time()
            for key, record in (await self.store.load_breakers()).items():
                # Open past its recovery timeout, the next attempt is a trial: half-open (as
                # `interlock breakers` shows it), though no event has said so yet.
                snap.breakers[key] = record.shown_state(now)
        except Exception:
            snap = Snapshot(up=False)
        snap.size_bytes = _size(self.store)
        snap.scrape_seconds = time.perf_counter() - began
        self.snapshot = snap

    def collect(self) -> Iterable[Metric]:
        yield from _families(self.snapshot)


def _size(store: Store) -> int:
    total = 0
    for suffix in ("", "-wal"):
        path = store.path.with_name(store.path.name + suffix)
        try:
            total += path.stat().st_size
        except OSError:
            continue
    return total


def _families(snap: Snapshot) -> Iterator[Metric]:
    runs = GaugeMetricFamily("interlock_runs", "Stored runs by state", labels=["pipeline", "state"])
    for (pipeline, state), count in sorted(snap.runs.items()):
        runs.add_metric([pipeline, state], count)
    yield runs

    nodes: Counter[tuple[str, str]] = Counter()
    run_durations: dict[tuple[str, ...], list[float]] = defaultdict(list)
    attempt_durations: dict[tuple[str, ...], list[float]] = defaultdict(list)
    attempts: Counter[tuple[str, str]] = Counter()
    retries: Counter[tuple[str, str]] = Counter()
    timeouts: Counter[tuple[str, str]] = Counter()
    run_timeouts: Counter[str] = Counter()
    for fig in snap.figures:
        for state, count in fig.nodes.items():
            nodes[(fig.pipeline, state)] += count
        if fig.duration is not None:
            run_durations[(fig.pipeline,)].append(fig.duration)
        for node_id, seconds in fig.attempt_durations:
            attempt_durations[(fig.pipeline, node_id)].append(seconds)
        for source, target in ((fig.attempts, attempts), (fig.retries, retries),
                               (fig.timeouts, timeouts)):
            for node_id, count in source.items():
                target[(fig.pipeline, node_id)] += count
        run_timeouts[fig.pipeline] += fig.timed_out

    family = GaugeMetricFamily(
        "interlock_nodes", "Nodes of the stored runs by state", labels=["pipeline", "state"]
    )
    for (pipeline, state), count in sorted(nodes.items()):
        family.add_metric([pipeline, state], count)
    yield family
    yield _histogram("interlock_run_duration_seconds", "Duration of finished runs",
                     ["pipeline"], run_durations)
    yield _histogram("interlock_node_attempt_duration_seconds", "Duration of node attempts",
                     ["pipeline", "node"], attempt_durations)
    for name, doc, counts in (
        ("interlock_node_attempts", "Node attempts started", attempts),
        ("interlock_node_retries", "Node attempts that failed and were retried", retries),
        ("interlock_node_timeouts", "Node attempts that timed out", timeouts),
    ):
        counter = CounterMetricFamily(name, doc, labels=["pipeline", "node"])
        for (pipeline, node_id), count in sorted(counts.items()):
            counter.add_metric([pipeline, node_id], count)
        yield counter
    counter = CounterMetricFamily("interlock_run_timeouts", "Runs that hit their deadline",
                                  labels=["pipeline"])
    for pipeline, count in sorted(run_timeouts.items()):
        counter.add_metric([pipeline], count)
    yield counter

    breaker = GaugeMetricFamily("interlock_breaker_state",
                                "Circuit breaker state: 1 for the current state, 0 for the others",
                                labels=["key", "state"])
    for key, current in sorted(snap.breakers.items()):
        for state in BREAKER_STATES:
            breaker.add_metric([key, state], 1.0 if state == current else 0.0)
    yield breaker

    yield GaugeMetricFamily("interlock_store_up", "1 if the store could be read at this scrape",
                            value=1.0 if snap.up else 0.0)
    yield GaugeMetricFamily("interlock_store_scrape_duration_seconds",
                            "Time taken to read the store for this scrape",
                            value=snap.scrape_seconds)
    yield GaugeMetricFamily("interlock_store_size_bytes", "Database file size (with its WAL)",
                            value=float(snap.size_bytes))
    yield CounterMetricFamily("interlock_store_events", "Events stored, all runs",
                              value=float(snap.events))
