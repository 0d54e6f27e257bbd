"""Bad settings for `interlock serve`: one sentence on stderr, exit 2, nothing started."""

from __future__ import annotations

import socket
import subprocess
from typing import TYPE_CHECKING

import pytest

from serve.conftest import INTERLOCK, PIPELINES, environment

if TYPE_CHECKING:
    from pathlib import Path


def serve_once(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [INTERLOCK, "serve", "--db", str(db), *args], env=environment(db),
        capture_output=True, text=True, timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--pipelines", "/nonexistent/pipelines", "--port", "0"], "not a directory"),
        (["--pipelines", str(PIPELINES), "--port", "70000"], "must be from 0 to 65535"),
        (["--pipelines", str(PIPELINES), "--port", "zero"], "invalid int value"),
        (["--pipelines", str(PIPELINES), "--token-file", "/nonexistent/token"],
         "cannot read the token file"),
        (["--pipelines", str(PIPELINES), "--max-runs", "0"], "--max-runs must be from 1"),
        (["--pipelines", str(PIPELINES), "--max-runs", "9" * 40], "-digit number"),
    ],
)
def test_a_bad_setting_is_one_sentence_and_exit_2(
    db: Path, args: list[str], expect: str
) -> None:
    result = serve_once(db, *args)
    assert result.returncode == 2
    assert expect in result.stderr
    assert "Traceback" not in result.stderr


def test_a_port_in_use_is_refused(db: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        result = serve_once(db, "--pipelines", str(PIPELINES), "--port", str(port))
    finally:
        taken.close()
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_database_path_that_cannot_exist_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = serve_once(blocker / "db.sqlite", "--pipelines", str(PIPELINES), "--port", "0")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "interlock.db" not in result.stderr
    assert str(blocker) in result.stderr
