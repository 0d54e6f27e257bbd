"""The results table (printed, and as Markdown in RESULTS.md) and the machine it was measured on."""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import sqlite3
import subprocess
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.common import FLOOR, TIMEOUT_FLOOR, Row, fmt_value

if TYPE_CHECKING:
    from collections.abc import Sequence

ROOT = Path(__file__).resolve().parent.parent
HEADERS = ("W", "variant", "metric", "median", "min", "max", "unit", "x floor", "x +timeout",
           "target", "")
NOTES = (
    "The machine is a 2-core VM that other work shared during the run: absolute figures move "
    "by 2x from one run to the next, the ratios to the floor measured alongside much less "
    "(repetitions of the floors and the engine variants are interleaved for that reason).",
    "Durable variants wait for SQLite commits on the run's critical path (the run's creation "
    "and ownership before it starts, the last batch before the run is reported ended). What "
    "one commit with `synchronous=FULL` costs on this disk is the W5 'a commit per event' floor;"
    " the `NORMAL` rows of W1 and W2 show the same runs without the fsyncs.",
    "W3 shell: starting 200 processes through asyncio takes about a second here (fork runs on "
    "the loop's thread, and Python 3.11's default child watcher starts a thread per process), "
    "so those nodes get a 3 s deadline, after the last has started; the lag is measured to the "
    "`node.timed_out` event, i.e. with the process group gone and its pipes closed.",
    "W8 key-to-screen: the real app under Textual's test driver; a key event is sent as Pilot "
    "sends it, and the time is taken when the first frame of the run screen that shows the "
    "moved selection is handed to the terminal (rendered to terminal output, as a real "
    "terminal needs). The events/s in the variant are those the store committed meanwhile.",
    "Peers (`--peers`, Prefect, Dagster, Apache Hamilton) run in processes of their own; see "
    "`benchmarks/peers.py` for what each one runs and why W4 (and W3 for Dagster and Hamilton, "
    "which have no per-node timeout) has no peer figure.",
)
README_START = "<!-- benchmarks:start -->"
README_END = "<!-- benchmarks:end -->"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
            check=True, timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" (with uncommitted changes)" if dirty else "")


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpus (nproc)": str(cpus),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sqlite": sqlite3.sqlite_version,
        "interlock": f"{_version('interlock')} at {_git()}",
        "textual": _version("textual"),
        "aiosqlite": _version("aiosqlite"),
        "pydantic": _version("pydantic"),
        "tenacity": _version("tenacity"),
    }


def _higher_is_better(row: Row) -> bool:
    return row.unit.endswith("/s")


def _ratio(row: Row, base: Row | None) -> str:
    if base is None or base is row:
        return ""
    value, floor = row.median, base.median
    if math.isnan(value) or math.isnan(floor) or floor <= 0 or value <= 0:
        return "-"
    ratio = floor / value if _higher_is_better(row) else value / floor
    return f"{ratio:,.1f}x" if ratio < 100 else f"{ratio:,.0f}x"


def _bases(rows: Sequence[Row]) -> dict[tuple[str, str, str], dict[str, Row]]:
    bases: dict[tuple[str, str, str], dict[str, Row]] = {}
    for row in rows:
        if row.role:
            bases.setdefault((row.workload, row.title, row.metric), {})[row.role] = row
    return bases


def table_cells(rows: Sequence[Row]) -> list[tuple[str, list[list[str]]]]:
    """Rows grouped by workload title, each as the table's cells."""
    bases = _bases(rows)
    groups: dict[str, list[list[str]]] = {}  # by heading, in order of first appearance
    for row in rows:
        heading = f"{row.workload} {row.title}"
        base = bases.get((row.workload, row.title, row.metric), {})
        groups.setdefault(heading, []).append([
            row.workload,
            row.variant,
            row.metric,
            fmt_value(row.median),
            fmt_value(row.low),
            fmt_value(row.high),
            row.unit,
            "" if row.role == FLOOR else _ratio(row, base.get(FLOOR)),
            "" if row.role else _ratio(row, base.get(TIMEOUT_FLOOR)),
            row.target.describe(row.unit) if row.target else "",
            row.verdict,
        ])
    return list(groups.items())


