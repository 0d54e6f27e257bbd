"""Hostile input through the real `interlock` command: nothing odd gets through.

Strict JSON (no NaN or Infinity anywhere), a stranger's database left byte for byte alone,
read-only places, a full disk, terminal controls from nodes, python nodes printing secrets, and
every bad number: one sentence on stderr and exit 2, never a traceback.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from faults.helpers import INTERLOCK, report

if TYPE_CHECKING:
    from collections.abc import Iterator

DATA = Path(__file__).parent / "data" / "hostile"
TOKEN = "hostile-s3cret-token"


def cli(
    db: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [INTERLOCK, *args, "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, **(env or {})},
    )


def strict_loads(text: str) -> Any:
    """JSON as `jq` or `JSON.parse` read it: NaN and Infinity are errors."""

    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in JSON output")

    return json.loads(text, parse_constant=refuse)


def one_sentence(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert "report it" not in result.stderr
    return result.stderr


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- strict JSON -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "1.0e+999"])
def test_a_non_finite_param_is_refused_before_any_run_exists(tmp_path: Path, value: str) -> None:
    db = tmp_path / "db"
    result = cli(db, "run", str(DATA / "non_finite_outputs.yaml"), "--param", f"n={value}")
    assert "param 'n' is not a finite number" in one_sentence(result)
    assert result.stdout == ""
    assert cli(db, "runs", "--json").stdout.strip() == "[]"


def test_a_five_thousand_digit_param_is_one_sentence(tmp_path: Path) -> None:
    result = cli(tmp_path / "db", "run", str(DATA / "non_finite_outputs.yaml"),
                 "--param", "n=" + "9" * 5000)
    assert "5000 digits is too long" in one_sentence(result)


@pytest.mark.parametrize("value", ["0x" + "f" * 4000, "0o" + "7" * 5000])
def test_a_hex_or_octal_param_too_large_to_write_is_one_sentence(
    tmp_path: Path, value: str
) -> None:
    result = cli(tmp_path / "db", "run", str(DATA / "non_finite_outputs.yaml"),
                 "--param", f"n={value}")
    assert "param 'n' is an integer too large (more than 4,300 digits)" in one_sentence(result)
    assert result.stdout == ""


def test_outputs_with_an_integer_too_large_to_write_fail_their_node_saying_so(
    tmp_path: Path,
) -> None:
    db = tmp_path / "db"
    result = cli(db, "run", str(DATA / "huge_ints.yaml"), "--json")
    assert result.returncode == 1, result.stderr
    nodes = strict_loads(result.stdout.splitlines()[1])["nodes"]
    reasons = {node_id: node["reason"] for node_id, node in nodes.items()}
    assert reasons == {
        "shell_huge": "output has an integer too large (more than 4,300 digits)",
        "python_huge": "output x is an integer too large (more than 4,300 digits)",
        "python_nested": "output y[1].z is an integer too large (more than 4,300 digits)",
    }
    assert "internal error" not in result.stderr


def test_outputs_with_nan_or_infinity_fail_their_node_and_every_json_output_stays_strict(
    tmp_path: Path,
) -> None:
    db = tmp_path / "db"
    result = cli(db, "run", str(DATA / "non_finite_outputs.yaml"), "--json")
    assert result.returncode == 1, result.stderr
    run_id, document = result.stdout.splitlines()
    final = strict_loads(document)
    nodes = final["nodes"]
    for node_id in ("shell_nan", "shell_infinity", "shell_overflow", "python_nan"):
        assert nodes[node_id]["state"] == "failed", node_id
        assert "not" in nodes[node_id]["reason"] and "JSON" in nodes[node_id]["reason"]
    assert "output ratio is not a finite number" in nodes["python_nan"]["reason"]
    strict_loads(cli(db, "status", run_id, "--json").stdout)
    strict_loads(cli(db, "summary", run_id, "--json").stdout)
    events = cli(db, "events", run_id).stdout.splitlines()
    assert events and all(strict_loads(line) for line in events)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("nan_default.yaml", "default is not a finite number"),
        ("env_equals.yaml", "bad environment variable name 'A=B'"),
        ("env_nul.yaml", "bad environment variable name 'A\\x00B'"),
    ],
)
def test_validate_refuses_non_finite_defaults_and_impossible_env_names(
    tmp_path: Path, name: str, expected: str
) -> None:
    result = subprocess.run(
        [INTERLOCK, "validate", str(DATA / name)], capture_output=True, text=True, timeout=60
    )
    assert expected in one_sentence(result)


def test_nul_bytes_in_values_handed_to_execve_or_chdir_fail_validate(tmp_path: Path) -> None:
    pipeline = str(DATA / "nul_values.yaml")
    result = subprocess.run(
        [INTERLOCK, "validate", pipeline], capture_output=True, text=True, timeout=60
    )
    err = one_sentence(result)
    assert "node 'env_value': env: an environment value cannot contain a NUL byte" in err
    assert "node 'argument': command: a command argument cannot contain a NUL byte" in err
    assert "node 'command_line': command: a command argument cannot contain a NUL" in err
    assert "node 'cwd': cwd: the cwd cannot contain a NUL byte: '/tm\\x00p'" in err
    assert "notify.0.command: a command argument cannot contain a NUL byte" in err
    run = cli(tmp_path / "db", "run", pipeline)
    assert "embedded null byte" not in one_sentence(run) and run.stdout == ""


# -- the database --------------------------------------------------------------------------------


def _customers(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (name TEXT)")
    conn.execute("INSERT INTO customers VALUES ('ada')")
    conn.commit()
    conn.close()


@pytest.mark.parametrize(
    "command",
    [["runs"], ["run", str(DATA / "bad_cwd.yaml")], ["status", "x"], ["breakers"]],
    ids=["runs", "run", "status", "breakers"],
)
def test_another_applications_database_is_refused_byte_for_byte_unchanged(
    tmp_path: Path, command: list[str]
) -> None:
    db = tmp_path / "customers.db"
    _customers(db)
    before = digest(db)
    result = cli(db, *command)
    assert "not an Interlock one" in one_sentence(result)
    assert digest(db) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["customers.db"]


def test_an_unopenable_path_is_one_sentence_every_time(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    paths = [fifo, Path("/dev/null"), tmp_path]
    for path in paths:
        for _ in range(7):
            result = cli(path, "runs")
            message = one_sentence(result)
            assert message.count("\n") == 1 and message.startswith("interlock: "), message
    report(f"unopenable paths: {len(paths) * 7} opens, one sentence each, no traceback")


@pytest.mark.parametrize("command", [["runs"], ["status", "x"], ["breakers"], ["events", "x"]])
def test_a_file_sqlite_cannot_size_is_not_an_interlock_database(command: list[str]) -> None:
    """`/proc/self/status` stats as an empty file: SQLite would open it as an empty database."""
    message = one_sentence(cli(Path("/proc/self/status"), *command))
    assert "/proc/self/status is not an Interlock database" in message, message
    assert "schema version" not in message and message.count("\n") == 1


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True, check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_read_commands_work_on_a_database_in_a_read_only_place(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "8m") as place:
        db = place / "interlock.db"
        made = cli(db, "run", str(DATA / "terminal_controls.yaml"))
        run_id = made.stdout.splitlines()[0]
        subprocess.run(["mount", "-o", "remount,ro", str(place)], check=True)
        listed = cli(db, "runs", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [r["run_id"] for r in strict_loads(listed.stdout)] == [run_id]
        for command in (["status", run_id], ["summary", run_id], ["events", run_id],
                        ["breakers"], ["runs"]):
            result = cli(db, *command)
            assert result.returncode == 0, (command, result.stderr)
        # Where nothing can be created, it says so (not "no runs yet").
        message = one_sentence(cli(place / "sub" / "interlock.db", "runs"))
        assert "is not writable" in message
        started = one_sentence(cli(place / "sub" / "db", "run", str(DATA / "bad_cwd.yaml")))
        assert "read-only" in started


def test_a_full_disk_is_told_once_as_a_full_disk(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "full", "256k") as place:
        result = cli(place / "interlock.db", "run", str(DATA / "flood.yaml"))
    message = one_sentence(result)
    assert "the disk is full" in message
    failures = [line for line in message.splitlines() if "could not write" in line]
    assert len(failures) == 1, message
    assert "disk I/O error" not in message.replace("SQLite reported a disk I/O error", "")


# -- what reaches the operator's terminal ---------------------------------------------------------

CONTROLS = ("\x1b", "\x07")


def test_terminal_controls_from_a_node_are_shown_escaped_and_json_is_unchanged(
    tmp_path: Path,
) -> None:
    db = tmp_path / "db"
    ran = cli(db, "run", str(DATA / "terminal_controls.yaml"))
    run_id = ran.stdout.splitlines()[0]
    status = cli(db, "status", run_id)
    summary = cli(db, "summary", run_id)
    for shown in (ran.stderr, status.stdout, summary.stdout):
        assert not any(c in shown for c in CONTROLS), shown
        assert "\\x1b]0;PWNED\\x07\\x1b[2J" in shown
    as_json = strict_loads(cli(db, "status", run_id, "--json").stdout)
    assert as_json["nodes"]["evil"]["reason"] == "exit 1: \x1b]0;PWNED\x07\x1b[2J"


def test_interlock_test_shows_a_failure_once_with_its_terminal_controls_escaped(
    tmp_path: Path,
) -> None:
    tested = cli(tmp_path / "db", "test", str(DATA / "terminal_controls.yaml"), "evil")
    assert tested.returncode == 1, tested.stderr
    assert not any(c in tested.stderr for c in CONTROLS), tested.stderr
    assert tested.stderr.count("evil failed: exit 1: \\x1b]0;PWNED\\x07\\x1b[2J") == 1


def test_python_nodes_print_and_log_into_their_masked_node_log_not_stdout(
    tmp_path: Path,
) -> None:
    db = tmp_path / "db"
    result = cli(db, "run", str(DATA / "chatty.yaml"), "--json", env={"HOSTILE_TOKEN": TOKEN})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout  # the run id, then the document: nothing else
    run_id = lines[0]
    assert strict_loads(lines[1])["state"] == "succeeded"
    assert TOKEN not in result.stdout + result.stderr
    stored = cli(db, "events", run_id, "--type", "node.log").stdout.splitlines()
    logs = {
        (e["node_id"], e["data"]["stream"], e["data"]["line"])
        for e in map(json.loads, stored)
        if e["data"]["stream"] != "process"
    }
    assert logs == {
        ("sync_talker", "stdout", "sync says ***"),
        ("sync_talker", "stderr", "sync logs ***"),
        ("async_talker", "stdout", "async says ***"),
        ("async_talker", "stderr", "async logs ***"),
    }
    assert TOKEN.encode() not in (tmp_path / "db").read_bytes()


def test_threads_started_by_python_nodes_print_to_their_node_or_masked_to_stderr(
    tmp_path: Path,
) -> None:
    db = tmp_path / "db"
    result = cli(db, "run", str(DATA / "chatty_threads.yaml"), "--json",
                 env={"HOSTILE_TOKEN": TOKEN})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout  # the run id, then the document: nothing else
    assert TOKEN not in result.stdout + result.stderr
    assert "late thread says ***" in result.stderr  # its node was over: masked, on stderr
    stored = cli(db, "events", lines[0], "--type", "node.log").stdout.splitlines()
    logs = {
        (e["node_id"], e["data"]["stream"], e["data"]["line"])
        for e in map(json.loads, stored)
        if e["data"]["stream"] != "process"
    }
    assert logs == {
        ("thread_talker", "stdout", "sync's thread says ***"),
        ("async_thread_talker", "stdout", "async's thread says ***"),
    }
    assert TOKEN.encode() not in db.read_bytes()


# -- bad numbers and odd cases -------------------------------------------------------------------

HUGE = "9" * 40


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["runs", "--limit", HUGE], "--limit: the number of runs must be from 0"),
        (["runs", "--limit", "-1"], "--limit: the number of runs must be from 0"),
        (["events", "r", "--tail", HUGE], "--tail: the number of events must be from 0"),
        (["run", str(DATA / "bad_cwd.yaml"), "--metrics-port", "99999"], "a TCP port"),
        (["--metrics-port", "99999", "runs"], "a TCP port must be from 0 to 65,535"),
        (["runs", "--limit", "ten"], "must be a whole number"),
    ],
)
def test_every_bad_number_is_one_sentence_and_exit_2(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    assert expected in one_sentence(cli(tmp_path / "db", *args))


def test_limit_zero_lists_nothing_without_claiming_there_are_no_runs(tmp_path: Path) -> None:
    db = tmp_path / "db"
    cli(db, "run", str(DATA / "bad_cwd.yaml"))
    human = cli(db, "runs", "--limit", "0")
    assert human.returncode == 0
    assert "no runs yet" not in human.stdout
    assert cli(db, "runs", "--limit", "0", "--json").stdout.strip() == "[]"


def test_version_prints_the_version() -> None:
    result = subprocess.run([INTERLOCK, "--version"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert result.stdout.startswith("interlock ") and result.stdout.strip()[-1].isdigit()


def test_a_big_plain_list_is_not_called_an_alias_bomb(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    items = ", ".join(["1"] * 600_000)
    big.write_text(f"id: big\nparams:\n  x: {{default: [{items}]}}\nnodes: []\n")
    message = one_sentence(
        subprocess.run([INTERLOCK, "validate", str(big)], capture_output=True, text=True,
                       timeout=120)
    )
    assert "alias" not in message.lower()
    assert "more than 500,000 values" in message


def test_a_bad_cwd_is_not_reported_as_command_not_found(tmp_path: Path) -> None:
    result = cli(tmp_path / "db", "run", str(DATA / "bad_cwd.yaml"), "--json")
    reason = strict_loads(result.stdout.splitlines()[1])["nodes"]["a"]["reason"]
    assert "cannot use working directory /nonexistent/interlock-test-dir" in reason
    assert "command not found" not in reason


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_an_artifact_that_is_a_directory_or_fifo_says_so(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "target"
    if kind == "directory":
        target.mkdir()
    else:
        os.mkfifo(target)
    result = cli(tmp_path / "db", "run", str(DATA / "artifact.yaml"), "--json",
                 "--param", f"path={target}")
    reason = strict_loads(result.stdout.splitlines()[1])["nodes"]["publish"]["reason"]
    assert reason == f"artifact {target} is a {'directory' if kind == 'directory' else 'FIFO'}, " \
        "not a file"


def test_an_artifact_that_cannot_be_read_says_so_in_one_sentence(tmp_path: Path) -> None:
    result = cli(tmp_path / "db", "run", str(DATA / "artifact.yaml"), "--json",
                 "--param", "path=/proc/self/mem")  # a regular file to stat, EIO to read
    reason = strict_loads(result.stdout.splitlines()[1])["nodes"]["publish"]["reason"]
    assert reason == "artifact /proc/self/mem cannot be read: Input/output error"


def test_a_condition_whose_result_is_not_finite_fails_instead_of_picking_a_branch(
    tmp_path: Path,
) -> None:
    result = cli(tmp_path / "db", "run", str(DATA / "condition_overflow.yaml"), "--json")
    nodes = strict_loads(result.stdout.splitlines()[1])["nodes"]
    assert nodes["check"]["state"] == "failed"
    assert "gave inf, not a finite value" in nodes["check"]["reason"]
    assert nodes["yes"]["state"] == "skipped"


def test_a_failed_connect_never_prints_a_worker_thread_traceback(tmp_path: Path) -> None:
    db = tmp_path / "exists.db"
    db.touch()
    script = DATA / "open_fails.py"
    for _ in range(12):
        done = subprocess.run(
            [sys.executable, str(script), str(db)], capture_output=True, text=True, timeout=60
        )
        assert "cannot open the Interlock database" in done.stdout
        assert done.stderr == ""  # no "Exception in thread ... Event loop is closed"
