"""W8: the console. Also the console-attached variants of W1 and W2.

- Layout: `tui.layout.layout` of the bundled wide-200 pipeline and of a random 1,000-node DAG
  (the same generator as the layout tests), in the mode the console picks for it and, for the
  1,000 nodes, fully boxed (the worst case). The DAG widget runs it in a worker thread.
- Key-to-screen: the real `InterlockApp` under Textual's test driver (120x36) shows a run of 200
  nodes that all log a line every 200 ms, then every 20 ms (up to 1,000 and 10,000 events a
  second through the durable store, the bridge and the screen; the row gives the rate the engine
  kept up, in the same process and loop as the console); an arrow key is sent to the DAG
  (`driver.send_message`, as Pilot does) and the time is taken when the app hands the first frame
  showing the moved selection to the terminal, with that frame rendered to terminal output as a
  real terminal would need.
- W1/W2 console-attached: the fan-out and the chain launched from the console (the bridge is a
  sink of the engine; the run screen shows the run), per node as in W1/W2.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.common import Row, Target, per_item, percentile, wait_until
from engine.api import PipelineBuilder

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from benchmarks.common import Settings
    from engine.spec import Pipeline

ROOT = Path(__file__).resolve().parent.parent
LAYOUT_TITLE = "console: DAG layout (tui.layout.layout)"
KEY_TITLE = "console: arrow key to the DAG selection on screen, while a 200-node run logs"
CHATTER_NODES = 200


def wide_200() -> tuple[list[str], list[tuple[str, str]]]:
    from engine.loader import load_file

    pipeline = load_file(ROOT / "pipelines" / "wide-200.yaml")
    nodes = [node.id for node in pipeline.nodes]
    edges = [(parent, node.id) for node in pipeline.nodes for parent in pipeline.needs_of(node)]
    return nodes, edges


def random_1000() -> tuple[list[str], list[tuple[str, str]]]:
    """2,000 distinct edges between random node pairs, lower to higher index (as the tests)."""
    rng = random.Random(20240601)
    pairs: set[tuple[int, int]] = set()
    while len(pairs) < 2000:
        a, b = sorted(rng.sample(range(1000), 2))
        pairs.add((a, b))
    nodes = [f"task_{i}" for i in range(1000)]
    return nodes, [(nodes[a], nodes[b]) for a, b in sorted(pairs)]


def _layout_rows(reps: int) -> list[Row]:
    from tui.layout import BOXES, choose_mode, layout

    rows = []
    cases = [
        ("wide-200", *wide_200(), None),
        ("random 1,000 nodes / 2,000 edges", *random_1000(), None),
        ("random 1,000 nodes / 2,000 edges", *random_1000(), BOXES),
    ]
    for name, nodes, edges, mode in cases:
        shown = mode or f"{choose_mode(len(nodes))}, as the console picks"
        samples = []
        for _ in range(reps):
            start = time.perf_counter()
            layout(nodes, edges, mode=mode)
            samples.append((time.perf_counter() - start) * 1e3)
        target = Target(1000.0) if len(nodes) >= 1000 else None
        rows.append(Row("W8", LAYOUT_TITLE, f"{name} ({shown})", "layout", "ms", samples,
                        target=target))
    return rows


# ---------------------------------------------------------------------------------------------
# the app under load


async def chatter(payload: Mapping[str, Any], ctx: Any) -> dict[str, Any]:
    """Log a line every `params.every` seconds until the run is cancelled (or `params.seconds`
    pass)."""
    params = payload["params"]
    end = time.monotonic() + float(params["seconds"])
    every = float(params["every"])
    lines = 0
    while time.monotonic() < end:
        lines += 1
        ctx.log("stdout", f"{ctx.node_id}: processed item {lines}")
        await asyncio.sleep(every)
    return {"lines": lines}


def chatter_pipeline(nodes: int = CHATTER_NODES) -> Pipeline:
    flow = PipelineBuilder(
        "bench-console", max_concurrency=nodes, params={"seconds": {}, "every": {}}
    )
    flow.node("start", "trigger")
    middle = [f"worker_{i:03d}" for i in range(nodes - 2)]
    for node_id in middle:
        flow.python(node_id, chatter, needs=["start"])
    flow.node("end", "parallel", needs=middle)
    return flow.build()


class FrameClock:
    """Wraps `App._display`: notes when each frame of a screen is handed to the terminal,
    after rendering it to terminal output as a real (non-headless) app would."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.waiting: tuple[Callable[[Any], bool], asyncio.Future[float]] | None = None
        self.frames = 0
        original = app._display

        def display(screen: Any, renderable: Any) -> None:
            original(screen, renderable)
            if renderable is None:
                return
            self.frames += 1
            with contextlib.suppress(Exception):  # the same work a terminal write needs
                renderable.render_segments(app.console)
            waiting = self.waiting
            if waiting is not None and not waiting[1].done() and waiting[0](screen):
                waiting[1].set_result(time.perf_counter())

        app._display = display

    async def until(self, shown: Callable[[Any], bool], limit: float = 5.0) -> float:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting = (shown, future)
        try:
            async with asyncio.timeout(limit):
                return await future
        finally:
            self.waiting = None


