"""What keeps the console quick under a busy run: the event log draws only what is on screen,
the bridge keeps only the latest events in memory, a screen out of sight holds its updates, and
the DAG draws only the cells in view of a layer thousands of cells wide."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from console_helpers import SIZE, screen_text, start, wait_for_text, wait_until
from textual.app import App

from engine.api import PipelineBuilder
from engine.events import Event, EventType
from tui import format as fmt
from tui.bridge import core as bridge_core
from tui.screens.node import NodeScreen
from tui.screens.run import RunScreen
from tui.widgets.dag_view import DagView
from tui.widgets.event_log import SHOWN, EventLog

if TYPE_CHECKING:
    import pytest
    from console_helpers import MakeApp
    from textual.app import ComposeResult


def logged(seq: int, line: str, event_type: str = EventType.NODE_LOG) -> Event:
    return Event(f"e{seq}", seq, event_type, "r1", "2025-05-01T09:00:00Z", node_id="work",
                 data={"stream": "stdout", "line": line}, reason=line if "\n" in line else None)


class LogApp(App[None]):
    def compose(self) -> ComposeResult:
        yield EventLog()


async def test_the_log_draws_the_latest_lines_and_filters_every_event_it_was_given() -> None:
    app = LogApp()
    async with app.run_test(size=SIZE) as pilot:
        log = app.query_one(EventLog)
        log.reset([logged(1, "the very first")])
        log.add(logged(seq, f"item {seq}") for seq in range(2, 3 * SHOWN))
        log.add([logged(2, "seen already"), logged(3 * SHOWN, "two\nlines", EventType.NODE_FAILED)])
        await pilot.pause()
        assert len(log.lines) == SHOWN
        assert log.lines[-2].endswith("work two") and log.lines[-1] == "lines"  # 2-line reason
        assert log.max_scroll_y == SHOWN - log.scrollable_content_region.height
        assert log.scroll_y == log.max_scroll_y  # it follows the newest line
        log.query_text = "VERY first"
        await pilot.pause()
        assert [line.split("| ")[-1] for line in log.lines] == ["the very first"]
        log.query_text = ""
        await pilot.pause()
        assert len(log.lines) == SHOWN


async def test_a_run_opened_again_gets_the_events_the_bridge_no_longer_keeps(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bridge_core, "KEPT", 3)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        run_id = await start(pilot, "hello", who="memory")
        await wait_for_text(pilot, "SUCCEEDED")
        state, events = await app.bridge.watch(run_id)
        app.bridge.unwatch(run_id)
        assert state.last_seq > 3
        assert [event.seq for event in events] == list(range(1, state.last_seq + 1))


async def test_a_run_view_out_of_sight_holds_its_updates_and_catches_up(
    make_app: MakeApp,
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        run_id = await start(pilot, "approval")
        run_view = app.screen
        assert isinstance(run_view, RunScreen)
        await wait_for_text(pilot, "approval.requested")
        run_view.open_node("publish_gate")
        await wait_until(pilot, lambda: isinstance(app.screen, NodeScreen))
        assert not run_view.in_sight
        assert app._background_screens == []  # nothing shows through: nothing to repaint
        await app.bridge.approve(run_id, "publish_gate")
        # The runs list comes from the store's poll, which may not have seen the run yet.
        await wait_until(
            pilot,
            lambda: any(r.run_id == run_id and r.state == "succeeded" for r in app.bridge.runs),
        )
        assert "pending" in run_view.table.get_row("publish")[1].plain  # held back
        await pilot.press("escape")
        await wait_for_text(pilot, "SUCCEEDED")
        assert run_view.in_sight
        assert "succeeded" in run_view.table.get_row("publish")[1].plain
        assert "run.completed" in screen_text(app)


async def chatter(payload: Any, ctx: Any) -> None:
    return None


async def test_the_dag_draws_only_the_cells_in_view_of_a_wide_layer(make_app: MakeApp) -> None:
    flow = PipelineBuilder("wide", max_concurrency=80)
    flow.node("start", "trigger")
    for i in range(80):
        flow.python(f"worker_{i:02d}", chatter, needs=["start"])
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.bridge.ready)
        run_id = await app.bridge.launch(flow.build(), {})
        await app.push_screen(RunScreen(app.ctx, run_id))
        await wait_for_text(pilot, "SUCCEEDED")
        dag = app.screen.query_one("#dag", DagView)
        layout = dag.current_layout
        assert layout is not None and layout.width > 4 * dag.size.width
        # The layout is in; the widget takes its width, and its scrollbar, on its next layout
        # pass: till then it does not scroll at all, and every scroll below would stay at 0.
        await wait_until(pilot, lambda: dag.allow_horizontal_scroll and dag.max_scroll_x > 0)
        seen: set[int] = set()
        for x in (0, 1, 17, layout.width // 2, dag.max_scroll_x):
            dag.scroll_to(x=x, animate=False, immediate=True)
            # What is drawn must match where the view is; the widget may still settle its own
            # scroll (keeping the selection in view), which is not what this test is about.
            x = dag.scroll_offset.x
            seen.add(x)
            for y in range(min(dag.size.height, layout.height)):
                cells = list(layout.rows[y])
                for box in layout.boxes.values():
                    if box.glyph_y == y:
                        cells[box.glyph_x] = fmt.node_glyph("succeeded")
                shown = "".join(cells)[x : x + dag.size.width].ljust(dag.size.width)
                assert dag.render_line(y).text == shown, (x, y)
        assert len(seen) >= 3  # the view really moved along the layer
