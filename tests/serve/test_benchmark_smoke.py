"""benchmarks/serve_sse.py runs end to end and prints its three figures (no speed asserted)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from benchmarks import serve_sse

if TYPE_CHECKING:
    import pytest


def test_the_stream_latency_benchmark_prints_its_figures(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert serve_sse.main(["--streams", "3", "--nodes", "3", "--step", "10ms"]) == 0
    out = capsys.readouterr().out
    assert "own run" in out and "streams    3" in out
    assert "another process's run (polled)" in out
    assert out.count(" p99 ") == 3
