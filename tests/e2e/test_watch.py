"""`interlock run FILE --watch`: a real watcher process, a real edited file and module. A change
cancels the run in progress gracefully and runs again with the new code; an invalid edit is
reported and waited out; SIGINT ends the watcher with its run cancelled and nothing left."""

from __future__ import annotations

import os
import shutil
import signal
from typing import TYPE_CHECKING

from e2e.conftest import DATA, descendants, is_gone, wait_until

if TYPE_CHECKING:
    from pathlib import Path

    from e2e.conftest import Cli


def _copy(tmp_path: Path) -> Path:
    folder = tmp_path / "flows"
    folder.mkdir()
    for name in ("debug_watch.yaml", "debug_watch_tasks.py"):
        shutil.copy(DATA / name, folder / name)
    return folder


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_watch_reruns_on_a_module_change_and_waits_out_an_invalid_pipeline(
    cli: Cli, tmp_path: Path
) -> None:
    folder = _copy(tmp_path)
    pipeline, module = folder / "debug_watch.yaml", folder / "debug_watch_tasks.py"
    watcher = cli.spawn("run", pipeline, "--watch")
    first = watcher.next_line()
    cli.wait_for_node(first, "linger", "running")
    wait_until(lambda: "watching debug_watch.yaml, debug_watch_tasks.py" in watcher.stderr())

    _edit(module, "VERSION = 1", "VERSION = 2")
    second = watcher.next_line()

    assert second != first
    assert cli.status(first)["state"] == "cancelled"  # cancelled gracefully, not left running
    status = cli.wait_for_node(second, "linger", "running")
    assert status["nodes"]["work"]["output"] == {"version": 2}  # the module imported afresh

    pipeline.write_text(pipeline.read_text() + "\nnodes: [\n")
    wait_until(lambda: "not running it; waiting for the next change" in watcher.stderr())
    assert "YAML syntax error" in watcher.stderr()
    assert watcher.running()
    assert cli.status(second)["state"] == "running"  # an invalid edit leaves the run alone

    pipeline.write_text(pipeline.read_text().replace("\nnodes: [\n", ""))
    third = watcher.next_line()
    cli.wait_for_node(third, "linger", "running")
    assert cli.status(second)["state"] == "cancelled"

    children = descendants(watcher.pid)  # the run's process and its node's
    assert children
    os.kill(watcher.pid, signal.SIGINT)

    assert watcher.wait(30) == 0
    assert cli.status(third)["state"] == "cancelled"
    wait_until(lambda: all(map(is_gone, children)), timeout=10, what="the run's processes")
    assert "watch: stopped" in watcher.stderr()


def test_watch_of_a_pipeline_that_starts_invalid_waits_for_it_to_be_fixed(
    cli: Cli, tmp_path: Path
) -> None:
    folder = _copy(tmp_path)
    pipeline = folder / "debug_watch.yaml"
    _edit(pipeline, "id: debug-watch", "id: Debug Watch")
    watcher = cli.spawn("run", pipeline, "--watch", "--param", "pause=0")
    wait_until(lambda: "not running it" in watcher.stderr())

    _edit(pipeline, "id: Debug Watch", "id: debug-watch")
    run_id = watcher.next_line()

    wait_until(lambda: cli.status(run_id)["state"] == "succeeded", timeout=20)
    os.kill(watcher.pid, signal.SIGTERM)
    assert watcher.wait(30) == 0


def test_the_watched_files_are_the_modules_and_scripts_the_pipeline_calls(tmp_path: Path) -> None:
    from engine.loader import load_dict
    from tui.commands.watch import called_files

    (tmp_path / "pkg").mkdir()
    for name in ("tasks.py", "pkg/__init__.py", "pkg/agents.py", "script.py", "unused.py"):
        (tmp_path / name).write_text("")
    pipeline = load_dict({
        "id": "w",
        "agents": {"helper": "pkg.agents:helper"},
        "nodes": [
            {"id": "a", "type": "python", "call": "tasks:run"},
            {"id": "b", "type": "shell", "command": ["python3", "script.py"]},
            {"id": "c", "type": "python", "call": "json:dumps"},  # not from the folder
            {"id": "d", "type": "agent", "agent": "helper"},
        ],
    })

    found = called_files(pipeline, tmp_path.resolve())

    assert {p.relative_to(tmp_path.resolve()).as_posix() for p in found} == {
        "tasks.py", "pkg/agents.py", "script.py",
    }
