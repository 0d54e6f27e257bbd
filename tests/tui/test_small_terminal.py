"""At 80x24 the console stays usable: the footer shows `? Help` and `q Quit` on every screen,
the DAG pane shows the selected node, and header line 2 is never cut mid-reason."""

from __future__ import annotations

import shutil
import time
from typing import TYPE_CHECKING

from console_helpers import MakeApp, screen_text, start, wait_for_text, wait_until
from seeding import BUNDLED

from engine.state import RunState, RunStatus
from tui.screens.home import HomeScreen
from tui.screens.run import RunScreen
from tui.widgets.run_header import header_text

if TYPE_CHECKING:
    from pathlib import Path

SMALL = (80, 24)


def footer(text: str) -> str:
    return text.splitlines()[-1]


async def test_at_80x24_the_footer_keeps_help_and_quit_and_the_dag_the_selection(
    make_app: MakeApp, pipelines: Path
) -> None:
    shutil.copy(BUNDLED / "wide-200.yaml", pipelines / "wide-200.yaml")
    app = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await wait_until(pilot, lambda: app.bridge.ready, what="the database")
        await wait_for_text(pilot, "valid")
        assert isinstance(app.screen, HomeScreen)

        def help_and_quit() -> bool:
            shown = footer(screen_text(app))
            return "? Help" in shown and "q Quit" in shown

        await wait_until(pilot, help_and_quit, what="? Help and q Quit in the footer")
        await start(pilot, "wide-200")
        await wait_for_text(pilot, "SUCCEEDED", timeout=60)
        screen = app.screen
        assert isinstance(screen, RunScreen)
        await pilot.press(*["right"] * 7, "down", "down", *["right"] * 5)
        await pilot.pause(0.3)
        selected = screen.dag.selected
        assert selected is not None and selected != "start"
        await wait_until(pilot, help_and_quit, what="? Help and q Quit in the run's footer")
        text = screen_text(app)
        region = screen.dag.region
        dag_rows = text.splitlines()[region.y : region.y + region.height]
        assert region.height >= 5
        assert any(selected in row for row in dag_rows), f"{selected} not in the DAG pane"


async def test_at_80x24_a_run_view_opens_with_its_running_node_in_the_dag_pane(
    make_app: MakeApp,
) -> None:
    app = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await wait_until(pilot, lambda: app.bridge.ready, what="the database")
        entry = app.ctx.entry("midflight")
        assert entry is not None and entry.pipeline is not None
        run_id = await app.bridge.launch(entry.pipeline, {})

        async def crunching() -> bool:
            state = await app.bridge.run_state(run_id)
            return state.nodes["crunch"].state.value == "running"

        await wait_until(pilot, crunching, what="crunch to run")
        screen = RunScreen(app.ctx, run_id)
        await app.push_screen(screen)
        await wait_until(pilot, lambda: screen.dag.current_layout is not None, what="the DAG")
        assert screen.dag.selected == "crunch"  # the view opens on the node at work

        def in_dag_pane() -> bool:
            region = screen.dag.region
            rows = screen_text(app).splitlines()[region.y : region.y + region.height]
            return any("crunch" in row for row in rows)

        await wait_until(pilot, in_dag_pane, timeout=10, what="crunch in the DAG pane")
        await app.bridge.close()


def test_header_line_two_cuts_a_long_reason_with_an_ellipsis_inside_the_width() -> None:
    state = RunState("a" * 32, pipeline_id="release", state=RunStatus.FAILED)
    state.reason = "gate failed: preflight_contract_check, " + "a long explanation " * 10
    now = time.time()
    second = header_text(state, now, width=80).plain.splitlines()[1]
    assert len(second) <= 80
    assert second.rstrip().endswith("…")
    ascii_line = header_text(state, now, width=80, ascii=True).plain.splitlines()[1]
    assert ascii_line.isascii() and len(ascii_line) <= 80
