"""View models, playback, filters and event lines: folded state in, plain rows out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from engine.events import Event, EventType
from engine.graph import Graph
from engine.loader import load_dict
from engine.state import NodeState, fold
from tui import runs as run_views
from tui import view
from tui.dag_grid import cached_layout, run_graph, spans
from tui.messages import RunSummary
from tui.playback import Tape, faster, slower
from tui.widgets.event_log import describe, event_matches, line_matches, log_entry

T0 = datetime(2025, 5, 1, 9, 0, tzinfo=UTC).timestamp()

PIPELINE: dict[str, Any] = {
    "id": "demo",
    "timeout": "10m",
    "nodes": [
        {"id": "fetch", "type": "shell", "command": "true", "retry": {"max_attempts": 3}},
        {"id": "gate", "type": "approval", "needs": ["fetch"]},
        {"id": "load", "type": "shell", "command": "true", "needs": ["gate"], "timeout": "60s",
         "breaker": {"key": "warehouse", "recovery_timeout": "30s"}},
    ],
}


def at(seconds: float) -> str:
    return datetime.fromtimestamp(T0 + seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def events(*specs: tuple[str, float, dict[str, Any]]) -> list[Event]:
    pipeline = load_dict(PIPELINE)
    created = Event("e1", 1, EventType.RUN_CREATED, "r1", at(0), data={
        "pipeline_id": "demo", "definition": pipeline.snapshot(), "params": {"x": 1}})
    out = [created]
    for seq, (etype, when, fields) in enumerate(specs, start=2):
        out.append(Event(f"e{seq}", seq, etype, "r1", at(when), **fields))
    return out


RUNNING = events(
    (EventType.RUN_STATE_CHANGED, 0.1, {"data": {"from": "pending", "to": "running",
                                                 "deadline_at": at(600.1)}}),
    (EventType.NODE_STARTED, 1, {"node_id": "fetch", "data": {"timeout": 300}}),
    (EventType.NODE_RETRIED, 2, {"node_id": "fetch", "error_class": "transient",
                                 "reason": "busy", "data": {"delay": 1.0}}),
    (EventType.NODE_STARTED, 3, {"node_id": "fetch", "attempt": 2, "data": {"timeout": 300}}),
    (EventType.NODE_SUCCEEDED, 4, {"node_id": "fetch", "attempt": 2,
                                   "data": {"output": {"rows": 3}}}),
    (EventType.NODE_STARTED, 5, {"node_id": "gate", "data": {"timeout": 300}}),
    (EventType.APPROVAL_GRANTED, 6, {"node_id": "gate", "actor": "operator:alice"}),
    (EventType.NODE_SUCCEEDED, 6, {"node_id": "gate"}),
    (EventType.NODE_STARTED, 10, {"node_id": "load", "data": {"timeout": 60}}),
    (EventType.BREAKER_STATE_CHANGED, 10, {"node_id": "load", "data": {
        "key": "warehouse", "from": "closed", "to": "open", "failures": 5,
        "recovery_timeout": 30}}),
)


def test_node_rows_show_attempts_of_max_durations_and_the_timeout_countdown() -> None:
    state = fold(RUNNING)
    infos = view.node_infos(load_dict(PIPELINE))
    rows = {row.node_id: row for row in view.node_rows(state, infos, {}, T0 + 25)}
    assert rows["fetch"].attempt == "2/3"
    assert rows["fetch"].duration == "2.0s"  # two attempts of one second; the backoff not counted
    assert rows["load"].state == "running"
    assert rows["load"].left == pytest.approx(45.0)
    assert rows["load"].total == 60
    assert rows["fetch"].left is None
    assert rows["gate"].breaker == ""  # approvals have no breaker


def test_a_view_clock_behind_a_start_never_shows_more_time_left_than_the_timeout() -> None:
    state = fold(RUNNING)
    infos = view.node_infos(load_dict(PIPELINE))
    row = view.node_row(state.nodes["load"], infos["load"], {}, T0 + 9.5)  # it started at 10
    assert row.left == 60
    assert row.duration == "0ms"


def test_a_breaker_shows_its_cool_down_and_turns_half_open_when_it_runs_out() -> None:
    state = fold(RUNNING)
    infos = view.node_infos(load_dict(PIPELINE))
    recorded = view.breakers_from_run(state)
    row = view.node_row(state.nodes["load"], infos["load"], recorded, T0 + 20)
    assert row.breaker == "open 20s"
    later = view.node_row(state.nodes["load"], infos["load"], recorded, T0 + 41)
    assert later.breaker == "half-open"


def test_the_live_breaker_wins_over_what_the_run_recorded() -> None:
    state = fold(RUNNING)
    infos = view.node_infos(load_dict(PIPELINE))
    live = {"warehouse": view.BreakerView("warehouse", "closed", 0, None, 30.0)}
    rows = {row.node_id: row for row in view.node_rows(state, infos, live, T0 + 20)}
    assert rows["load"].breaker == "closed"


def test_the_run_deadline_counts_down_until_the_run_ends() -> None:
    state = fold(RUNNING)
    assert view.run_deadline_left(state, T0 + 100.1) == pytest.approx(500.0)
    assert view.run_elapsed(state, T0 + 100.1) == pytest.approx(100.0)


def test_node_inputs_are_the_params_and_the_outputs_of_its_needs() -> None:
    state = fold(RUNNING)
    assert view.node_inputs(state, "gate") == {"params": {"x": 1}, "inputs": {"fetch": {"rows": 3}}}


def test_infos_come_from_the_runs_own_definition_snapshot() -> None:
    infos = view.infos_of_state(fold(RUNNING))
    assert infos["load"].breaker_key == "warehouse"
    assert infos["fetch"].breaker_key == "demo/fetch"
    assert view.edges_of_state(fold(RUNNING)) == [("fetch", "gate"), ("gate", "load")]


def test_playback_folds_the_first_k_events_forward_and_back() -> None:
    tape = Tape("r1", RUNNING)
    tape.seek(0)
    assert tape.k == 1  # never before run.created
    tape.seek(5)
    assert tape.state().nodes["fetch"].attempts == 2
    tape.step(-2)
    assert tape.state() == fold(RUNNING[:3])
    tape.seek_time(6.0)
    assert tape.k == 9
    assert tape.now == pytest.approx(T0 + 6)
    tape.seek(10**6)
    assert tape.state() == fold(RUNNING)


def test_playback_speeds_step_through_the_list_and_stop_at_its_ends() -> None:
    assert faster(1.0) == 2.0
    assert slower(1.0) == 0.5
    assert faster(50.0) == 50.0
    assert slower(0.25) == 0.25


def summary(run_id: str, pipeline: str, state: str, created: str, **kw: Any) -> RunSummary:
    return RunSummary(run_id, pipeline, state, created, created, kw.get("ended"), False, "-")


def test_sorting_the_runs_is_by_column() -> None:
    runs = [
        summary("aaa1", "hello", "succeeded", at(0), ended=at(1)),
        summary("bbb2", "approval", "waiting", at(5)),
        summary("ccc3", "hello", "failed", at(9), ended=at(12)),
    ]
    assert [r.run_id for r in run_views.sort_runs(runs, "created", T0)] == ["ccc3", "bbb2", "aaa1"]
    assert run_views.sort_runs(runs, "pipeline", T0)[0].run_id == "bbb2"
    longest = run_views.sort_runs(runs, "duration", T0 + 100)
    assert longest[0].run_id == "bbb2"  # still waiting: 95 s and counting


def test_an_event_line_says_what_happened() -> None:
    line = describe(RUNNING[3])
    assert "node.retried" in line and "fetch" in line and "[transient]" in line
    assert "next in 1.0s" in line
    assert "by operator:alice" in describe(RUNNING[7])
    assert event_matches(RUNNING[3], "RETRIED fetch")
    assert not event_matches(RUNNING[3], "load")


def test_a_log_entry_is_the_line_as_a_terminal_shows_it() -> None:
    failed = Event("e9", 9, EventType.NODE_FAILED, "r1", at(9), node_id="load",
                   error_class="error", reason="exit 1:\tno rows\x07\nsee the log")
    seq, text, style = log_entry(failed)
    assert (seq, style) == (9, "red")
    # Tab stops of 8; the bell shown escaped (a node's controls never act), lines kept.
    assert text.endswith("[error] exit 1:      no rows\\x07\nsee the log")
    assert log_entry(RUNNING[3]) == (4, describe(RUNNING[3]), "yellow")
    assert line_matches(text, "NO rows load") and not line_matches(text, "fetch")


def test_the_dag_grid_knows_which_cells_belong_to_which_node() -> None:
    layout = cached_layout(Graph(["a", "b"], {"b": ["a"]}), "boxes", False)
    # An equal graph (a run opened again) is not laid out again; another one is.
    assert cached_layout(Graph(["a", "b"], {"b": ["a"]}), "boxes", False) is layout
    assert cached_layout(Graph(["a", "b"], {}), "boxes", False) is not layout
    grid = spans(layout)
    box = layout.boxes["b"]
    assert (box.x, box.x + box.width, "b", box.glyph_x) in grid[box.glyph_y]


def test_a_runs_dag_is_its_definitions_graph_edges_folded_into_needs() -> None:
    definition = {
        "nodes": [{"id": "a"}, {"id": "b", "needs": ["a"]}, {"id": "c", "needs": ["a"]}],
        "edges": [{"from": "b", "to": "c"}, {"from": "a", "to": "c"}],
    }
    state = fold([Event("e1", 1, EventType.RUN_CREATED, "r1", at(1),
                        data={"pipeline_id": "p", "definition": definition})])
    graph = run_graph(state)
    assert graph.nodes == ["a", "b", "c"]
    assert (graph.parents["b"], graph.parents["c"]) == (("a",), ("a", "b"))
    # A node the events name but the definition does not is drawn too, without edges.
    state.nodes["stray"] = NodeState("stray")
    assert run_graph(state).nodes == ["a", "b", "c", "stray"]
    assert run_graph(state).parents["c"] == ("a", "b")


def test_the_console_shows_the_stored_breaker_count_that_interlock_breakers_shows() -> None:
    from engine.breaker import BreakerState
    from engine.store import BreakerRecord

    stored = {"k": BreakerRecord("k", "open", 2, 100.0, 60.0, 100.0)}
    # This process saw one of the two failures (the other was another process's).
    local = [BreakerRecord("k", BreakerState.CLOSED, 1, None, 60.0)]
    mine = [BreakerRecord("mine", BreakerState.CLOSED, 1, None, 30.0)]
    views = run_views.merge_breakers(stored, local + mine)
    assert (views["k"].state, views["k"].failures) == ("open", 2)
    assert (views["mine"].state, views["mine"].failures) == ("closed", 1)


def test_a_node_in_its_grace_shows_cancelling_and_the_countdown_to_its_sigkill() -> None:
    line = "SIGTERM sent to process group 4242; SIGKILL after 8s"
    sigterm = Event("e99", 99, EventType.NODE_LOG, "r1", at(12), node_id="load",
                    data={"stream": "interlock", "line": line})
    stream = [*RUNNING, sigterm]
    graces: dict[str, view.Grace] = {}
    view.note_graces(stream, graces)
    assert graces["load"].kill_at == pytest.approx(T0 + 20)
    state = fold(stream)
    infos = view.node_infos(load_dict(PIPELINE))
    rows = {r.node_id: r for r in view.node_rows(state, infos, {}, T0 + 15, graces=graces)}
    assert rows["load"].state == "cancelling"
    assert rows["load"].left == pytest.approx(5.0)
    assert rows["load"].total == 8.0
    assert view.in_grace(state, graces) == [graces["load"]]


def test_an_interrupted_run_marks_running_nodes_orphaned_and_stops_at_the_last_event() -> None:
    mark = Event("e99", 99, EventType.RUN_STATE_CHANGED, "r1", at(3600), reason="gone",
                 data={"from": "running", "to": "interrupted"})
    stream = [*RUNNING, mark]
    lost = view.lost_at(stream)
    assert lost is not None
    assert lost == pytest.approx(T0 + 10)  # the last event before the mark, not the mark
    assert view.lost_at(stream, heard=T0 + 12) == pytest.approx(T0 + 12)  # a later heartbeat
    assert view.lost_at([mark], before=T0 + 7) == pytest.approx(T0 + 7)  # the batch before
    assert view.lost_at(RUNNING) is None
    state = fold(stream)
    infos = view.node_infos(load_dict(PIPELINE))
    rows = {r.node_id: r for r in view.node_rows(state, infos, {}, lost)}
    assert rows["load"].state == "orphaned"
    assert rows["load"].left is None
    assert rows["load"].duration == "0ms"


def test_a_resumed_attempt_beyond_the_policy_shows_as_the_last_allowed() -> None:
    state = fold(RUNNING)
    infos = view.node_infos(load_dict(PIPELINE))
    state.nodes["load"].attempts = 2  # a resume started attempt 2 of a 1-attempt policy
    row = view.node_row(state.nodes["load"], infos["load"], {}, T0 + 12)
    assert row.attempt == "2/2"


def test_a_closed_breaker_with_failures_says_so_in_plain_ascii() -> None:
    breaker = view.BreakerView("warehouse", "closed", 2, None, 30.0)
    assert view.breaker_text(breaker, T0) == "closed (2 failed)"
