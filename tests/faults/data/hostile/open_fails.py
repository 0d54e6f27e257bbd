"""Open a read-only store whose file vanishes between the store's check and SQLite's connect
(simulated: the URI points elsewhere), so that aiosqlite's own connect fails; prints the error.

Run as a script by test_hostile_input.py: a worker thread left running after the event loop
closed would print a traceback ("Event loop is closed") on stderr.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from engine import dbfile
from engine.store import Store, StoreError


def _elsewhere(path: Path) -> str:
    return Path("/nonexistent/interlock/db").as_uri() + "?mode=ro"


dbfile.readonly_uri = _elsewhere


async def main() -> None:
    try:
        await Store(sys.argv[1], readonly=True).open()
    except StoreError as exc:
        sys.stdout.write(f"{exc}\n")


asyncio.run(main())
