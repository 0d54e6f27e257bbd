"""A run started by `interlock run` in another process shows in the console and updates live;
the console's commands reach it through the store."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

from console_helpers import SIZE, open_home_run, screen_text, wait_for_text, wait_until

from engine.state import RunStatus

if TYPE_CHECKING:
    from pathlib import Path

    from console_helpers import MakeApp

REPO_ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


async def start_cli_run(db: Path, pipeline: Path) -> tuple[asyncio.subprocess.Process, str]:
    """`interlock run` in a subprocess; the run id is the first line it prints."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tui.cli", "run", str(pipeline), "--db", str(db),
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 20)
    return proc, line.decode().strip()


async def test_a_run_of_another_process_appears_updates_live_and_can_be_cancelled(
    make_app: MakeApp, db: Path, pipelines: Path
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.bridge.ready)
        proc, run_id = await start_cli_run(db, pipelines / "slow.yaml")
        try:
            await wait_for_text(pilot, run_id[:8])
            await wait_for_text(pilot, f"pid {proc.pid}")
            await open_home_run(pilot, run_id)
            await wait_for_text(pilot, "followed from the store")
            await wait_for_text(pilot, "▶ nap")  # it got there while we watched
            assert "updated" in screen_text(app)
            await pilot.press("c")
            await wait_for_text(pilot, "Cancel run")
            await pilot.press("y")
            await wait_for_text(pilot, "CANCELLED")
            assert await asyncio.wait_for(proc.wait(), 20) == 4
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        state = await app.bridge.run_state(run_id)
        assert state.state is RunStatus.CANCELLED
        assert state.nodes["nap"].reason is not None
