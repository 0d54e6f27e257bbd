"""Shared fixtures: pipelines from dicts, a one-call runner, an event recorder to wait on, and a
guard that fails any test leaving a child process behind.

The helpers reach tests as fixtures (`make_pipeline`, `run_pipeline`, `recorder`) rather than
imports, so nothing imports `conftest` at run time; tests import the Protocols below only for
type checking.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import psutil
import pytest

from engine.bus import MemorySink
from engine.loader import load_dict
from engine.manager import RunManager

if TYPE_CHECKING:
    from engine.breaker import BreakerRegistry
    from engine.bus import EventSink
    from engine.events import Event
    from engine.spec import Pipeline
    from engine.state import RunState

# How long a child process may take to disappear after its test (a killed process group is
# reaped by asyncio's child watcher thread, a moment after the test returns).
CHILD_GRACE = 2.0
# No single run in this suite should come near this; it turns a hang into a clear failure.
RUN_LIMIT = 30.0

Sleep = Callable[[float], Awaitable[None]]


@pytest.fixture(autouse=True)
def no_child_process_is_left_behind() -> Iterator[None]:
    yield
    me = psutil.Process()
    deadline = time.monotonic() + CHILD_GRACE
    children = me.children(recursive=True)
    while children and time.monotonic() < deadline:
        time.sleep(0.02)
        children = me.children(recursive=True)
    if not children:
        return
    described = []
    for child in children:
        try:
            described.append(f"{child.pid} {child.status()} {child.cmdline()}")
            child.kill()
        except psutil.Error:
            described.append(f"{child.pid} (gone)")
    psutil.wait_procs(children, timeout=2)
    pytest.fail(f"child processes left behind: {'; '.join(described)}")


def pipeline_from(raw: Mapping[str, Any]) -> Pipeline:
    """A validated pipeline from a dict (the same checks as a file); `id` defaults to `test`."""
    data = dict(raw)
    data.setdefault("id", "test")
    return load_dict(data, file="<test>")


class MakePipeline(Protocol):
    def __call__(self, raw: Mapping[str, Any]) -> Pipeline: ...


class RunPipeline(Protocol):
    async def __call__(
        self,
        pipeline: Pipeline | Mapping[str, Any],
        *,
        params: Mapping[str, Any] | None = None,
        simulate: bool = False,
        sleep: Sleep | None = None,
        breakers: BreakerRegistry | None = None,
        sinks: Sequence[EventSink] = (),
    ) -> tuple[RunState, list[Event]]: ...


async def run_pipeline(
    pipeline: Pipeline | Mapping[str, Any],
    *,
    params: Mapping[str, Any] | None = None,
    simulate: bool = False,
    sleep: Sleep | None = None,
    breakers: BreakerRegistry | None = None,
    sinks: Sequence[EventSink] = (),
) -> tuple[RunState, list[Event]]:
    """Run `pipeline` to the end in a fresh RunManager; the final state and the run's events."""
    if isinstance(pipeline, Mapping):
        pipeline = pipeline_from(pipeline)
    memory = MemorySink()
    kwargs: dict[str, Any] = {}
    if sleep is not None:
        kwargs["sleep"] = sleep
    async with RunManager(sinks=[memory, *sinks], breakers=breakers, **kwargs) as manager:
        handle = await manager.start(pipeline, params=params, simulate=simulate)
        state = await handle.wait(RUN_LIMIT)
    return state, memory.of(handle.run_id)


class Recorder(MemorySink):
    """A MemorySink a test can wait on: `await recorder.wait_for("node.started", "a")`."""

    def __init__(self) -> None:
        super().__init__()
        self._waiters: list[tuple[Callable[[Event], bool], asyncio.Future[Event]]] = []

    def publish(self, event: Event) -> None:
        super().publish(event)
        for match, future in list(self._waiters):
            if not future.done() and match(event):
                future.set_result(event)

    async def wait_for(
        self,
        event_type: str,
        node_id: str | None = None,
        *,
        run_id: str | None = None,
        timeout: float = 10.0,
    ) -> Event:
        """The first event (already seen or still to come) of that type, node and run."""

        def match(event: Event) -> bool:
            return (
                event.event_type == event_type
                and (node_id is None or event.node_id == node_id)
                and (run_id is None or event.run_id == run_id)
            )

        for event in self.events:
            if match(event):
                return event
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        entry = (match, future)
        self._waiters.append(entry)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._waiters.remove(entry)


@pytest.fixture
def make_pipeline() -> MakePipeline:
    return pipeline_from


@pytest.fixture(name="run_pipeline")
def run_pipeline_fixture() -> RunPipeline:
    return run_pipeline


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `slow` (long crash loops, load) run only with `pytest -m slow`."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with `pytest -m slow`")
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip)