@contextlib.asynccontextmanager
async def console_app() -> Any:
    """The real console app on a temporary database, open and ready, under the test driver."""
    from tui.app import InterlockApp

    with tempfile.TemporaryDirectory(prefix="interlock-bench-") as tmp:
        pipelines = Path(tmp) / "pipelines"
        pipelines.mkdir()
        app = InterlockApp(pipelines_dir=pipelines, db_path=Path(tmp) / "console.db")
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_until(lambda: app.bridge.ready, 20)
            yield app, pilot


async def _show_run(app: Any, run_id: str) -> Any:
    from tui.screens.run import RunScreen

    screen = RunScreen(app.ctx, run_id)
    await app.push_screen(screen)
    return screen


async def _key_to_screen(
    app: Any, presses: int, every: float
) -> tuple[list[float], float, int]:
    from textual import events

    run_id = await app.bridge.launch(chatter_pipeline(), {"seconds": 120, "every": every})
    screen = await _show_run(app, run_id)
    clock = FrameClock(app)

    def busy() -> bool:  # the DAG is laid out, every worker is logging
        state = screen.state
        return (
            screen.dag.selected is not None
            and screen.dag.current_layout is not None
            and state is not None
            and len(state.nodes_in(*_running())) >= CHATTER_NODES - 2
        )

    await wait_until(busy, 30, 0.05)
    screen.dag.focus()
    await asyncio.sleep(0.5)
    store = app.bridge.store
    events_before, frames_before = store.events_committed, clock.frames
    started = time.perf_counter()
    rng = random.Random(3)
    samples = []
    direction = "right"
    for _ in range(presses):
        before = screen.dag.selected
        direction = _movable(screen.dag, direction)
        key = direction
        event = events.Key(key, None)
        event.set_sender(app)
        sent = time.perf_counter()
        app._driver.send_message(event)
        shown = await clock.until(partial(_moved, screen, before))
        samples.append((shown - sent) * 1e3)
        await asyncio.sleep(rng.uniform(0.05, 0.15))
    elapsed = time.perf_counter() - started
    rate = (store.events_committed - events_before) / elapsed
    frames = clock.frames - frames_before
    app.bridge.manager.cancel(run_id, "benchmark done")
    handle = app.bridge.manager.get(run_id)
    if handle is not None:
        await handle
    return samples, rate, round(frames / elapsed)


async def _burst_key_to_screen(app: Any, presses: int) -> tuple[list[float], float]:
    """Arrow keys from the moment the run view can move its selection, while the run's 200
    nodes are still starting (their first events, the view's first layout and fill)."""
    from textual import events

    launched = time.perf_counter()
    run_id = await app.bridge.launch(chatter_pipeline(), {"seconds": 120, "every": 0.2})
    screen = await _show_run(app, run_id)
    clock = FrameClock(app)
    await wait_until(
        lambda: screen.dag.selected is not None and screen.dag.current_layout is not None,
        30, 0.005,
    )
    screen.dag.focus()
    samples = []
    direction = "right"
    for _ in range(presses):
        before = screen.dag.selected
        direction = _movable(screen.dag, direction)
        event = events.Key(direction, None)
        event.set_sender(app)
        sent = time.perf_counter()
        app._driver.send_message(event)
        shown = await clock.until(partial(_moved, screen, before))
        samples.append((shown - sent) * 1e3)
        await asyncio.sleep(0.03)
    window = time.perf_counter() - launched
    app.bridge.manager.cancel(run_id, "benchmark done")
    handle = app.bridge.manager.get(run_id)
    if handle is not None:
        await handle
    return samples, window


