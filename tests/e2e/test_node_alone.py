"""`interlock test FILE NODE`: one node alone, inputs from a stored run or given, its log on
stderr and its output on stdout, exit 0/1 like the node, nothing stored unless --record."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from e2e.conftest import DATA, PIPELINES, ROOT, assert_clean_error

if TYPE_CHECKING:
    from pathlib import Path

    from e2e.conftest import Cli

ETL = DATA / "debug_etl.yaml"


def _run(cli: Cli, *args: str) -> str:
    return cli.ok("run", ETL, *args).stdout.splitlines()[0]


def test_a_node_runs_alone_on_the_outputs_its_needs_made_in_a_stored_run(cli: Cli) -> None:
    source = _run(cli, "--param", "rows=5")

    result = cli("test", ETL, "load", "--inputs-from", source)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"loaded": 10}
    assert "loading 10" in result.stderr  # the node's own log, streamed
    assert "extract" not in result.stderr and "transform started" not in result.stderr
    assert [r["run_id"] for r in cli.runs()] == [source]  # nothing recorded


def test_inputs_given_as_json_run_a_python_node_alone(cli: Cli) -> None:
    result = cli("test", ETL, "transform", "--input", '{"extract": {"rows": 21}}')

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"doubled": 42}
    assert cli.runs() == []


def test_a_failing_node_exits_1_with_its_log_and_the_reason(cli: Cli) -> None:
    source = _run(cli)

    result = cli("test", ETL, "load", "--inputs-from", source, "--param", "fail_at=load")

    assert result.returncode == 1
    assert "load refused" in result.stderr
    assert "load failed: exit 1: load refused" in result.stderr
    assert result.stdout == ""


def test_missing_inputs_are_one_sentence_naming_the_node_and_its_need(cli: Cli) -> None:
    result = cli("test", ETL, "load")

    assert_clean_error(result, expect="node 'load' needs the output of 'transform'")


def test_inputs_from_a_run_where_the_need_failed_say_so(cli: Cli) -> None:
    failed = cli("run", ETL, "--param", "fail_at=extract")
    assert failed.returncode == 1
    source = failed.stdout.splitlines()[0]

    result = cli("test", ETL, "transform", "--inputs-from", source)

    assert_clean_error(result, expect=f"'extract' (failed in run {source})")


def test_an_unknown_node_or_bad_json_input_is_exit_2(cli: Cli) -> None:
    assert_clean_error(cli("test", ETL, "nope"), expect="has no node 'nope'")
    assert_clean_error(cli("test", ETL, "transform", "--input", "{oops"), expect="not valid JSON")
    assert_clean_error(
        cli("test", ETL, "extract", "--input", '{"load": {}}'), expect="does not need 'load'"
    )


def test_record_stores_a_normal_run_of_the_one_node_linked_to_its_source(cli: Cli) -> None:
    source = _run(cli, "--param", "rows=2")

    result = cli("test", ETL, "load", "--inputs-from", source, "--record")

    assert result.returncode == 0, result.stderr
    run_id, output = result.stdout.splitlines()
    assert json.loads(output) == {"loaded": 4}
    status = cli.status(run_id)
    assert status["state"] == "succeeded"
    assert {n: s["state"] for n, s in status["nodes"].items()} == {
        "extract": "skipped", "transform": "succeeded", "load": "succeeded",
    }
    assert status["nodes"]["transform"]["attempts"] == 0  # its output came from the source
    [created] = cli.events(run_id, "--type", "run.created")
    assert created["data"]["test_of"] == {"run": source, "node": "load"}
    assert created["data"]["params"] == {"rows": 2, "fail_at": "none"}
    started = cli.events(run_id, "--type", "node.started")
    assert [e["node_id"] for e in started] == ["load"]


def test_a_node_on_the_branch_not_taken_still_runs_when_tested(cli: Cli) -> None:
    not_taken = '{"enough_rows": {"result": false}}'  # a run would skip load
    result = cli("test", PIPELINES / "branching.yaml", "load", "--input", not_taken)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"loaded": True, "min_rows": 10}


def test_a_tested_node_notifies_nobody_even_when_recorded(cli: Cli, tmp_path: Path) -> None:
    paged = tmp_path / "paged"
    pipeline = tmp_path / "notifying.yaml"
    pipeline.write_text(
        "id: notifying\n"
        f"notify: [{{on: [succeeded, failed], command: [touch, '{paged}']}}]\n"
        "nodes: [{id: only, type: shell, command: 'echo hi'}]\n"
    )

    assert cli("test", pipeline, "only").returncode == 0
    assert cli("test", pipeline, "only", "--record").returncode == 0
    assert not paged.exists()
    assert cli("run", pipeline).returncode == 0
    assert paged.exists()  # the same file notifies from a real run


def test_an_approval_can_only_be_tested_recorded_where_it_can_be_decided(cli: Cli) -> None:
    approval = PIPELINES / "approval.yaml"
    result = cli("test", approval, "publish_gate", "--input", '{"build": {}}')

    assert_clean_error(result, expect="node 'publish_gate' is an approval")


def _shown(lines: list[str]) -> list[str]:
    """Lines as the README shows them: its `<- ...` notes dropped, clock times as HH:MM:SS."""
    out = []
    for line in lines:
        line = re.sub(r"\s+<- .*$", "", line)
        out.append(re.sub(r"^\d\d:\d\d:\d\d ", "HH:MM:SS ", line))
    return out


def test_the_readme_sample_is_what_interlock_test_prints(cli: Cli) -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("$ interlock test debug_etl.yaml load --inputs-from 4b452e36\n", 1)[1]
    first, rest = block.split("$ interlock test debug_etl.yaml transform --input ", 1)
    second = rest.split("\n", 1)[1].split("$ ", 1)[0]
    source = _run(cli)

    loaded = cli("test", ETL, "load", "--inputs-from", source)
    doubled = cli("test", ETL, "transform", "--input", '{"extract": {"rows": 21}}')

    for result, sample in ((loaded, first), (doubled, second)):
        assert result.returncode == 0, result.stderr
        printed = result.stderr.splitlines() + result.stdout.splitlines()  # as a terminal shows
        assert _shown(printed) == _shown(sample.strip().splitlines())
