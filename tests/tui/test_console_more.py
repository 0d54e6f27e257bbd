"""More console behaviour on real runs: opening nodes, the log filter, ASCII drawing, metrics,
cancelling an ownerless run, and resuming past a hard gate with an override."""

from __future__ import annotations

import asyncio
import urllib.request
from typing import TYPE_CHECKING

from console_helpers import SIZE, open_home_run, screen_text, start, wait_for_text, wait_until
from seeding import interrupted_run

from engine.state import NodeStatus, RunStatus
from tui.screens.node import NodeScreen
from tui.screens.run import RunScreen

if TYPE_CHECKING:
    from pathlib import Path

    from console_helpers import MakeApp


async def test_enter_on_the_dag_or_the_node_table_opens_the_node(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot, "hello", who="nodes")
        await wait_for_text(pilot, "SUCCEEDED")
        run_screen = app.screen
        assert isinstance(run_screen, RunScreen)
        # The view opened on the node at work then (greet or shout, as the run went): start
        # from greet, whatever the timing was.
        run_screen.dag.select("greet")
        await pilot.pause()
        await pilot.press("down", "enter")  # the DAG has the focus: greet -> shout
        await wait_until(pilot, lambda: isinstance(app.screen, NodeScreen))
        await wait_for_text(pilot, "HELLO, NODES!")  # shout's output
        assert '"greeting": "hello, nodes"' in screen_text(app)  # its input from greet
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen))
        screen = app.screen
        assert isinstance(screen, RunScreen)
        screen.table.focus()
        screen.table.move_cursor(row=2)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, NodeScreen))
        node_screen = app.screen
        assert isinstance(node_screen, NodeScreen)
        assert node_screen.node_id == "done"


async def test_slash_in_the_run_view_filters_the_event_log(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot, "hello")
        await wait_for_text(pilot, "run.completed")
        await pilot.press("slash", *"shout |")
        await wait_until(pilot, lambda: "node.started" not in screen_text(app))
        text = screen_text(app)
        assert "shout | " in text and "greet | " not in text
        await pilot.press("escape")
        await wait_for_text(pilot, "node.started")


async def test_ascii_mode_draws_boxes_and_marks_in_plain_ascii(make_app: MakeApp) -> None:
    app = make_app(ascii=True)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot, "hello")
        await wait_for_text(pilot, "+ SUCCEEDED")
        text = screen_text(app)
        assert "| + greet |" in text
        assert "+---------+" in text
        assert "+ succeeded" in text


async def test_metrics_are_served_on_the_metrics_port(make_app: MakeApp) -> None:
    app = make_app(metrics_port=0)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot, "hello")
        await wait_for_text(pilot, "SUCCEEDED")
        url = f"http://127.0.0.1:{app.bridge.metrics_port}/metrics"

        def fetch() -> str:
            with urllib.request.urlopen(url, timeout=5) as response:
                return str(response.read().decode())

        text = await asyncio.to_thread(fetch)
        assert 'interlock_runs_total{pipeline="hello",state="succeeded"} 1.0' in text


async def test_cancelling_a_run_no_process_owns_cancels_it_in_the_store(
    make_app: MakeApp, db: Path, pipelines: Path
) -> None:
    run_id = await interrupted_run(db, pipelines / "slow.yaml", "b" * 32)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_home_run(pilot, run_id)
        await wait_for_text(pilot, "INTERRUPTED")
        await pilot.press("c")
        await wait_for_text(pilot, "Cancel run")
        await pilot.press("y")
        await wait_for_text(pilot, "CANCELLED")
        state = await app.bridge.run_state(run_id)
        assert state.state is RunStatus.CANCELLED


async def test_resuming_past_a_failed_hard_gate_needs_a_reason_and_records_it(
    make_app: MakeApp,
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        run_id = await start(pilot, "gated")
        await wait_for_text(pilot, "FAILED")
        await pilot.press("R")
        await wait_for_text(pilot, "Override the hard gate")
        await pilot.press("enter")  # no reason: refused in place
        await wait_for_text(pilot, "a reason is required")
        await pilot.press(*"legal ok", "enter")
        await wait_for_text(pilot, "SUCCEEDED")
        state = await app.bridge.run_state(run_id)
        assert state.nodes["ship"].state is NodeStatus.SUCCEEDED
        assert state.overrides == [
            {"actor": "operator:tester", "reason": "legal ok", "nodes": ["contract"]}
        ]


async def test_a_database_that_cannot_be_opened_ends_the_console_with_exit_2(
    make_app: MakeApp, db: Path
) -> None:
    db.write_bytes(b"this is not an sqlite database, not at all " * 200)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: not app.is_running, what="the console to give up")
    assert app.return_code == 2
    assert db.read_bytes().startswith(b"this is not an sqlite database")  # left as it was
