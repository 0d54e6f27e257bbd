"""Python nodes that print and log (and one that returns NaN), for test_hostile_input.py."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import Any


def sync_talker(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    print("sync says", os.environ["HOSTILE_TOKEN"])  # noqa: T201  (what is tested)
    logging.getLogger("hostile.sync").warning("sync logs %s", os.environ["HOSTILE_TOKEN"])
    return {"ok": "sync"}


async def async_talker(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    print("async says", os.environ["HOSTILE_TOKEN"])  # noqa: T201  (what is tested)
    await asyncio.sleep(0)
    logging.getLogger("hostile.async").error("async logs %s", os.environ["HOSTILE_TOKEN"])
    return {"ok": "async"}


def not_a_number(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"ratio": float("nan"), "fine": 1}


def _say_secret(what: str, delay: float = 0.0) -> None:
    time.sleep(delay)
    print(what, os.environ["HOSTILE_TOKEN"])  # noqa: T201  (what is tested)


def thread_talker(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    joined = threading.Thread(target=_say_secret, args=("sync's thread says",))
    joined.start()
    joined.join()
    # Outlives the node: it prints when no node is there to take the line.
    threading.Thread(target=_say_secret, args=("late thread says", 0.5)).start()
    return {"ok": "thread"}


async def async_thread_talker(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    joined = threading.Thread(target=_say_secret, args=("async's thread says",))
    joined.start()
    joined.join()
    return {"ok": "async thread"}


def slow_ender(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    time.sleep(1.0)  # the run lasts until the late thread has printed
    return {"ok": "slow"}


def huge_int(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"x": 10**5000}


def nested_huge_int(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"y": [1, {"z": -(10**5000)}]}
