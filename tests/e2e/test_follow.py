"""Following a live run from another process: `interlock events RUN --follow`."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

from e2e.conftest import CLI_TIMEOUT, INTERLOCK, assert_gap_free, data_pipeline, stored_seqs

if TYPE_CHECKING:
    from pathlib import Path

    from e2e.conftest import Cli, StartRun

FLOOD_EVENTS = 10_000


def test_a_follower_sees_all_ten_thousand_events_of_a_live_run_in_order(
    cli: Cli, start_run: StartRun, db: Path
) -> None:
    run = start_run(data_pipeline("flood"))
    follower = cli.spawn("events", run.run_id, "--follow")

    assert follower.wait(90) == 0, follower.stderr()
    assert run.wait() == 0, run.stderr()
    seen = [json.loads(line) for line in follower.lines]
    stored = stored_seqs(db, run.run_id)

    assert len(seen) >= FLOOD_EVENTS
    assert [e["seq"] for e in seen] == stored, "the follower missed, repeated or reordered events"
    assert_gap_free(stored)
    assert {e["run_id"] for e in seen} == {run.run_id}
    assert seen[0]["event_type"] == "run.created"
    assert seen[-1]["event_type"] == "run.completed"
    logs = [e for e in seen if e["event_type"] == "node.log"]
    assert len(logs) >= FLOOD_EVENTS
    # Lines of one node and stream arrive in the order the node printed them.
    flood3 = [e["data"] for e in logs if e["node_id"] == "flood3"]
    for stream, prefix in (("stdout", "out"), ("stderr", "err")):
        lines = [d["line"] for d in flood3 if d["stream"] == stream]
        assert lines == [f"{prefix} {i}" for i in range(1000)]
    # The follower printed exactly what a later read prints.
    assert follower.lines == cli.event_lines(run.run_id)


PARSE_EVERY_LINE = """
import json, sys
count = 0
for line in sys.stdin:
    json.loads(line)
    count += 1
print(count)
"""


def test_events_follow_piped_into_a_json_parser_gives_valid_json_on_every_line(
    cli: Cli, start_run: StartRun, db: Path
) -> None:
    run = start_run(data_pipeline("slow"), "--param", "lines=30", "--param", "every=0.03")
    pipe = (
        f"'{INTERLOCK}' events {run.run_id} --follow --db '{db}' "
        f"| '{sys.executable}' -c '{PARSE_EVERY_LINE}'"
    )

    parsed = subprocess.run(
        ["bash", "-o", "pipefail", "-c", pipe],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        env=cli.env,
        check=False,
    )

    assert parsed.returncode == 0, parsed.stderr
    assert run.wait() == 0
    assert int(parsed.stdout) == len(stored_seqs(db, run.run_id))


def test_events_tail_and_type_filter_select_the_last_events_and_a_type_prefix(cli: Cli) -> None:
    ran = cli.ok("run", data_pipeline("slow"), "--param", "lines=5", "--param", "every=0")
    run = ran.stdout.splitlines()[0]
    every = cli.events(run)

    assert cli.events(run, "--tail", "3") == every[-3:]
    nodes = cli.events(run, "--type", "node.")
    assert nodes == [e for e in every if str(e["event_type"]).startswith("node.")]
    for event in every:
        assert set(event) >= {
            "event_id", "seq", "event_type", "run_id", "timestamp_utc", "actor", "attempt"
        }
        assert None not in event.values(), "null fields must be omitted"
        assert str(event["timestamp_utc"]).endswith("Z")
