"""The benchmark suite runs end to end (`python -m benchmarks --quick`); no speed is asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_quick_benchmark_run_prints_its_table_and_writes_the_results(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "W1,W6", "--out", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    table = done.stdout
    for expected in (
        "asyncio TaskGroup (floor)",
        "asyncio + per-node timeout",
        "engine, in-memory sink",
        "engine, durable store (FULL)",
        "engine + console",
        "fold, in memory (pure)",
        "RunManager.resume",
    ):
        assert expected in table
    assert "per node" in table and "x floor" in table
    text = results.read_text(encoding="utf-8")
    assert text.startswith("# Interlock benchmark results")
    assert "| cpu |" in text and "| sqlite |" in text


def test_an_unknown_workload_is_refused() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", "W9", "--out", "-"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "unknown workload W9" in done.stderr
