"""`b` in the console and `interlock breakers` show one state and one count per key, spelled
the same (`half-open`), and a reset breaker is still listed: closed, 0 failures."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import TYPE_CHECKING

from console_helpers import SIZE, MakeApp, screen_text, wait_for_text, wait_until

from engine.store import BreakerRecord, Store
from tui.screens.breakers import BreakersScreen

if TYPE_CHECKING:
    from pathlib import Path

KEY = "flaky/always_down"


def interlock(db: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from tui.cli import main; sys.exit(main())",
         *args, "--db", str(db)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def cli_row(db: Path) -> list[str]:
    line = next(x for x in interlock(db, "breakers").splitlines() if x.startswith(KEY))
    return line.split()


async def stored_breaker(db: Path, *, opened_ago: float) -> None:
    now = time.time()
    async with Store(db) as store:
        await store.save_breaker(BreakerRecord(KEY, "open", 2, now - opened_ago, 5.0, now))


async def test_b_and_interlock_breakers_agree_on_a_half_open_breaker(
    make_app: MakeApp, db: Path
) -> None:
    await stored_breaker(db, opened_ago=60.0)  # its 5 s cool-down is long over
    assert cli_row(db)[1:3] == ["half-open", "2"]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.bridge.ready, what="the database")
        await pilot.press("b")
        await wait_until(pilot, lambda: isinstance(app.screen, BreakersScreen))
        await wait_for_text(pilot, KEY)
        row = next(x for x in screen_text(app).splitlines() if KEY in x).split()
        assert row[row.index(KEY) + 1 : row.index(KEY) + 3] == ["half-open", "2"]
        assert "half_open" not in screen_text(app)


async def test_a_reset_breaker_is_still_listed_closed_with_no_failures(db: Path) -> None:
    await stored_breaker(db, opened_ago=1.0)
    assert cli_row(db)[1:3] == ["open", "2"]
    assert "reset (closed)" in interlock(db, "breakers", "reset", KEY)
    assert cli_row(db)[1:3] == ["closed", "0"]
