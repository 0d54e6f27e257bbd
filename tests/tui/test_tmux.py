"""End to end: the real `interlock` command in a real terminal (tmux), driven by keys only."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
import uuid
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

TMUX = shutil.which("tmux")
INTERLOCK = shutil.which("interlock")

pytestmark = pytest.mark.skipif(
    TMUX is None or INTERLOCK is None, reason="needs tmux and the installed `interlock` command"
)


class Terminal:
    """A tmux session on its own server socket (nothing shared with the user's tmux)."""

    def __init__(self, socket: str) -> None:
        self.socket = socket

    def tmux(self, *args: str) -> str:
        assert TMUX is not None
        done = subprocess.run(
            [TMUX, "-L", self.socket, "-f", "/dev/null", *args],
            check=True, capture_output=True, text=True, timeout=10,
        )
        return done.stdout

    def keys(self, *keys: str) -> None:
        for key in keys:
            self.tmux("send-keys", "-t", "console", key)
            time.sleep(0.05)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "console")

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                pytest.fail(f"{text!r} never showed; the terminal:\n{screen}")
            time.sleep(0.1)


@contextlib.contextmanager
def console(
    db: Path, pipelines: Path, *, width: int, height: int, flags: str = ""
) -> Iterator[Terminal]:
    """The real console on `db` and `pipelines` in a tmux session of its own; after it exits,
    the pane says `interlock exited CODE`. The tmux server goes when the block ends."""
    term = Terminal(f"interlock-test-{uuid.uuid4().hex[:8]}")
    # COLUMNS/LINES from the test runner's environment would pin the console's size.
    command = (
        f"env -u COLUMNS -u LINES {INTERLOCK} {flags} --db {db} --pipelines {pipelines}; "
        "echo interlock exited $?; sleep 5"
    )
    term.tmux("new-session", "-d", "-s", "console", "-x", str(width), "-y", str(height), command)
    try:
        yield term
    finally:
        subprocess.run([TMUX or "tmux", "-L", term.socket, "kill-server"], check=False,
                       capture_output=True, timeout=10)


@pytest.fixture
def terminal(tmp_path: Path, pipelines: Path) -> Iterator[Terminal]:
    with console(tmp_path / "runs.db", pipelines, width=120, height=36) as term:
        yield term


def test_launch_by_keys_succeeds_then_a_long_run_is_cancelled_by_keys(
    terminal: Terminal,
) -> None:
    terminal.wait_for("Runs  (0 of 0")
    terminal.wait_for("One step that sleeps")  # the pipelines are read
    # Pipelines, sorted: approval branching broken flaky gated hello midflight slow timeouts.
    # A first start: the pipelines have the focus (the runs table is empty).
    terminal.keys("Down", "Down", "Down", "Down", "Down", "Enter")
    terminal.wait_for("hello: Hello, Interlock")
    terminal.keys("C-s")
    screen = terminal.wait_for("SUCCEEDED")
    assert "✔ done" in screen
    terminal.wait_for("#15   run.completed          succeeded")  # 3 shell nodes: +1 each

    terminal.keys("Escape")
    terminal.wait_for("Runs  (1 of 1")
    terminal.keys("Down", "Down", "Enter")  # the pipelines table still has the cursor: slow
    terminal.wait_for("slow: Slow")
    terminal.keys("C-s")
    terminal.wait_for("▶ nap")
    terminal.keys("c")
    terminal.wait_for("Cancel run")
    terminal.keys("y")
    screen = terminal.wait_for("CANCELLED")
    assert "■ nap" in screen

    terminal.keys("Escape")
    terminal.wait_for("Runs  (2 of 2")
    terminal.keys("q")
    terminal.wait_for("interlock exited 0")
