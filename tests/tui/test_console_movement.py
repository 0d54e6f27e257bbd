"""What operators ask of run monitors: vim movement, quick state filters with the sort order
shown, a log search that highlights, a follow toggle, a node's log full screen."""

from __future__ import annotations

from console_helpers import (
    SIZE,
    MakeApp,
    screen_text,
    start,
    wait_for_text,
    wait_until,
)
from rich.style import Style

from tui import runs as run_views
from tui.screens.home import HomeScreen
from tui.screens.node import NodeScreen
from tui.screens.run import RunScreen
from tui.widgets.event_log import match_spans


async def test_j_k_g_g_move_through_the_pipelines_list(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_text(pilot, "valid")
        home = app.screen
        assert isinstance(home, HomeScreen)
        home.pipelines.focus()
        await pilot.press("j", "j")
        assert home.pipelines.cursor_row == 2
        await pilot.press("k")
        assert home.pipelines.cursor_row == 1
        await pilot.press("G")
        assert home.pipelines.cursor_row == home.pipelines.row_count - 1
        await pilot.press("g")
        assert home.pipelines.cursor_row == 0


async def test_number_keys_filter_the_runs_by_state_and_the_title_says_the_order(
    make_app: MakeApp,
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot, "hello")
        await wait_for_text(pilot, "SUCCEEDED")
        await pilot.press("H")
        await start(pilot, "gated")
        await wait_for_text(pilot, "FAILED")
        await pilot.press("H")
        await wait_until(pilot, lambda: isinstance(app.screen, HomeScreen))
        await wait_for_text(pilot, "(2 of 2, sorted by created, newest first)")
        home = app.screen
        assert isinstance(home, HomeScreen)
        home.runs_table.focus()
        await pilot.press("2")
        await wait_for_text(pilot, "(1 of 1, sorted by created, newest first, filter: state:")
        assert "✖ failed" in screen_text(app) and "✔ succeeded" not in screen_text(app)
        await pilot.press("3")
        await wait_for_text(pilot, "filter: state:succeeded)")
        await pilot.press("0")
        await wait_for_text(pilot, "(2 of 2")
        await pilot.press("s")
        await wait_for_text(pilot, "sorted by pipeline, A to Z")


def test_the_quick_filters_are_store_filters_of_the_states_they_name() -> None:
    from engine.run_filter import RunFilter, parse_filter

    quick = {key: parse_filter(text) for key, text in run_views.QUICK_FILTERS.items()}
    assert quick["1"] == RunFilter(("pending", "running", "waiting"))
    assert quick["2"] == RunFilter(("failed", "timeout"))
    assert quick["3"] == RunFilter(("succeeded",))
    assert quick["4"] == RunFilter(("cancelled",))
    assert quick["5"] == RunFilter(("interrupted",))
    assert parse_filter("state:failed pipeline:release hell") == RunFilter(
        ("failed",), "release", ("hell",)
    )


def test_a_log_search_marks_every_occurrence_of_its_words() -> None:
    assert match_spans("node.log shout | SHOUT again", "shout") == [(9, 14), (17, 22)]
    assert match_spans("abcabc", "bc ab") == [(0, 6)]
    assert match_spans("anything", "") == []


async def test_slash_highlights_matches_and_f_toggles_follow(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot, "hello")
        await wait_for_text(pilot, "run.completed")
        screen = app.screen
        assert isinstance(screen, RunScreen)
        await wait_for_text(pilot, "following (F: stop)")
        await pilot.press("slash", *"shout")
        await wait_for_text(pilot, "matching 'shout'")
        segments = screen.log_view._segments("node.started shout attempt 1", Style())
        assert [s.text for s in segments if s.style and s.style.reverse] == ["shout"]
        await pilot.press("escape")
        await pilot.press("F")
        await wait_for_text(pilot, "paused (F: follow)")
        assert not screen.log_view.follow
        await pilot.press("F")
        await wait_for_text(pilot, "following (F: stop)")


async def test_capital_l_shows_the_nodes_log_full_screen(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot, "hello")
        await wait_for_text(pilot, "SUCCEEDED")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, NodeScreen))
        node = app.screen
        assert isinstance(node, NodeScreen)
        await wait_for_text(pilot, "Attempts")
        await pilot.press("L")
        await pilot.pause(0.2)
        assert "Attempts" not in screen_text(app)
        assert node.logs.region.height >= SIZE[1] - 8
        await pilot.press("escape")
        await wait_for_text(pilot, "Attempts")
        assert isinstance(app.screen, NodeScreen)
