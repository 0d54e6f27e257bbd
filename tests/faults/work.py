"""The work python nodes of the fault suite do, named in pipelines as `faults.work:<name>`.

A python node has no config of its own besides `call`, so what a node does is looked up here by
pipeline id and node id: a test registers a plan (`PLANS`), runs the pipeline, and drops the plan.
Everything is module state on purpose: the engine imports this module by name, exactly as it
imports a user's callables.
"""

from __future__ import annotations

import asyncio
import datetime
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.errors import TransientError

if TYPE_CHECKING:
    from engine.nodes import NodeContext

# -- planned outcomes (the random-DAG property) ----------------------------------------------

OUTCOMES = ("ok", "transient", "error", "timeout")


@dataclass(frozen=True)
class Plan:
    """What each attempt of a node does: `outcomes[attempt - 1]`, the last one repeating."""

    outcomes: tuple[str, ...]
    value: int = 0

    def outcome(self, attempt: int) -> str:
        return self.outcomes[min(attempt, len(self.outcomes)) - 1]


PLANS: dict[str, dict[str, Plan]] = {}


def _plan(ctx: NodeContext) -> Plan:
    return PLANS[ctx.pipeline.id][ctx.node_id]


async def planned(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    outcome = _plan(ctx).outcome(int(payload["attempt"]))
    if outcome == "timeout":
        await asyncio.sleep(60)  # the node's timeout cancels this long before
    return _finish(outcome, _plan(ctx))


def planned_sync(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """The same, run in a worker thread (never planned to time out: a thread cannot stop)."""
    return _finish(_plan(ctx).outcome(int(payload["attempt"])), _plan(ctx))


def _finish(outcome: str, plan: Plan) -> dict[str, Any]:
    if outcome == "transient":
        raise TransientError("planned transient failure")
    if outcome == "error":
        raise RuntimeError("planned failure")
    return {"v": plan.value}


# -- work that ignores cancellation (blocking code, cancel moments) --------------------------

RELEASE = threading.Event()
"""Set by a test's teardown: lets every blocked worker thread of this module end."""


def blocks(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """A sync callable that ignores its timeout: it blocks its thread for up to 30 s."""
    RELEASE.wait(30)
    return {"blocked": True}


async def sleeps(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    await asyncio.sleep(30)
    return {}


async def quick(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    return {"v": 1}


# -- load: nodes that measure the concurrency they run under ----------------------------------


@dataclass
class Gauge:
    """Nodes running now and the most ever seen, in all and per run; runs with a node running."""

    active: int = 0
    peak: int = 0
    by_run: Counter[str] = field(default_factory=Counter)
    peak_by_run: Counter[str] = field(default_factory=Counter)
    runs_peak: int = 0
    executed: int = 0

    def enter(self, run_id: str) -> None:
        self.active += 1
        self.peak = max(self.peak, self.active)
        self.by_run[run_id] += 1
        self.peak_by_run[run_id] = max(self.peak_by_run[run_id], self.by_run[run_id])
        self.runs_peak = max(self.runs_peak, sum(1 for n in self.by_run.values() if n > 0))
        self.executed += 1

    def leave(self, run_id: str) -> None:
        self.active -= 1
        self.by_run[run_id] -= 1


GAUGE = Gauge()
_GAUGE_LOCK = threading.Lock()


async def measured(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    run_id = str(payload["run_id"])
    with _GAUGE_LOCK:
        GAUGE.enter(run_id)
    try:
        await asyncio.sleep(0.02)
    finally:
        with _GAUGE_LOCK:
            GAUGE.leave(run_id)
    return {"n": len(payload["inputs"])}


def measured_sync(payload: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    run_id = str(payload["run_id"])
    with _GAUGE_LOCK:
        GAUGE.enter(run_id)
    try:
        time.sleep(0.02)
    finally:
        with _GAUGE_LOCK:
            GAUGE.leave(run_id)
    return {"n": len(payload["inputs"])}


# -- outputs that are not JSON data ------------------------------------------------------------


def odd_output(payload: dict[str, Any], ctx: NodeContext) -> dict[Any, Any]:
    """Python values JSON has no word for: a tuple, a set, a date, an int key."""
    return {"t": (1, 2), "s": {3}, "d": datetime.date(2024, 1, 2), 7: "int key"}


def unkeyable_output(payload: dict[str, Any], ctx: NodeContext) -> dict[Any, Any]:
    return {(1, 2): "a tuple key has no JSON form"}
