"""The benchmark suite runs end to end (`python -m benchmarks --quick`); no speed is asserted."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import __main__ as bench_main
from benchmarks import store_bench
from benchmarks.common import BenchmarkError, Row, Settings, read_result

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
    # Measured in worker processes: the targets came back with the rows, and are judged.
    assert "<= 25.0 us" in table
    assert "W1 engine, in-memory sink, per node:" in table
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


def test_a_follower_that_cannot_start_is_reported_with_what_it_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As when the installed `interlock` script points at a checkout that is gone.
    says = "import sys; sys.stderr.write('No module named tui\\n'); sys.exit(3)"
    broken = [sys.executable, "-c", says]
    monkeypatch.setattr(store_bench, "interlock_command", lambda: broken)
    with pytest.raises(BenchmarkError, match=r"follower \(.*\) exited 3: No module named tui"):
        asyncio.run(store_bench._follow_latencies(tmp_path / "follow.db", 1))


def test_a_workload_that_cannot_be_measured_is_named_and_no_results_are_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def unmeasurable(settings: Settings) -> list[Row]:
        raise BenchmarkError("the follower exited 3")

    async def here(name: str, settings: Settings) -> list[Row]:  # the worker, in this process
        result = await bench_main.worker(name, settings)
        assert set(result) == {"error"}
        raise BenchmarkError(result["error"])

    monkeypatch.setattr(bench_main, "workloads", lambda: {"W5": unmeasurable})
    monkeypatch.setattr(bench_main, "run_workload", here)
    results = tmp_path / "RESULTS.md"
    assert bench_main.main(["--only", "W5", "--out", str(results)]) == 1
    err = capsys.readouterr().err
    assert "W5 not measured: the follower exited 3" in err
    assert "results not written" in err
    assert not results.exists()


def test_only_a_whole_run_replaces_the_results_file_unasked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def measured(name: str, settings: Settings) -> list[Row]:
        return [Row(name, "a workload", "engine", "per node", "us", [1.0, 2.0, 3.0])]

    default = tmp_path / "RESULTS.md"
    monkeypatch.setattr(bench_main, "DEFAULT_OUT", default)
    monkeypatch.setattr(bench_main, "ALL", ("W1", "W2"))
    monkeypatch.setattr(bench_main, "run_workload", measured)

    # Some of the workloads, or a smoke run: printed, but the committed table stays.
    assert bench_main.main(["--only", "W2"]) == 0
    assert bench_main.main(["--quick"]) == 0
    assert "RESULTS.md not written: a --quick or --only run" in capsys.readouterr().err
    assert not default.exists()
    # Asked for by name, it is written.
    asked = tmp_path / "W2.md"
    assert bench_main.main(["--only", "W2", "--out", str(asked)]) == 0
    assert "W2" in asked.read_text(encoding="utf-8")
    # Every workload: the default file.
    assert bench_main.main([]) == 0
    text = default.read_text(encoding="utf-8")
    assert "W1" in text and "W2" in text


def test_a_worker_that_dies_without_results_is_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As when the worker cannot even load the benchmarks: outside the checkout, `benchmarks`
    # (which is not installed) is not there to import.
    monkeypatch.setenv("PYTHONPATH", "")
    monkeypatch.chdir("/")
    with pytest.raises(BenchmarkError, match=r"its process exited 1 without results"):
        asyncio.run(bench_main.in_worker("W1", Settings(quick=True)))


def test_a_subprocess_result_is_its_last_line_whatever_came_before() -> None:
    assert read_result(b'a framework says hello\n{"rows": []}\n') == {"rows": []}
    assert read_result(b"Traceback (most recent call last):\n  ...\n") is None
    assert read_result(b"") is None


def test_a_side_by_side_run_measures_this_tree_and_a_revision_and_prints_their_ratios() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--baseline", "HEAD", "--quick", "--only", "W2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert any(line.split()[:2] == ["W", "variant"] for line in lines)
    measured = [re.split(r"\s{2,}", line) for line in lines if line.startswith("W2 ")]
    assert [cells[1] for cells in measured] == [
        "engine, in-memory sink",
        "engine, durable store (FULL)",
    ]
    for cells in measured:
        # this tree, the revision, their ratio (a quick run is too short to judge either)
        assert cells[2].endswith(" us") and cells[3].endswith(" us")
        assert float(cells[4]) > 0 and float(cells[5]) > 0
    # The revision's checkout is gone afterwards.
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True, check=True
    )
    assert "interlock-baseline-" not in listed.stdout


def test_a_side_by_side_run_flags_a_variant_more_than_ten_percent_slower() -> None:
    from benchmarks.side_by_side import Pair, table

    pairs = [
        # Each repetition paired with the one made beside it: 1.1, 1.15 and 1.2 times slower.
        Pair("W1", "memory", "engine, in-memory sink", [22.0, 23.0, 24.0], [20.0, 20.0, 20.0],
             [10.0], [9.0]),
        Pair("W1", "FULL", "engine, durable store (FULL)", [40.0], [39.0]),
    ]
    text = table(pairs, "v1")
    assert "SLOWER by 15%" in text
    assert "more than 10% slower: W1 engine, in-memory sink" in text
    assert "1.026" in text and "1.111" in text and text.count("SLOWER") == 1
    # A busy spell that slows both halves of a pair alike drops out of the ratio.
    busy = Pair("W2", "memory", "engine, in-memory sink", [20.0, 80.0, 21.0], [20.0, 79.0, 20.0])
    assert 1.0 <= busy.ratio < 1.06


def test_a_side_by_side_run_against_an_unknown_revision_says_so() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--baseline", "no-such-rev", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "no commit 'no-such-rev'" in done.stderr


def test_a_side_by_side_run_measures_only_w1_and_w2() -> None:
    with pytest.raises(SystemExit):
        bench_main.parse_args(["--baseline", "HEAD", "--only", "W3"])
