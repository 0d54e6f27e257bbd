"""Bad input of every kind: exit 2, one paragraph on stderr naming the problem, no traceback,
and the runs already stored are untouched.

Each test runs one row of the matrix over all its cases and reports every case that fails, not
only the first (one subprocess per case; the cases of a row share one stored run).
"""

from __future__ import annotations

import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest

from e2e.conftest import PIPELINES, assert_clean_error, integrity_check

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from e2e.conftest import Cli

HELLO = PIPELINES / "hello.yaml"
UNKNOWN_RUN = "0123456789abcdef0123456789abcdef"
RUN_COMMANDS = ("status", "events", "summary", "cancel", "resume", "replay")

# (arguments, what the message must mention, another database or None for the test's own)
Case = tuple[list[str], str, "Path | None"]


def _check_all(cli: Cli, cases: Sequence[Case]) -> None:
    """Run every case (two at a time); fail listing each case that is not a clean exit 2."""

    def check(case: Case) -> str | None:
        args, expect, other_db = case
        try:
            assert_clean_error(cli(*args, db=other_db), expect=expect)
        except AssertionError as exc:
            return str(exc).split("\nassert ")[0]
        return None

    with ThreadPoolExecutor(max_workers=2) as pool:
        failures = [f for f in pool.map(check, cases) if f is not None]
    assert not failures, "\n\n".join(failures)


@pytest.fixture
def stored_run(cli: Cli, db: Path) -> Sequence[dict[str, object]]:
    """A run stored before the bad commands; the listing the test must find unchanged."""
    result = cli("run", HELLO)
    assert result.returncode == 0, result.stderr
    return cli.runs()


def _assert_intact(cli: Cli, db: Path, before: Sequence[dict[str, object]]) -> None:
    assert cli.runs() == list(before), "stored runs changed"
    [run] = before
    assert run["state"] == "succeeded"
    assert cli.status(str(run["run_id"]))["state"] == "succeeded"
    assert integrity_check(db) == "ok"


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def test_bad_pipeline_files_are_refused_by_run_and_validate_with_exit_2_and_no_traceback(
    cli: Cli, db: Path, tmp_path: Path, stored_run: Sequence[dict[str, object]]
) -> None:
    files = [
        (tmp_path / "no-such-pipeline.yaml", "not found"),
        (tmp_path, "directory"),
        (_write(tmp_path / "bad.yaml", b"id: x\nnodes: [\n  - {id: a\n"), "yaml"),
        (_write(tmp_path / "garbage.yaml", os.urandom(512) + b"\0"), "binary"),
        (_write(tmp_path / "garbage.json", b"\x89PNG\r\n\x1a\n\xff\xfe"), "garbage.json"),
        (_write(tmp_path / "list.yaml", b"- 1\n- 2\n"), "list.yaml"),
        (_write(tmp_path / "empty.yaml", b""), "empty.yaml"),
        (_write(tmp_path / "typo.yaml", b"id: t\nnodez: []\n"), "nodez"),
    ]
    cases: list[Case] = [
        ([command, str(path)], expect, None)
        for path, expect in files
        for command in ("run", "validate")
    ]
    _check_all(cli, cases)
    _assert_intact(cli, db, stored_run)


def test_an_unknown_run_id_is_refused_by_every_run_command_with_exit_2_naming_it(
    cli: Cli, db: Path, stored_run: Sequence[dict[str, object]]
) -> None:
    commands = [[command, UNKNOWN_RUN] for command in RUN_COMMANDS]
    commands += [[decide, UNKNOWN_RUN, "greet"] for decide in ("approve", "reject")]
    cases: list[Case] = [(command, UNKNOWN_RUN, None) for command in commands]
    _check_all(cli, cases)
    _assert_intact(cli, db, stored_run)


