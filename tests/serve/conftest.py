"""Helpers for the service tests: a real `interlock serve` process, reached over HTTP.

`serve(...)` starts `interlock serve --port 0` on a database of the test's own and waits for
the "listening on URL" line on stderr; the returned `ServeProcess` has the URL, an httpx client
(with the token when one is given) and the process. Every service is stopped with SIGTERM at
teardown (killed if it does not exit), so no test leaves a process behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import psutil
import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

HERE = Path(__file__).resolve().parent
PIPELINES = HERE / "data" / "pipelines"
SCHEDULED = HERE / "data" / "scheduled"
INTERLOCK = str(Path(sys.executable).with_name("interlock"))
START_TIMEOUT = 30.0
TERMINAL = frozenset({"succeeded", "failed", "timeout", "cancelled"})
_URL = re.compile(r"listening on (http://\S+)")


class ServeProcess:
    def __init__(self, args: Sequence[str], env: dict[str, str], token: str | None) -> None:
        self.process = subprocess.Popen(
            args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        self._lines: list[str] = []
        self._url = threading.Event()
        self.url = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._url.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self._reader.join(timeout=2)
                raise AssertionError(f"interlock serve did not start: {self.stderr}")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(base_url=self.url, headers=headers, timeout=20.0)

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._lines.append(line)
            found = _URL.search(line)
            if found and not self.url:
                self.url = found.group(1)
                self._url.set()

    @property
    def stderr(self) -> str:
        return "".join(self._lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        if self.process.poll() is None:
            with contextlib.suppress(Exception):
                self.stop(timeout=20)
        if self.process.poll() is None:
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(self.process.pid).children(recursive=True):
                    child.kill()
            self.process.kill()
            self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        if self.process.stderr is not None:
            with contextlib.suppress(Exception):
                self._reader.join(timeout=2)
                self.process.stderr.close()

    # -- conveniences ----------------------------------------------------------------------------

    def launch(self, pipeline: str, **body: Any) -> str:
        response = self.client.post("/v1/runs", json={"pipeline": pipeline, **body})
        assert response.status_code == 201, response.text
        return str(response.json()["run_id"])

    def status(self, run_id: str) -> dict[str, Any]:
        response = self.client.get(f"/v1/runs/{run_id}")
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def wait_for(
        self, run_id: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(run_id)
            if predicate(status):
                return status
            if time.monotonic() > deadline:
                pytest.fail(f"run {run_id} never got there; last status {status}")
            time.sleep(0.05)

    def wait_done(self, run_id: str, timeout: float = 30.0) -> dict[str, Any]:
        return self.wait_for(run_id, lambda s: s["state"] in TERMINAL, timeout)


class Serve(Protocol):
    def __call__(
        self,
        *extra: str,
        pipelines: Path = ...,
        db: Path | None = ...,
        token: str | None = ...,
        env: dict[str, str] | None = ...,
    ) -> ServeProcess: ...


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "interlock.db"


def environment(db: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("INTERLOCK_TOKEN", "OTEL_EXPORTER_OTLP_ENDPOINT")}
    env["INTERLOCK_DB"] = str(db)
    env.update(extra or {})
    return env


@pytest.fixture
def serve(db: Path) -> Iterator[Serve]:
    started: list[ServeProcess] = []

    def start(
        *extra: str,
        pipelines: Path = PIPELINES,
        db: Path | None = db,
        token: str | None = None,
        env: dict[str, str] | None = None,
    ) -> ServeProcess:
        target = db if db is not None else Path(os.devnull)
        args = [INTERLOCK, "serve", "--port", "0", "--pipelines", str(pipelines),
                "--db", str(target), *extra]
        process = ServeProcess(args, environment(target, env), token)
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()


def cli(db: Path, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [INTERLOCK, *args, "--db", str(db)], env=environment(db), capture_output=True,
        text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )


def sse_events(text: str) -> list[tuple[int, dict[str, Any]]]:
    """(id, data) of each SSE message in a response body; comments are left out."""
    found = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":")
        )
        if "data" in fields:
            found.append((int(fields["id"]), json.loads(fields["data"])))
    return found
