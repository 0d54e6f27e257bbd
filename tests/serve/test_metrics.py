"""/metrics: Prometheus text for every run in the store, whichever process ran it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client.parser import text_string_to_metric_families

from serve.conftest import PIPELINES, cli

if TYPE_CHECKING:
    from pathlib import Path

    from serve.conftest import Serve


def scrape(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_metrics_count_runs_made_by_a_separate_interlock_run(serve: Serve, db: Path) -> None:
    for name, code in (("traced", 0), ("times_out", 1), ("breaks", 1)):
        done = cli(db, "run", str(PIPELINES / f"{name}.yaml"))
        assert done.returncode == code, done.stderr
    service = serve()
    own = service.launch("greet")
    service.wait_done(own)
    response = service.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = scrape(response.text)

    assert value(samples, "interlock_runs", pipeline="traced", state="succeeded") == 1
    assert value(samples, "interlock_runs", pipeline="greet", state="succeeded") == 1
    assert value(samples, "interlock_runs", pipeline="times-out", state="failed") == 1
    assert value(samples, "interlock_nodes", pipeline="traced", state="succeeded") == 2
    assert value(samples, "interlock_nodes", pipeline="times-out", state="timed_out") == 1
    flaky = {"pipeline": "traced", "node": "flaky"}
    assert value(samples, "interlock_node_attempts_total", **flaky) == 2
    assert value(samples, "interlock_node_retries_total", **flaky) == 1
    assert value(samples, "interlock_node_attempt_duration_seconds_count", **flaky) == 2
    assert value(samples, "interlock_node_timeouts_total", pipeline="times-out",
                 node="hang") == 2
    assert value(samples, "interlock_run_duration_seconds_count", pipeline="traced") == 1
    assert value(samples, "interlock_run_duration_seconds_sum", pipeline="traced") > 0
    breaker = "breaks/call"
    assert value(samples, "interlock_breaker_state", key=breaker, state="open") == 1
    assert value(samples, "interlock_breaker_state", key=breaker, state="closed") == 0
    assert value(samples, "interlock_breaker_state", key=breaker, state="half_open") == 0
    assert value(samples, "interlock_store_up") == 1
    assert value(samples, "interlock_store_size_bytes") > 0
    assert value(samples, "interlock_store_events_total") > 20

    # A later run shows up at the next scrape (finished runs are cached, not frozen).
    assert cli(db, "run", str(PIPELINES / "traced.yaml")).returncode == 0
    again = scrape(service.client.get("/metrics").text)
    assert value(again, "interlock_runs", pipeline="traced", state="succeeded") == 2
    assert value(again, "interlock_node_retries_total", **flaky) == 2
