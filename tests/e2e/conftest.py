"""End-to-end helpers: the real `interlock` command in subprocesses, one database per test.

Every test gets its own database in `tmp_path` (passed as `--db`, and as `INTERLOCK_DB` so a
command that forgets the flag still never touches the user's data directory). `cli(...)` runs
one command to the end; `start_run(...)` starts `interlock run` (or `spawn(...)` any long
command) in the background and returns at once with the run id read from its first stdout line.
Every process a test starts is killed and reaped at teardown, together with anything it spawned,
so a failing test never leaves a run behind; every wait has a deadline, so nothing hangs.

The helpers reach tests as fixtures; tests import names from here only for type checking.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import psutil
import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = ROOT / "pipelines"
DATA = ROOT / "tests" / "data" / "pipelines"
CLI_TIMEOUT = 60.0  # no single command of this suite comes near it; a hang becomes a failure
FIRST_LINE_TIMEOUT = 20.0
TERMINAL = frozenset({"succeeded", "failed", "timeout", "cancelled"})


def _interlock_executable() -> str:
    """The installed console script (beside this interpreter; else the one on PATH)."""
    beside = Path(sys.executable).with_name("interlock")
    if beside.is_file():
        return str(beside)
    found = shutil.which("interlock")
    if found is None:
        raise RuntimeError("the `interlock` command is not installed (pip install -e .)")
    return found


INTERLOCK = _interlock_executable()


def data_pipeline(name: str) -> Path:
    """A fixture pipeline of this suite: tests/data/pipelines/e2e_<name>.yaml."""
    path = DATA / f"e2e_{name}.yaml"
    assert path.is_file(), path
    return path


def wait_until(
    predicate: Callable[[], Any], *, timeout: float = 15.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll `predicate` until it returns something truthy (returned); fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def descendants(pid: int) -> list[psutil.Process]:
    """The live descendants of `pid` (empty if it is gone)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def is_gone(process: psutil.Process) -> bool:
    """Exited (a zombie waiting for a reaper counts as gone: it runs nothing)."""
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def kill_tree(processes: Sequence[psutil.Process]) -> None:
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()


def integrity_check(db: Path) -> str:
    """`PRAGMA integrity_check` of the database, from this process (plain sqlite3)."""
    conn = sqlite3.connect(f"{db.absolute().as_uri()}?mode=ro", uri=True)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def stored_seqs(db: Path, run_id: str) -> list[int]:
    """The run's event seqs as stored, in order (read with plain sqlite3)."""
    conn = sqlite3.connect(f"{db.absolute().as_uri()}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT seq FROM events WHERE run_id = ? ORDER BY seq", (run_id,))
        return [int(row[0]) for row in rows]
    finally:
        conn.close()


def assert_gap_free(seqs: Sequence[int]) -> None:
    assert list(seqs) == list(range(1, len(seqs) + 1)), f"seq has gaps or repeats: {seqs}"


def assert_clean_error(result: subprocess.CompletedProcess[str], *, expect: str = "") -> None:
    """Exit 2 with one paragraph on stderr naming the problem, and no traceback."""
    command = " ".join(str(a) for a in result.args[1:])
    assert result.returncode == 2, (
        f"`{command}` exited {result.returncode}, not 2\nstdout: {result.stdout}\n"
        f"stderr: {result.stderr}"
    )
    text = result.stderr.strip()
    assert text, f"`{command}` printed no error"
    assert "Traceback" not in result.stderr, f"`{command}` printed a traceback:\n{result.stderr}"
    assert "\n\n" not in text, f"`{command}` printed more than one paragraph:\n{result.stderr}"
    assert "unexpected error" not in text, f"`{command}` hit an unexpected error: {text}"
    if expect:
        assert expect.lower() in text.lower(), f"`{command}` error does not say {expect!r}: {text}"


# ---------------------------------------------------------------------------------------------
# running commands