def test_approve_or_reject_of_an_unknown_node_or_a_node_not_waiting_is_refused(
    cli: Cli, db: Path, stored_run: Sequence[dict[str, object]]
) -> None:
    run_id = str(stored_run[0]["run_id"])
    cases: list[Case] = []
    for command in ("approve", "reject"):
        cases.append(([command, run_id, "no_such_node"], "no_such_node", None))
        cases.append(([command, run_id, "greet"], "greet", None))  # exists, is no waiting approval
    _check_all(cli, cases)
    _assert_intact(cli, db, stored_run)


def test_a_bad_param_is_refused_with_exit_2_and_creates_no_run(
    cli: Cli, db: Path, stored_run: Sequence[dict[str, object]]
) -> None:
    cases: list[Case] = [
        (["run", str(HELLO), "--param", "who"], "KEY=VALUE", None),
        (["run", str(HELLO), "--param", "=x"], "KEY=VALUE", None),
        (["run", str(HELLO), "--param", "whom=x"], "whom", None),
        (["run", str(HELLO), "--param", "who=a", "--param", "nope=1"], "nope", None),
    ]
    _check_all(cli, cases)
    _assert_intact(cli, db, stored_run)


def _damaged_copy(db: Path, target: Path) -> Path:
    """A copy of a real Interlock database with the middle of its pages overwritten."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    data = bytearray(db.read_bytes())
    for offset in range(4096 * 2, len(data), 4096):
        data[offset : offset + 256] = b"\xff" * 256
    return _write(target, bytes(data))


def test_a_corrupt_database_is_refused_by_every_command_with_exit_2_and_left_as_it_was(
    cli: Cli, db: Path, tmp_path: Path, stored_run: Sequence[dict[str, object]]
) -> None:
    run_id = str(stored_run[0]["run_id"])
    garbage = _write(tmp_path / "garbage.db", os.urandom(8192))
    damaged = _damaged_copy(db, tmp_path / "damaged.db")
    contents = {path: path.read_bytes() for path in (garbage, damaged)}
    commands = [
        ["runs", "--json"],
        ["status", run_id],
        ["events", run_id],
        ["summary", run_id],
        ["cancel", run_id],
        ["resume", run_id],
        ["replay", run_id],
        ["approve", run_id, "greet"],
        ["breakers", "--json"],
        ["run", str(HELLO)],
    ]
    cases: list[Case] = [
        (command, bad.name, bad) for bad in (garbage, damaged) for command in commands
    ]

    _check_all(cli, cases)

    for path, content in contents.items():
        assert path.read_bytes() == content, f"a command wrote to the corrupt {path.name}"
    _assert_intact(cli, db, stored_run)


def test_a_database_path_that_cannot_be_created_is_refused_with_exit_2(
    cli: Cli, tmp_path: Path
) -> None:
    regular_file = _write(tmp_path / "a-file", b"not a directory")
    under_a_file = regular_file / "sub" / "interlock.db"
    cases: list[Case] = [
        (command, "a-file", under_a_file)
        for command in (["run", str(HELLO)], ["runs", "--json"], ["breakers"])
    ]
    cases += [
        (command, "directory", tmp_path)
        for command in (["run", str(HELLO)], ["runs"], ["status", UNKNOWN_RUN])
    ]
    _check_all(cli, cases)
    assert regular_file.read_bytes() == b"not a directory"


def test_a_run_command_on_a_database_that_does_not_exist_says_so_and_creates_nothing(
    cli: Cli, tmp_path: Path
) -> None:
    missing = tmp_path / "never-created.db"
    _check_all(cli, [([command, UNKNOWN_RUN], str(missing), missing) for command in RUN_COMMANDS])
    assert not missing.exists(), "a command that only reads created the database"


def test_usage_errors_exit_2_with_the_usage_and_no_traceback(cli: Cli) -> None:
    for args in (["frobnicate"], ["run"], ["status"], ["runs", "--limit", "many"]):
        result = cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert "usage:" in result.stderr
