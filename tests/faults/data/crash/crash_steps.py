"""The python nodes of crash.yaml, imported from the pipeline's folder (`call: crash_steps:...`).

Each appends its node id to the file named by $FAULTS_EXECUTIONS, first thing, then works a
little: the fault suite counts executions from that file across kill -9 and resume.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any


def _record(payload: dict[str, Any]) -> None:
    with open(os.environ["FAULTS_EXECUTIONS"], "a") as executions:
        executions.write(f"{payload['node_id']}\n")


def step_sync(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    _record(payload)
    time.sleep(0.12)
    return {"node": payload["node_id"], "attempt": payload["attempt"]}


async def step_async(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    _record(payload)
    await asyncio.sleep(0.18)
    return {"node": payload["node_id"], "inputs": sorted(payload["inputs"])}