def _environment(db: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("INTERLOCK_DEBUG", None)  # tracebacks on purpose would hide the ones we look for
    env["INTERLOCK_DB"] = str(db)
    env["NO_COLOR"] = "1"
    return env


class RunProcess:
    """A background `interlock` command: its stdout is read line by line as it comes."""

    def __init__(self, args: Sequence[str], env: dict[str, str], stderr_path: Path) -> None:
        self.args = list(args)
        self.stderr_path = stderr_path
        self._stderr = stderr_path.open("wb")
        self.proc = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            text=True,
        )
        self.started_at = time.monotonic()
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.run_id = ""

    def _read(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        for line in stdout:
            self.lines.append(line.rstrip("\n"))
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def next_line(self, timeout: float = FIRST_LINE_TIMEOUT) -> str:
        """The next stdout line; fails the test on EOF or after `timeout`."""
        try:
            line = self._queue.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"`{self.command}` printed no line within {timeout}s: {self.stderr()}")
        if line is None:
            self.proc.wait(5)
            pytest.fail(
                f"`{self.command}` ended (exit {self.proc.returncode}) before printing a line; "
                f"stderr: {self.stderr()}"
            )
        return line

    @property
    def command(self) -> str:
        return " ".join(["interlock", *self.args[1:]])

    def wait(self, timeout: float = CLI_TIMEOUT) -> int:
        """The exit code; fails the test (killing the process) after `timeout`."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_all()
            pytest.fail(f"`{self.command}` did not end within {timeout}s: {self.stderr()}")
        self._reader.join(5)
        return code

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def stdout(self) -> str:
        return "\n".join(self.lines)

    def running(self) -> bool:
        return self.proc.poll() is None

    def crash(self) -> list[psutil.Process]:
        """kill -9, as a machine crash would: the process and the node processes it started.

        The process is stopped first, so no node it starts in the meantime escapes the kill.
        Returns the node processes that were killed with it.
        """
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGSTOP)
        children = descendants(self.pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        kill_tree(children)
        self.wait(10)
        wait_until(lambda: all(map(is_gone, children)), timeout=5, what="killed nodes to exit")
        return children

    def kill_all(self) -> None:
        kill_tree(descendants(self.pid))
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill_all()
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()


class Cli:
    """Runs `interlock` against one database: `cli("status", run_id, "--json")`."""

    def __init__(self, db: Path, workdir: Path) -> None:
        self.db = db
        self.workdir = workdir
        self.env = _environment(db)
        self.processes: list[RunProcess] = []

    def argv(
        self, args: Sequence[str | os.PathLike[str]], db: Path | None, db_flag: bool
    ) -> list[str]:
        argv = [INTERLOCK, *(os.fspath(a) for a in args)]
        if db_flag:
            argv += ["--db", str(db or self.db)]
        return argv

    def __call__(
        self,
        *args: str | os.PathLike[str],
        db: Path | None = None,
        db_flag: bool = True,
        timeout: float = CLI_TIMEOUT,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run one command to its end (`db`: another database than the test's)."""
        return subprocess.run(
            self.argv(args, db, db_flag),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env or self.env,
            check=False,
        )

    def ok(self, *args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
        """Run a command that must succeed (exit 0)."""
        result = self(*args)
        assert result.returncode == 0, (
            f"`interlock {' '.join(map(str, args))}` exited {result.returncode}: {result.stderr}"
        )
        return result

    def json(self, *args: str | os.PathLike[str]) -> Any:
        """The parsed stdout of a command that must succeed."""
        return json.loads(self.ok(*args).stdout)

    def status(self, run_id: str) -> dict[str, Any]:
        status: dict[str, Any] = self.json("status", run_id, "--json")
        return status

    def event_lines(self, run_id: str, *extra: str) -> list[str]:
        return self.ok("events", run_id, *extra).stdout.splitlines()

    def events(self, run_id: str, *extra: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.event_lines(run_id, *extra)]

    def runs(self) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = self.json("runs", "--json")
        return runs

    def wait_for_node(
        self, run_id: str, node_id: str, state: str, *, timeout: float = 20.0
    ) -> dict[str, Any]:
        """Poll `status --json` until the node is in `state`; the status then."""

        def reached() -> dict[str, Any] | None:
            status = self.status(run_id)
            node = status["nodes"].get(node_id, {})
            return status if node.get("state") == state else None

        found: dict[str, Any] = wait_until(
            reached, timeout=timeout, interval=0.1, what=f"node {node_id} to be {state}"
        )
        return found

    def spawn(self, *args: str | os.PathLike[str], db_flag: bool = True) -> RunProcess:
        """Start a command in the background (killed at teardown if still running)."""
        stderr_path = self.workdir / f"stderr-{len(self.processes)}.txt"
        process = RunProcess(self.argv(args, None, db_flag), self.env, stderr_path)
        self.processes.append(process)
        return process

    def start(self, *args: str | os.PathLike[str]) -> RunProcess:
        """Start `run`/`resume`/`replay` and read the run id from its first stdout line."""
        process = self.spawn(*args)
        process.run_id = process.next_line()
        assert len(process.run_id) >= 8 and " " not in process.run_id, process.run_id
        return process

    def close(self) -> None:
        for process in self.processes:
            process.close()


class StartRun(Protocol):
    def __call__(
        self, pipeline: str | os.PathLike[str], *args: str | os.PathLike[str]
    ) -> RunProcess: ...


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "interlock.db"


@pytest.fixture
def cli(db: Path, tmp_path: Path) -> Iterator[Cli]:
    runner = Cli(db, tmp_path)
    yield runner
    runner.close()


@pytest.fixture
def start_run(cli: Cli) -> StartRun:
    """`start_run(file, *args)`: Popen `interlock run FILE ...`; returns once the id is read."""

    def start(pipeline: str | os.PathLike[str], *args: str | os.PathLike[str]) -> RunProcess:
        return cli.start("run", pipeline, *args)

    return start
