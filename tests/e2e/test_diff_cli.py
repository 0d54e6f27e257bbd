"""`interlock diff RUN_A RUN_B [--json]` on real runs: what changed, and where they went apart."""

from __future__ import annotations

from typing import TYPE_CHECKING

from e2e.conftest import DATA, assert_clean_error

if TYPE_CHECKING:
    from e2e.conftest import Cli

ETL = DATA / "debug_etl.yaml"


def test_diff_of_a_good_and_a_failed_run_names_params_states_and_the_first_divergence(
    cli: Cli,
) -> None:
    good = cli.ok("run", ETL).stdout.splitlines()[0]
    bad_run = cli("run", ETL, "--param", "fail_at=load")
    assert bad_run.returncode == 1, bad_run.stderr
    bad = bad_run.stdout.splitlines()[0]

    diff = cli.json("diff", good, bad, "--json")
    text = cli.ok("diff", good[:8], bad[:8]).stdout

    assert diff["run_a"] == good and diff["run_b"] == bad
    assert diff["state"] == {"a": "succeeded", "b": "failed"}
    assert diff["params"]["changed"] == {"fail_at": {"a": "none", "b": "load"}}
    assert diff["definition"]["changed"] is False
    assert diff["first_divergence"]["node_id"] == "load"
    assert diff["nodes"]["load"]["state"] == {"a": "succeeded", "b": "failed"}
    assert diff["nodes"]["extract"]["differs"] in ([], ["duration"])
    assert "first divergence: load: succeeded -> failed, output differs" in text
    assert "~ fail_at: 'none' -> 'load'" in text


def test_diff_of_a_run_with_itself_says_the_runs_match(cli: Cli) -> None:
    run = cli.ok("run", ETL).stdout.splitlines()[0]

    diff = cli.json("diff", run, run, "--json")

    assert diff["identical"] is True
    assert diff["first_divergence"] is None


def test_diff_with_an_unknown_run_is_one_sentence_and_exit_2(cli: Cli) -> None:
    run = cli.ok("run", ETL).stdout.splitlines()[0]

    result = cli("diff", run, "feedbeef")

    assert_clean_error(result, expect="no run with id 'feedbeef'")
