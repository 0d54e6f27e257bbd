"""The timeline's pure layout: spans from events, one row per node, readable without colour."""

from __future__ import annotations

from typing import Any

from engine.events import Event
from tui.timeline import Timeline, render

T0 = 1_800_000_000.0  # an epoch second; event times are offsets from it


def _ts(offset: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(T0 + offset, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Log:
    """Events of one run, written as a story: `log.at(1.5, "node.started", "a")`."""

    def __init__(self, *nodes: str) -> None:
        self.events: list[Event] = []
        definition = {"id": "p", "nodes": [{"id": n, "type": "shell"} for n in nodes]}
        self.at(0, "run.created", data={"pipeline_id": "p", "definition": definition})
        self.at(0, "run.state_changed", data={"from": "pending", "to": "running"})

    def at(self, offset: float, etype: str, node: str | None = None, **fields: Any) -> Log:
        self.events.append(
            Event(f"e{len(self.events)}", len(self.events) + 1, etype, "r1", _ts(offset),
                  node_id=node, **fields)
        )
        return self


def bar_of(lines: list[str], node: str) -> str:
    """The cells between the bars of `node`'s row."""
    row = next(line for line in lines if line.split()[1] == node)
    return row[row.index("|") + 1 : row.rindex("|")]


def story() -> Log:
    log = Log("fetch", "approve", "deploy")
    log.at(0, "node.started", "fetch")
    log.at(2, "node.retried", "fetch", error_class="transient", data={"delay": 2})
    log.at(4, "node.started", "fetch", attempt=2)
    log.at(6, "node.succeeded", "fetch", attempt=2)
    log.at(6, "node.started", "approve")
    log.at(6, "approval.requested", "approve")
    log.at(12, "approval.granted", "approve")
    log.at(12, "node.succeeded", "approve")
    log.at(12, "node.started", "deploy")
    sigterm = "SIGTERM sent to process group 9; SIGKILL after 4s"
    log.at(16, "node.log", "deploy", data={"stream": "interlock", "line": sigterm})
    log.at(20, "node.cancelled", "deploy", error_class="cancelled")
    log.at(20, "run.completed", data={"state": "cancelled"})
    return log


def test_each_node_gets_one_row_on_the_shared_axis_with_attempts_waits_and_the_grace() -> None:
    lines, legend = render(Timeline.of(story().events), 80, now=T0 + 99)

    assert len(lines) == 1 + 3  # the axis, then one row per node in definition order
    assert [line.split()[1] for line in lines[1:]] == ["fetch", "approve", "deploy"]
    assert lines[0].split() == ["0s", "10.0s", "20.0s"]
    fetch, approve, deploy = (bar_of(lines, n) for n in ("fetch", "approve", "deploy"))
    assert len({len(fetch), len(approve), len(deploy)}) == 1 and len(fetch) >= 60
    width = len(fetch)
    # fetch: a failed attempt, the retry's wait, the attempt that succeeded, then nothing.
    assert len(fetch.rstrip()) in (width * 6 // 20, width * 6 // 20 + 1)
    assert "x" in fetch and "·" in fetch and "█" in fetch
    assert fetch.index("x") < fetch.index("·") < fetch.index("█")
    # approve waits six seconds for its decision, from the moment fetch ended.
    assert approve.strip().startswith("~") and approve.lstrip().index("~") == 0
    assert abs(approve.index("~") - width * 6 // 20) <= 1
    # deploy ran, then spent its last four seconds in the cancel's grace.
    assert deploy.strip("█ ").strip("░") == ""
    assert deploy.count("░") == width // 5 or abs(deploy.count("░") - width // 5) <= 1
    assert " ".join(legend).count("retry wait") == 1 and "cancel grace" in " ".join(legend)


def test_ascii_mode_draws_only_ascii_and_fits_80_columns() -> None:
    lines, legend = render(Timeline.of(story().events), 80, now=T0 + 99, ascii=True)

    text = "\n".join(lines + legend)
    assert all(ord(c) < 127 for c in text), [c for c in text if ord(c) >= 127]
    assert max(len(line) for line in lines + legend) <= 80
    assert "#" in bar_of(lines, "deploy") and "%" in bar_of(lines, "deploy")


def test_a_running_run_is_drawn_up_to_now_and_grows_as_events_arrive() -> None:
    log = Log("a", "b")
    log.at(0, "node.started", "a")
    timeline = Timeline.of(log.events)

    early, _ = render(timeline, 60, now=T0 + 10)
    assert bar_of(early, "a").strip(" ") == bar_of(early, "a")  # running: up to now, all of it
    assert bar_of(early, "b").strip() == ""

    timeline.add([*log.events, *log.at(10, "node.succeeded", "a").at(10, "node.started", "b")
                  .events[-2:]])
    later, _ = render(timeline, 60, now=T0 + 20)
    a, b = bar_of(later, "a"), bar_of(later, "b")
    assert a.rstrip() == a[: len(a) // 2].rstrip()  # a took the first half
    assert b.lstrip().startswith("█") and len(b) - len(b.lstrip()) in range(len(b) // 2 - 1,
                                                                           len(b) // 2 + 2)


def test_a_reused_node_is_one_mark_and_a_short_failed_attempt_still_shows() -> None:
    log = Log("cached", "flaky")
    log.at(0, "node.succeeded", "cached", attempt=0, data={"output": {}, "reused_from": "r0"})
    log.at(0, "node.started", "flaky")
    log.at(0.001, "node.failed", "flaky", error_class="error")
    log.at(30, "run.completed", data={"state": "failed"})

    lines, _ = render(Timeline.of(log.events), 80, now=T0 + 99)

    assert bar_of(lines, "cached").strip() == "◆"
    assert bar_of(lines, "flaky").strip() == "x"
    assert lines[1].startswith("✔ cached") and lines[2].startswith("✖ flaky")


def test_long_node_ids_are_cut_so_the_bars_keep_their_width() -> None:
    log = Log("a" * 60, "b")
    log.at(0, "node.started", "b")
    lines, _ = render(Timeline.of(log.events), 80, now=T0 + 5)
    assert max(len(line) for line in lines) <= 80
    assert "~ |" in lines[1]


def test_a_run_bigger_than_the_row_limit_says_how_many_nodes_are_not_drawn() -> None:
    log = Log(*(f"n{i}" for i in range(30)))
    lines, _ = render(Timeline.of(log.events), 80, now=T0 + 5, rows=10)
    assert len(lines) == 1 + 10 + 1
    assert lines[-1].strip() == "... and 20 more nodes (the timeline draws the first 10)"
