"""The python nodes of python_children.yaml and python_running.yaml (`call: python_children:...`).

Each starts a `sleep 300.<FAULT_TAG><n>` (the argv marks it for the test) and prints its pid
(a `node.log` line: the test knows it started), then ends its own way, or waits to be
cancelled. None of them cleans up: the engine must.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from typing import Any


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")  # what a node prints is its log line


def _argv(n: int) -> list[str]:
    return ["sleep", f"300.{os.environ['FAULT_TAG']}{n}"]


def start_and_return(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    child = subprocess.Popen(_argv(1))
    _say(f"started {child.pid}")
    return {"pid": child.pid}


async def start_then_raise(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    child = subprocess.Popen(_argv(2))
    _say(f"started {child.pid}")
    raise RuntimeError("failing with a child running")


def start_then_hang(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    # A shell whose own child is the marked sleep: the whole tree goes, not just the shell.
    child = subprocess.Popen(["sh", "-c", f"{' '.join(_argv(3))} & wait"])
    _say(f"started {child.pid}")
    time.sleep(30)  # past the node's timeout: the thread is abandoned, its processes are not
    return {}


def run_and_wait(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    done = subprocess.run(["sh", "-c", "echo waited"], capture_output=True, text=True,
                          check=True)
    return {"said": done.stdout.strip()}


async def async_child_until_cancelled(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    child = await asyncio.create_subprocess_exec(*_argv(4))
    _say(f"started {child.pid}")
    _say("ready")
    await child.wait()
    return {}


def sync_child_ignoring_sigterm(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    # SIGTERM ignored (inherited by the sleep): only the SIGKILL after the grace ends it.
    child = subprocess.Popen(["sh", "-c", f"trap '' TERM; {' '.join(_argv(5))}; true"])
    _say(f"started {child.pid}")
    _say("ready")
    child.wait()
    return {}
