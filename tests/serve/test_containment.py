"""What a node of a service's run leaves behind dies with the run, even out of its group.

The service is a child subreaper, as `interlock run` is: a node's process that called `setsid`
or `os.setpgid(0, 0)` is re-parented to it, so the cancel that SIGHUP makes finds and kills it.
The command lets go of the node's output and `exec`s, so the node's group is empty once it is
killed: only the subreaper finds the children (not a pipe they hold open, nor a zombie left in
the group where pid 1 reaps nothing).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import uuid
from typing import TYPE_CHECKING

import psutil

from serve.conftest import cli

if TYPE_CHECKING:
    from pathlib import Path

    from serve.conftest import Serve

ESCAPES = """\
id: escapes
cleanup_grace: 500ms
nodes:
  - id: spawn
    type: shell
    command:
      - sh
      - -c
      - |
        exec </dev/null >/dev/null 2>&1
        setsid python3 -c 'import time; time.sleep(300)' {mark}-session &
        python3 -c 'import os, time; os.setpgid(0, 0); time.sleep(300)' {mark}-group &
        env -i setsid python3 -c 'import time; time.sleep(300)' {mark}-bare &
        exec sleep 300
"""


def _marked(mark: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            argv = process.info["cmdline"] or ()
            if argv and argv[-1] in (f"{mark}-session", f"{mark}-group", f"{mark}-bare"):
                found.append(process)
    return found


def _alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    left = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                left.append(process)
    return left


def test_sighup_leaves_no_process_that_left_the_nodes_group_or_session(
    serve: Serve, db: Path, tmp_path: Path
) -> None:
    """Fails without `become_subreaper()` in `interlock serve` (the children outlive it) and
    without `kill_adopted()` at its end (the one without an environment does)."""
    mark = f"interlock-escape-{uuid.uuid4().hex}"
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "escapes.yaml").write_text(ESCAPES.format(mark=mark))
    service = serve(pipelines=folder)
    try:
        run_id = service.launch("escapes")
        deadline = time.monotonic() + 20
        while len(_marked(mark)) < 3:
            assert time.monotonic() < deadline, "the node's escaping children never started"
            time.sleep(0.05)
        escaped = _marked(mark)
        # Two left the node's session (setsid; one of them with no environment, so no mark
        # of its run either: it is killed as an adopted orphan once the service's runs are
        # over), the other only its process group.
        assert len({os.getsid(p.pid) for p in escaped}) == 3
        assert service.stop(signal.SIGHUP) == 0, service.stderr
        deadline = time.monotonic() + 5
        while _alive(escaped) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(escaped), f"left running: {[p.pid for p in _alive(escaped)]}"
    finally:
        for process in _marked(mark):
            with contextlib.suppress(psutil.Error):
                process.kill()
    status = cli(db, "status", run_id, "--json")
    assert json.loads(status.stdout)["state"] == "cancelled", status.stderr
