"""Python nodes that print and log (and one that returns NaN), for test_hostile_input.py."""

from __future__ import annotations

import asyncio
import logging
import os
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
