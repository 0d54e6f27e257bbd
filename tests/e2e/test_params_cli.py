"""`--param` reads YAML 1.2 scalars: `who=no` is the word no, not False."""

from __future__ import annotations

from typing import TYPE_CHECKING

from e2e.conftest import PIPELINES

if TYPE_CHECKING:
    from e2e.conftest import Cli


def test_param_no_on_the_command_line_stays_the_word_no(cli: Cli) -> None:
    done = cli("run", PIPELINES / "hello.yaml", "--param", "who=no")
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.splitlines()[0].strip()
    created = cli.events(run_id, "--type", "run.created")[0]
    assert created["data"]["params"] == {"who": "no"}


def test_param_mode_0755_and_time_1_30_stay_text_and_42_is_a_number(cli: Cli) -> None:
    done = cli("run", PIPELINES / "hello.yaml", "--param", "who=0755", "--simulate")
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.splitlines()[0].strip()
    assert cli.events(run_id, "--type", "run.created")[0]["data"]["params"] == {"who": "0755"}