def text_table(rows: Sequence[Row]) -> str:
    groups = table_cells(rows)
    every = [list(HEADERS)] + [cells for _, body in groups for cells in body]
    widths = [max(len(cells[i]) for cells in every) for i in range(len(HEADERS))]
    numeric = {3, 4, 5, 7, 8}

    def line(cells: Sequence[str]) -> str:
        parts = [
            c.rjust(widths[i]) if i in numeric else c.ljust(widths[i]) for i, c in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    out = [line(HEADERS), line(["-" * w for w in widths])]
    for heading, body in groups:
        out.append(f"-- {heading}")
        out.extend(line(cells) for cells in body)
    return "\n".join(out)


def markdown_table(rows: Sequence[Row]) -> str:
    groups = table_cells(rows)
    headers = ["variant", "metric", "median", "min", "max", "unit", "x floor", "x +timeout",
               "target", ""]
    out: list[str] = []
    for heading, body in groups:
        out += [f"**{heading}**", "", "| " + " | ".join(headers) + " |",
                "|" + "|".join(["---", "---", "--:", "--:", "--:", "---", "--:", "--:", "---",
                                "---"]) + "|"]
        for cells in body:
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells[1:]) + " |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def verdicts(rows: Sequence[Row]) -> list[str]:
    """One line per target: the figure, the target and the verdict."""
    lines = []
    for row in rows:
        if row.target is None:
            continue
        lines.append(
            f"{row.verdict:>12}  {row.workload} {row.variant}, {row.metric}: "
            f"{fmt_value(row.median)} {row.unit} (target {row.target.describe(row.unit)})"
        )
    return lines


def results_markdown(
    rows: Sequence[Row], *, command: str, elapsed: float, notes: Sequence[str] = ()
) -> str:
    info = machine()
    out = [
        "# Interlock benchmark results",
        "",
        f"Measured with `{command}` in {elapsed:,.0f} s. Every workload ran on its floor (plain",
        "asyncio, written in the benchmark) and on the engine in the same process and the same",
        "run; ratios divide by the floor (`x floor`) and by asyncio with a per-node timeout",
        "(`x +timeout`). Median over the repetitions, with min and max. See",
        "`benchmarks/__init__.py` for what each workload does.",
        "",
        "| machine | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in info.items()),
        "",
        markdown_table(rows),
        "## Targets",
        "",
        "```",
        *verdicts(rows),
        "```",
    ]
    out += ["", "## Notes", "", *(f"- {note}" for note in (*NOTES, *notes))]
    return "\n".join(out) + "\n"


def write_results(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def summary_table(rows: Sequence[Row]) -> str:
    """The README's table: per group its floor, then every figure with a target or a peer."""
    bases = _bases(rows)
    out = ["| | variant | metric | median | x floor | target | |", "|---|---|---|--:|--:|---|---|"]
    for heading, _ in table_cells(rows):
        first_of_group = True
        for row in rows:
            if f"{row.workload} {row.title}" != heading:
                continue
            if row.role != FLOOR and row.target is None and "engine" in row.variant:
                continue
            if row.role == TIMEOUT_FLOOR or (row.role == FLOOR and row.metric.endswith("max")):
                continue
            base = bases.get((row.workload, row.title, row.metric), {}).get(FLOOR)
            first = f"**{row.workload}** {row.title}" if first_of_group else ""
            first_of_group = False
            out.append(
                f"| {first} | {row.variant} | {row.metric} | {fmt_value(row.median)} {row.unit} "
                f"| {'' if row.role == FLOOR else _ratio(row, base)} "
                f"| {row.target.describe(row.unit) if row.target else ''} | {row.verdict} |"
            )
    return "\n".join(out) + "\n"


def update_readme(readme: Path, rows: Sequence[Row], command: str) -> bool:
    """Replace the table between the README's benchmark markers; False if it has none."""
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        return False
    info = machine()
    block = "\n".join([
        README_START,
        f"Measured by `{command}` on {info['cpu']} ({info['cpus (nproc)']} CPUs), "
        f"Python {platform.python_version()}, SQLite {info['sqlite']}, {info['date']}; "
        "every row with its min/max is in `benchmarks/RESULTS.md`:",
        "",
        summary_table(rows).rstrip(),
        "",
    ])
    readme.write_text(text[:start] + block + text[end:], encoding="utf-8")
    return True

