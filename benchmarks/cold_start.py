"""W7: whole-process start of the `interlock` command, against a bare `python -c pass`.

Each figure is the wall time of a fresh process, from spawn to exit, run as a user runs it (the
installed console script beside this Python, not through a version-manager shim).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.common import FLOOR, BenchmarkError, Row, Target
from benchmarks.store_bench import interlock_command

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from benchmarks.common import Settings

ROOT = Path(__file__).resolve().parent.parent
TITLE = "cold start, whole process"


def wall(argv: Sequence[str], reps: int) -> list[float]:
    """Milliseconds per run of `argv` (after one run that warms the OS file cache)."""
    subprocess.run(argv, cwd=ROOT, capture_output=True, check=False, timeout=60)
    out = []
    for _ in range(reps):
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, check=False, timeout=60)
        out.append((time.perf_counter() - start) * 1e3)
        if done.returncode not in (0,):
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
            raise BenchmarkError(f"{' '.join(argv)} exited {done.returncode}: {' / '.join(tail)}")
    return out


async def w7(settings: Settings) -> list[Row]:
    reps = settings.reps(15, 3)
    interlock = interlock_command()
    bundled = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "pipelines").glob("*.yaml"))
    cases: list[tuple[str, list[str], str, Target | None]] = [
        ("python -c pass (floor)", [sys.executable, "-c", "pass"], FLOOR, None),
        ("python -c 'import asyncio, sqlite3'",
         [sys.executable, "-c", "import asyncio, sqlite3"], "", None),
        ("interlock --help", [*interlock, "--help"], "", None),
        ("interlock validate pipelines/hello.yaml",
         [*interlock, "validate", "pipelines/hello.yaml"], "", Target(300.0)),
        (f"interlock validate pipelines/*.yaml ({len(bundled)} files)",
         [*interlock, "validate", *bundled], "", Target(300.0)),
    ]
    return [
        Row("W7", TITLE, variant, "wall", "ms", wall(argv, reps), role=role, target=target)
        for variant, argv, role, target in cases
    ]


WORKLOADS: dict[str, Callable[[Settings], Awaitable[list[Row]]]] = {"W7": w7}
