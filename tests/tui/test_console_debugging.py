"""The console's debugging keys on real runs: `d` compares a run with the previous run of its
pipeline, `t` on a node runs that node alone on its inputs from the run, recording nothing."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from console_helpers import SIZE, screen_text, start, wait_for_text, wait_until

from engine.store import Store
from tui.screens.diff import DiffScreen
from tui.screens.node import NodeScreen
from tui.screens.node_test import NodeTestScreen
from tui.screens.run import RunScreen

if TYPE_CHECKING:
    from console_helpers import MakeApp

DATA = Path(__file__).resolve().parents[1] / "data" / "pipelines"


def _add_etl(pipelines: Path) -> None:
    for name in ("debug_etl.yaml", "debug_tasks.py"):
        shutil.copy(DATA / name, pipelines / name)


async def test_d_shows_the_run_against_the_previous_run_of_its_pipeline(
    make_app: MakeApp, pipelines: Path
) -> None:
    _add_etl(pipelines)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        first = await start(pilot, "debug-etl")
        await wait_for_text(pilot, "SUCCEEDED")
        await pilot.press("escape")
        second = await start(pilot, "debug-etl", fail_at="load")
        await wait_for_text(pilot, "FAILED")

        await pilot.press("d")

        await wait_until(pilot, lambda: isinstance(app.screen, DiffScreen), what="the diff")
        screen = app.screen
        assert isinstance(screen, DiffScreen)
        assert (screen.diff.run_a, screen.diff.run_b) == (first, second)
        text = screen_text(app)
        assert "first divergence: load: succeeded -> failed, output differs" in text
        assert "fail_at: 'none' -> 'load'" in text
        assert "succeeded -> failed" in text
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen))


async def test_d_on_the_first_run_of_a_pipeline_says_there_is_nothing_to_compare(
    make_app: MakeApp, pipelines: Path
) -> None:
    _add_etl(pipelines)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot, "debug-etl")
        await wait_for_text(pilot, "SUCCEEDED")
        await pilot.press("d")

        def said() -> bool:  # a toast: read from the app's notifications, not the screen
            return any("no earlier run of its pipeline" in n.message for n in app._notifications)

        await wait_until(pilot, said, what="the warning")
        assert isinstance(app.screen, RunScreen)


async def test_t_on_a_node_runs_it_alone_on_the_runs_inputs_and_records_nothing(
    make_app: MakeApp, pipelines: Path, db: Path
) -> None:
    _add_etl(pipelines)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        run_id = await start(pilot, "debug-etl", rows="7")
        await wait_for_text(pilot, "SUCCEEDED")
        run_screen = app.screen
        assert isinstance(run_screen, RunScreen)
        run_screen.open_node("load")
        await wait_until(pilot, lambda: isinstance(app.screen, NodeScreen), what="the node")
        await wait_for_text(pilot, "loading 77")  # "7" * 2: the param is text

        await pilot.press("t")

        await wait_until(pilot, lambda: isinstance(app.screen, NodeTestScreen), what="the test")
        await wait_for_text(pilot, "succeeded")
        text = screen_text(app)
        assert f"Testing load alone on its inputs from run {run_id[:8]}" in text
        assert "loading 77" in text  # its log
        assert '"loaded": "77"' in text.split("output:")[1]  # its output, below the log
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, NodeScreen))
    async with Store(db, readonly=True) as store:
        assert [row.run_id for row in await store.list_runs()] == [run_id]


async def test_t_on_a_node_whose_needs_failed_says_what_to_do_in_the_console(
    make_app: MakeApp, pipelines: Path
) -> None:
    """Not the CLI's `--inputs-from` / `--input`: a run where the need succeeded, and `t`."""
    _add_etl(pipelines)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot, "debug-etl", fail_at="extract")
        await wait_for_text(pilot, "FAILED")
        run_screen = app.screen
        assert isinstance(run_screen, RunScreen)
        run_screen.open_node("transform")
        await wait_until(pilot, lambda: isinstance(app.screen, NodeScreen), what="the node")
        await pilot.press("t")
        await wait_until(pilot, lambda: isinstance(app.screen, NodeTestScreen), what="the test")
        await wait_for_text(pilot, "needs the output of 'extract' (failed in run")
        text = " ".join(screen_text(app).split())
        assert "open a run of this pipeline where it succeeded and press t on" in text
        assert "--input" not in text


async def test_the_test_screens_log_is_the_nodes_log_as_its_detail_shows_it(
    make_app: MakeApp, pipelines: Path
) -> None:
    """The same lines as the node's detail and its full-screen log: no `process` record."""
    _add_etl(pipelines)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot, "debug-etl")
        await wait_for_text(pilot, "SUCCEEDED")
        run_screen = app.screen
        assert isinstance(run_screen, RunScreen)
        run_screen.open_node("load")
        await wait_until(pilot, lambda: isinstance(app.screen, NodeScreen), what="the node")
        await wait_for_text(pilot, "loading 6")
        await pilot.press("L")
        await pilot.pause(0.2)
        detail = [line.strip() for line in screen_text(app).splitlines()[2:-1] if line.strip()]
        await pilot.press("t")
        await wait_until(pilot, lambda: isinstance(app.screen, NodeTestScreen), what="the test")
        await wait_for_text(pilot, "output:")
        tested = screen_text(app).split("succeeded", 1)[1].split("output:", 1)[0]
        assert "process group" not in tested
        assert [line.strip() for line in tested.splitlines() if line.strip()] == detail
