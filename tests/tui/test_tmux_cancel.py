"""End to end at 80x24 in tmux, keys only: launch a step that ignores SIGTERM, cancel it (the
console says CANCELLING with the countdown), quit (the notice says what it waits for), `K`."""

from __future__ import annotations

import shutil
import time
from typing import TYPE_CHECKING

import pytest
from seeding import TEST_PIPELINES
from test_tmux import INTERLOCK, TMUX, Terminal, console

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.skipif(
    TMUX is None or INTERLOCK is None, reason="needs tmux and the installed `interlock` command"
)


@pytest.fixture
def small_terminal(tmp_path: Path) -> Iterator[Terminal]:
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    shutil.copy(TEST_PIPELINES / "stubborn.yaml", pipelines / "stubborn.yaml")
    with console(tmp_path / "runs.db", pipelines, width=80, height=24) as term:
        yield term


def test_a_cancel_in_its_grace_then_quit_shows_the_countdown_and_k_ends_it(
    small_terminal: Terminal,
) -> None:
    term = small_terminal
    term.wait_for("stubborn")
    assert "? Help" in term.screen() and "q Quit" in term.screen()
    term.keys("l")
    term.wait_for("Launch a run")
    term.keys("Enter")  # the dialog's main action: start
    term.wait_for("hold | holding")
    term.keys("c")
    term.wait_for("Cancel run")
    term.keys("Enter")
    term.wait_for("CANCELLING")
    term.wait_for("SIGKILL in")
    assert "cancelling" in term.screen()
    term.wait_for("cleaning up after SIGTERM")  # what the node writes in its grace, logged
    term.keys("q")
    term.wait_for("Quit and cancel 1 run?")
    term.keys("Enter")
    term.wait_for("K kills them now")
    pressed = time.monotonic()
    term.keys("K")
    term.wait_for("interlock exited 0", timeout=20)
    assert time.monotonic() - pressed < 15, "K did not cut the 30 s grace short"
