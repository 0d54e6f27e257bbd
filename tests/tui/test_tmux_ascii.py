"""End to end with `--ascii` in a real terminal (tmux, 80x24): what reaches the terminal is plain
ASCII, notifications included (a headless test app draws no toasts)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest
from test_tmux import INTERLOCK, TMUX, Terminal, console

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.skipif(
    TMUX is None or INTERLOCK is None, reason="needs tmux and the installed `interlock` command"
)


def escape(term: Terminal) -> None:
    """Escape alone: a key right after it would read as alt+key (an escape sequence)."""
    term.keys("Escape")
    time.sleep(0.4)


@pytest.fixture
def ascii_terminal(tmp_path: Path, pipelines: Path) -> Iterator[Terminal]:
    with console(tmp_path / "runs.db", pipelines, width=80, height=24, flags="--ascii") as term:
        yield term


def test_ascii_mode_sends_only_ascii_to_the_terminal_notifications_included(
    ascii_terminal: Terminal,
) -> None:
    term = ascii_terminal

    def plain(screen: str, what: str) -> None:
        odd = [line for line in screen.splitlines() if not line.isascii()]
        assert not odd, f"{what}: non-ASCII on screen:\n" + screen

    plain(term.wait_for("valid"), "home")
    term.keys("c")  # no run: a notification
    plain(term.wait_for("no run selected"), "a notification")
    term.keys("?")
    plain(term.wait_for("Interlock - keys"), "help")
    escape(term)
    term.keys("b")
    plain(term.wait_for("Circuit breakers"), "breakers")
    escape(term)
    term.keys("l")
    plain(term.wait_for("Launch a run"), "launch")
    escape(term)
    term.keys("q")
    term.wait_for("interlock exited 0")
