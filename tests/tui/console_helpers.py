"""Helpers for the console's Pilot tests: read the screen, wait for it, start and open runs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest
from textual.widgets import Input

from tui.app import InterlockApp
from tui.screens.home import HomeScreen
from tui.screens.launch import LaunchScreen
from tui.screens.run import RunScreen

if TYPE_CHECKING:
    from textual.app import App
    from textual.pilot import Pilot

SIZE = (120, 36)
MakeApp = Callable[..., InterlockApp]


def app_of(pilot: Pilot[Any]) -> InterlockApp:
    """The console a pilot drives, typed."""
    app = pilot.app
    assert isinstance(app, InterlockApp)
    return app


def screen_text(app: App[Any]) -> str:
    """The terminal as text, line by line (what an operator reads, colours aside)."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(segment.text for segment in strip).rstrip() for strip in strips)


async def wait_until(
    pilot: Pilot[Any],
    check: Callable[[], bool | Awaitable[bool]],
    *,
    timeout: float = 15.0,
    what: str = "the condition",
) -> None:
    """Let the app run until `check()` holds; fail with the screen shown if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; the screen:\n{screen_text(pilot.app)}")
        await pilot.pause(0.05)


async def wait_for_text(pilot: Pilot[Any], text: str, *, timeout: float = 15.0) -> None:
    await wait_until(
        pilot, lambda: text in screen_text(pilot.app), timeout=timeout, what=repr(text)
    )


async def launch(pilot: Pilot[Any], pipeline_id: str, **params: str) -> str:
    """Press `l`, pick the pipeline, type the params, start; the new run's id."""
    app = app_of(pilot)
    await wait_until(pilot, lambda: app.bridge.ready, what="the database")
    await pilot.press("l")
    await wait_until(pilot, lambda: isinstance(app.screen, LaunchScreen))
    screen = app.screen
    assert isinstance(screen, LaunchScreen)
    screen.picker.value = pipeline_id
    await pilot.pause()
    for name, value in params.items():
        field = screen.query_one(f"#param-{name}", Input)
        field.focus()
        field.value = ""
        await pilot.press(*value)
    await pilot.press("ctrl+s")
    await wait_until(pilot, lambda: isinstance(app.screen, RunScreen), what="the run view")
    run_screen = app.screen
    assert isinstance(run_screen, RunScreen)
    return run_screen.run_id


async def start(pilot: Pilot[Any], pipeline_id: str, **params: str) -> str:
    """Start a run without the launch dialog (for tests about other keys); show its view."""
    app = app_of(pilot)
    await wait_until(pilot, lambda: app.bridge.ready, what="the database")
    entry = app.ctx.entry(pipeline_id)
    assert entry is not None and entry.pipeline is not None
    run_id = await app.bridge.launch(entry.pipeline, params)
    await app.push_screen(RunScreen(app.ctx, run_id))
    await wait_until(pilot, lambda: isinstance(app.screen, RunScreen), what="the run view")
    return run_id


async def start_holding(pilot: Pilot[Any], pipeline_id: str = "stubborn") -> str:
    """Start a run of a pipeline whose node `hold` traps SIGTERM; return once it holds."""
    app = app_of(pilot)
    run_id = await start(pilot, pipeline_id)
    await wait_until(
        pilot,
        lambda: "holding" in app.bridge.manager.get(run_id).state.nodes["hold"].logs,  # type: ignore[union-attr]
        what="the node to start holding",
    )
    return run_id


async def cancel_into_grace(pilot: Pilot[Any]) -> None:
    """Cancel the open run by keys (`c`, then the dialog's main action) and wait for the
    SIGKILL countdown of its nodes' grace."""
    await pilot.press("c")
    await wait_for_text(pilot, "Cancel run")
    await pilot.press("enter")
    await wait_for_text(pilot, "SIGKILL in")


async def open_home_run(pilot: Pilot[Any], run_id: str) -> RunScreen:
    """Highlight `run_id` in the runs table and press enter."""
    app = app_of(pilot)
    await wait_until(pilot, lambda: isinstance(app.screen, HomeScreen))
    home = app.screen
    assert isinstance(home, HomeScreen)
    await wait_until(pilot, lambda: run_id in home.runs_table.rows, what=f"run {run_id[:8]}")
    home.runs_table.focus()
    home.runs_table.move_cursor(row=home.runs_table.get_row_index(run_id))
    await pilot.press("enter")
    await wait_until(pilot, lambda: isinstance(app.screen, RunScreen), what="the run view")
    screen = app.screen
    assert isinstance(screen, RunScreen)
    return screen


def notified(app: App[Any], text: str) -> bool:
    """Whether a notification (a toast, however it wraps) says `text`."""
    return any(text in n.message for n in app._notifications)


async def wait_for_notice(pilot: Pilot[Any], text: str, *, timeout: float = 15.0) -> None:
    await wait_until(
        pilot, lambda: notified(pilot.app, text), timeout=timeout, what=f"a notice {text!r}"
    )
