"""The console's cancel, approve and reject (the bridge) through `engine.control`, without an app:
the one implementation the CLI and the service use, worded for the operator."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import pytest

from engine.events import Event, EventType, new_id
from engine.executor import Executor
from engine.loader import load_dict
from engine.manager import RunManager
from engine.state import NodeStatus, RunStatus
from engine.store import Owner, Store
from tui.bridge import Bridge
from tui.bridge.commands import CommandError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

SLOW = {"id": "slow", "nodes": [{"id": "nap", "type": "shell", "command": ["sleep", "30"]}]}
GATED = {
    "id": "gated",
    "nodes": [
        {"id": "prepare", "type": "shell", "command": ["true"]},
        {"id": "sign_off", "type": "approval", "needs": ["prepare"]},
    ],
}


@pytest.fixture
async def bridge(tmp_path: Path) -> AsyncIterator[Bridge]:
    opened = Bridge(tmp_path / "i.db", actor="operator:tester")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def _orphan(store: Store, raw: dict[str, Any], *, waiting: bool = False) -> str:
    """A run whose process died: its lease held by a pid no process has."""
    pipeline = load_dict(raw)
    run_id = new_id()
    Executor(pipeline, run_id=run_id, sinks=[store]).create(actor="test")
    first = pipeline.nodes[0].id
    follow: list[tuple[str, str | None, dict[str, Any]]] = [
        (EventType.RUN_STATE_CHANGED, None, {"from": "pending", "to": "running"}),
        (EventType.NODE_STARTED, first, {"timeout": 60.0}),
    ]
    if waiting:
        follow += [(EventType.NODE_SUCCEEDED, first, {"output": {}}),
                   (EventType.APPROVAL_REQUESTED, "sign_off", {})]
    await store.append([
        Event(new_id(), seq, kind, run_id, "2026-01-01T00:00:01.000000Z", node_id=node,
              data=data, attempt=1)
        for seq, (kind, node, data) in enumerate(follow, start=2)
    ])
    await store.claim_run(run_id, Owner(Owner.current().host, 2**22 + 12345, 1.0))
    return run_id


async def test_the_console_cancels_a_run_nobody_owns_in_the_store(bridge: Bridge) -> None:
    run_id = await _orphan(bridge.store, SLOW)
    assert await bridge.cancel(run_id) == "cancelled (no live process owned it)"
    state = await bridge.store.fold_run(run_id)
    assert state.state is RunStatus.CANCELLED
    with pytest.raises(CommandError, match=r"already ended \(cancelled\)"):
        await bridge.cancel(run_id)


async def test_the_console_asks_the_owner_of_another_process_s_run(
    bridge: Bridge, tmp_path: Path
) -> None:
    async with Store(tmp_path / "i.db") as store, RunManager(store=store) as owner:
        handle = await owner.start(load_dict(SLOW))
        deadline = time.monotonic() + 10
        while (await bridge.store.fold_run(handle.run_id)).nodes["nap"].state is not (
            NodeStatus.RUNNING
        ):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        said = await bridge.cancel(handle.run_id)
        assert said == f"asked pid {Owner.current().pid} to cancel"
        final = await asyncio.wait_for(handle.wait(), 15)
    assert final.state is RunStatus.CANCELLED
    assert final.reason == "cancelled from the console"


async def test_a_decision_for_a_run_nobody_owns_says_to_resume_it_first(bridge: Bridge) -> None:
    run_id = await _orphan(bridge.store, GATED, waiting=True)
    with pytest.raises(CommandError, match="no live process owns it\\): resume it first"):
        await bridge.approve(run_id, "sign_off")
    with pytest.raises(CommandError, match="no run nope"):
        await bridge.cancel("nope")


@pytest.mark.parametrize(
    ("approve", "notice", "end"),
    [
        (True, "approved sign_off", RunStatus.SUCCEEDED),
        (False, "rejected sign_off", RunStatus.FAILED),
    ],
)
async def test_a_run_of_the_console_is_decided_in_place(
    bridge: Bridge, approve: bool, notice: str, end: RunStatus
) -> None:
    handle = await bridge.manager.start(load_dict(GATED))
    deadline = time.monotonic() + 10
    while handle.state.nodes["sign_off"].state is not NodeStatus.WAITING:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    decide = bridge.approve if approve else bridge.reject
    assert await decide(handle.run_id, "sign_off", "fine") == notice  # 'rejectd' once
    assert (await asyncio.wait_for(handle.wait(), 15)).state is end