def _moved(screen: Any, before: str | None, shown: Any) -> bool:
    """A frame of the run screen with the selection moved off `before`."""
    return bool(shown is screen and screen.dag.selected != before)


def _running() -> tuple[Any, ...]:
    from engine.state import NodeStatus

    return (NodeStatus.RUNNING,)


def _movable(dag: Any, preferred: str) -> str:
    """An arrow key that moves the DAG's selection from where it is (keeping to one way)."""
    layout, selected = dag.current_layout, dag.selected
    for direction in (preferred, "left", "right", "down", "up"):
        if layout.neighbours(selected, direction) is not None:
            return direction
    raise RuntimeError(f"the DAG selection cannot move from {selected}")


async def w8(settings: Settings) -> list[Row]:
    rows = _layout_rows(settings.reps(5, 1))
    presses = 10 if settings.quick else 40
    for every in (0.2, 0.02):
        async with console_app() as (app, _pilot):
            samples, rate, fps = await _key_to_screen(app, presses, every)
        variant = f"200 nodes logging every {every * 1e3:g} ms ({rate:,.0f} events/s stored)"
        note = f"{fps} frames/s"
        rows += [
            Row("W8", KEY_TITLE, variant, "p50", "ms", [percentile(samples, 50)], note=note),
            Row("W8", KEY_TITLE, variant, "p99", "ms", [percentile(samples, 99)],
                target=Target(100.0), note=note),
            Row("W8", KEY_TITLE, variant, "max", "ms", [max(samples)]),
        ]
    async with console_app() as (app, _pilot):
        samples, window = await _burst_key_to_screen(app, presses)
    variant = f"200 nodes starting: the run's opening burst (first {window:.1f} s after launch)"
    rows += [
        Row("W8", KEY_TITLE, variant, "p50", "ms", [percentile(samples, 50)]),
        Row("W8", KEY_TITLE, variant, "p99", "ms", [percentile(samples, 99)],
            target=Target(100.0)),
        Row("W8", KEY_TITLE, variant, "max", "ms", [max(samples)]),
    ]
    return rows


# ---------------------------------------------------------------------------------------------
# W1/W2 with the console attached


async def console_attached(
    workload: str, title: str, pipeline: Pipeline, nodes: int, reps: int
) -> Row:
    """Runs launched from the console's home screen (the runs list updates as they go); the
    cost of opening a run's own screen is W8's."""
    seconds = []
    async with console_app() as (app, _pilot):
        for rep in range(reps + 1):  # the first one warms up
            start = time.perf_counter()
            run_id = await app.bridge.launch(pipeline, {})
            handle = app.bridge.manager.get(run_id)
            state = await handle
            if rep:
                seconds.append(time.perf_counter() - start)
            if state.state.value != "succeeded":
                raise RuntimeError(f"console run ended {state.state}")
            await asyncio.sleep(0.3)  # the console catches up before the next run
    return Row(workload, title, "engine + console (durable store, home screen)", "per node",
               "us", per_item(seconds, nodes))


async def w1_console(settings: Settings) -> Row:
    from benchmarks.engine_bench import FANOUT, W1_TITLE, fanout_pipeline

    width = 200 if settings.quick else FANOUT
    title = W1_TITLE if width == FANOUT else f"fan-out 1 -> {width} no-op -> 1"
    return await console_attached("W1", title, fanout_pipeline(width), width + 2,
                                  settings.reps(5, 2))


async def w2_console(settings: Settings) -> Row:
    from benchmarks.engine_bench import CHAIN, W2_TITLE, chain_pipeline

    return await console_attached("W2", W2_TITLE, chain_pipeline(CHAIN), CHAIN,
                                  settings.reps(5, 2))


WORKLOADS: dict[str, Callable[[Settings], Awaitable[list[Row]]]] = {"W8": w8}
CONSOLE_ATTACHED: dict[str, Callable[[Settings], Awaitable[Row]]] = {
    "W1": w1_console,
    "W2": w2_console,
}
