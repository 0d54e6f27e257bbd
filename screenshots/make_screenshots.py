"""Make the console's screenshots (SVG) from the real app on a seeded database.

    python screenshots/make_screenshots.py [OUTPUT_DIR]

Real runs of the bundled pipelines (`pipelines/*.yaml`, `wide-200` among them) plus a demo one
(`tests/tui/data/pipelines/midflight.yaml`) are written to a temp
database with fixed run ids and a fake clock; the console runs headless on it with a clock that
stands still, so the pictures come out the same every time. One run is launched inside the
console and caught mid-flight: a step healed by a retry, a breaker open with its cool-down, a
long step counting down to its timeout, an approval still to come.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(REPO / "tests" / "tui")]

import seeding  # type: ignore[import-not-found]  # noqa: E402  (lives with the console's tests)
from scenes import (  # type: ignore[import-not-found]  # noqa: E402  (the snapshot tests' scenes)
    INTERRUPTED,
    breakers,
    cancel_in_grace,
    diff_view,
    help_screen,
    home,
    interrupted_view,
    node_detail,
    node_test,
    playback,
    run_view,
    timeline,
    wide_run,
)

from engine.loader import load_file  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from textual.pilot import Pilot


WIDE = seeding.run_id("wide-200")


SHOTS: list[tuple[str, Callable[[Pilot[Any]], Awaitable[None]], tuple[int, int], bool]] = [
    ("home", home, (120, 36), False),
    ("run-midflight", run_view, (120, 36), False),
    ("node-detail", node_detail, (120, 36), False),
    ("breakers", breakers, (120, 36), False),
    ("playback", playback, (120, 36), False),
    ("run-80x24", run_view, (80, 24), False),
    ("home-80x24", home, (80, 24), False),
    ("wide-200", wide_run, (120, 36), False),
    ("run-ascii", run_view, (120, 36), True),
    ("help", help_screen, (120, 36), False),
    ("diff", diff_view, (120, 36), False),
    ("timeline", timeline, (120, 36), False),
    ("cancel-grace", cancel_in_grace, (120, 36), False),
    ("interrupted", interrupted_view, (120, 36), False),
    ("node-test", node_test, (120, 36), False),
]


async def seed_all(root: Path) -> tuple[Path, Path]:
    pipelines = seeding.pipelines_dir(
        root / "pipelines",
        bundled=("approval", "branching", "diamond", "flaky", "hello", "release", "timeouts",
                 "wide-200"),
        extra=("broken", "midflight", "cleanup"),
    )
    db = root / "runs.db"
    await seeding.seed(db, pipelines, slow=True)
    # A release whose process died at its first step, a few minutes before the pictures' now.
    await seeding.interrupted_run(
        db, pipelines / "release.yaml", INTERRUPTED, at=seeding.START + 420.0
    )
    clock = seeding.FakeClock(seeding.START + 500.0, step=0.004)
    from engine.breaker import BreakerRegistry
    from engine.manager import RunManager
    from engine.store import Store

    async with Store(db) as store, RunManager(
        store=store, now=clock.iso, breakers=BreakerRegistry(clock=clock.wall)
    ) as manager:
        handle = await manager.start(load_file(pipelines / "wide-200.yaml"), run_id=WIDE)
        await handle.wait(60)
    return db, pipelines


async def shoot(db: Path, pipelines: Path, out: Path) -> None:
    for name, before, size, ascii in SHOTS:
        work = Path(tempfile.mkdtemp(prefix="interlock-shot-"))
        shutil.copy(db, work / "runs.db")
        shutil.copytree(pipelines, work / "pipelines")
        os.chdir(work)  # relative paths: the help screen shows `runs.db`, not a temp path
        events = seeding.FakeClock(seeding.START + 540.0)
        app = seeding.console(Path("runs.db"), Path("pipelines"), events=events, ascii=ascii)
        async with app.run_test(size=size) as pilot:
            await before(pilot)
            svg = app.export_screenshot(title=f"Interlock — {name}")
            for run in app.bridge.active_runs():  # a cancel in its grace need not wait it out
                app.bridge.manager.force(run)
            await app.bridge.close()
        (out / f"{name}.svg").write_text(svg)
        shutil.rmtree(work, ignore_errors=True)
        print(f"wrote {out / (name + '.svg')}")  # noqa: T201  (a script reports what it wrote)


async def main(out: Path) -> None:
    root = Path(tempfile.mkdtemp(prefix="interlock-seed-"))
    try:
        db, pipelines = await seed_all(root)
        await shoot(db, pipelines, out)
    finally:
        os.chdir(REPO)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    target = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else HERE
    target.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(target))
