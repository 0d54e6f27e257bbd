"""Prometheus metrics are derived from events: after real runs, the exposition holds node and
run durations, timeout counters, runs by final state and breaker states."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from prometheus_client.parser import text_string_to_metric_families

from engine.api import callable_ref
from engine.breaker import BreakerRegistry
from engine.metrics import Metrics

if TYPE_CHECKING:
    from conftest import RunPipeline

    from engine.nodes import NodeContext


async def quick(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    await asyncio.sleep(0.02)
    return {}


async def stuck(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    await asyncio.sleep(30)
    return {}


async def broken(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    raise ValueError("nope")


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the exposition text, by name and labels."""
    found: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(metrics.text()):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


async def test_metrics_count_runs_by_state_node_durations_and_timeouts(
    run_pipeline: RunPipeline,
) -> None:
    metrics = Metrics()
    pipeline = {
        "id": "etl",
        "nodes": [
            {"id": "fast", "type": "python", "call": callable_ref(quick)},
            {"id": "slow", "type": "python", "call": callable_ref(stuck), "timeout": 0.1,
             "retry": {"max_attempts": 2, "on": ["timeout"], "backoff": {"initial": 0}}},
        ],
    }
    await run_pipeline(pipeline, sinks=[metrics])
    ok = {"id": "etl", "nodes": [pipeline["nodes"][0]]}
    await run_pipeline(ok, sinks=[metrics])
    await run_pipeline(ok, sinks=[metrics])

    node = "interlock_node_duration_seconds"
    assert value(metrics, f"{node}_count", pipeline="etl", node="fast") == 3
    fast_sum = value(metrics, f"{node}_sum", pipeline="etl", node="fast")
    assert fast_sum is not None
    assert 0.05 <= fast_sum < 3
    # Both timed-out attempts were observed, each about as long as the timeout.
    assert value(metrics, f"{node}_count", pipeline="etl", node="slow") == 2
    slow_sum = value(metrics, f"{node}_sum", pipeline="etl", node="slow")
    assert slow_sum is not None
    assert 0.2 <= slow_sum < 2
    assert value(metrics, "interlock_node_timeouts_total", pipeline="etl", node="slow") == 2
    assert value(metrics, "interlock_runs_total", pipeline="etl", state="failed") == 1
    assert value(metrics, "interlock_runs_total", pipeline="etl", state="succeeded") == 2
    assert value(metrics, "interlock_run_duration_seconds_count", pipeline="etl") == 3
    run_sum = value(metrics, "interlock_run_duration_seconds_sum", pipeline="etl")
    assert run_sum is not None
    assert 0.2 <= run_sum < 5
    text = metrics.text()
    assert "# TYPE interlock_node_duration_seconds histogram" in text
    assert "# TYPE interlock_runs_total counter" in text


async def test_a_run_past_its_deadline_counts_as_a_run_timeout(run_pipeline: RunPipeline) -> None:
    metrics = Metrics()
    await run_pipeline(
        {
            "id": "late",
            "timeout": 0.1,
            "nodes": [{"id": "slow", "type": "python", "call": callable_ref(stuck)}],
        },
        sinks=[metrics],
    )
    assert value(metrics, "interlock_run_timeouts_total", pipeline="late") == 1
    assert value(metrics, "interlock_runs_total", pipeline="late", state="timeout") == 1
    # A node cancelled by the deadline did not time out itself.
    assert value(metrics, "interlock_node_timeouts_total", pipeline="late", node="slow") is None


async def test_the_breaker_gauge_follows_the_breaker_state(run_pipeline: RunPipeline) -> None:
    metrics = Metrics()
    breakers = BreakerRegistry()
    pipeline = {
        "id": "svc",
        "nodes": [
            {"id": "call", "type": "python", "call": callable_ref(broken),
             "breaker": {"key": "warehouse", "failure_threshold": 1}},
        ],
    }
    await run_pipeline(pipeline, sinks=[metrics], breakers=breakers)
    assert value(metrics, "interlock_breaker_state", key="warehouse") == 2  # open


def test_each_metrics_object_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.runs.labels("p", "succeeded").inc()
    assert value(first, "interlock_runs_total", pipeline="p", state="succeeded") == 1
    assert value(second, "interlock_runs_total", pipeline="p", state="succeeded") is None
