"""The event stream generator in-process: keep-alive comments while a run waits."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from engine.loader import load_file
from engine.manager import RunManager
from engine.store import Store
from serve.conftest import PIPELINES
from tui.serve.sse import Wakeups, event_stream

if TYPE_CHECKING:
    from pathlib import Path


async def test_a_waiting_run_gets_keep_alive_comments_then_its_events(tmp_path: Path) -> None:
    async with Store(tmp_path / "db") as store:
        wakeups = Wakeups(store)
        async with RunManager(store=store, sinks=[wakeups]) as manager:
            handle = await manager.start(load_file(PIPELINES / "gated.yaml"))
            chunks: list[bytes] = []

            async def consume() -> None:
                # Appended one by one: the test looks at the list while the stream is open.
                async for chunk in event_stream(wakeups, handle.run_id, 0, keepalive=0.2):
                    chunks.append(chunk)  # noqa: PERF401

            reader = asyncio.create_task(consume())
            for _ in range(200):
                if b": keep-alive\n\n" in chunks:
                    break
                await asyncio.sleep(0.02)
            assert b": keep-alive\n\n" in chunks
            assert manager.approve(handle.run_id, "gate")
            await asyncio.wait_for(reader, timeout=20)
            messages = [c for c in chunks if c.startswith(b"id: ")]
            assert messages[-1].count(b'"run.completed"') == 1
            assert [int(m.split(b"\n")[0][4:]) for m in messages] == list(
                range(1, len(messages) + 1)
            )
        assert len(wakeups) == 0  # the stream let go of its watch
