"""The node test screen (`t` on a node): the node run alone on its inputs from this run.

It shows the node's log as it comes, then its outcome and output. Nothing is recorded (see
`tui.bridge.testing`); `escape` cancels a test still running and goes back.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, RichLog, Static

from tui import format as fmt
from tui.bridge import CommandError
from tui.screens.console import HELP_AND_QUIT

if TYPE_CHECKING:
    from textual.app import ComposeResult

    from engine.events import Event
    from engine.executor import Executor
    from engine.spec import Pipeline
    from engine.state import RunState
    from tui.bridge import Bridge
    from tui.context import Context


class NodeTestScreen(Screen[None]):
    """One node of `source` run alone, with its inputs from `source`."""

    CSS_PATH = "node_test.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        *HELP_AND_QUIT,
        Binding("escape", "back", "Back"),
    ]

    def __init__(
        self, pipeline: Pipeline, node_id: str, source: RunState, search_path: str | None
    ) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.node_id = node_id
        self.source = source
        self.search_path = search_path
        self.result: RunState | None = None
        self._executor: Executor | None = None

    @property
    def log_view(self) -> RichLog:
        return self.query_one("#test-log", RichLog)

    def compose(self) -> ComposeResult:
        yield Static(
            f" Testing {self.node_id} alone on its inputs from run "
            f"{fmt.short_id(self.source.run_id)} (nothing is recorded)",
            id="test-title",
        )
        yield Static(" running...", id="test-status")
        yield RichLog(id="test-log", wrap=False, markup=False, max_lines=2000)
        yield Static("", id="test-output")
        yield Footer()

    def on_mount(self) -> None:
        self._run()

    # The executor publishes here (a sink): the node's log lines as they come, as the node's
    # detail (and its full-screen log) shows them: the `process` stream says where the command
    # runs, for cleanup, and is not the node's output.
    def publish(self, event: Event) -> None:
        if event.event_type == "node.log" and event.node_id == self.node_id:
            data = event.data or {}
            if data.get("stream") != "process":
                self.log_view.write(Text(str(data.get("line", ""))))

    async def flush(self) -> None:
        return None

    def _keep(self, executor: Executor) -> None:
        self._executor = executor

    @work(exit_on_error=False)
    async def _run(self) -> None:
        from tui.bridge.testing import run_node_alone

        status = self.query_one("#test-status", Static)
        try:
            state = await run_node_alone(
                self.pipeline, self.node_id, self.source, sink=self,
                search_path=self.search_path, on_executor=self._keep,
            )
        except CommandError as exc:
            status.update(Text(f" {exc}", style="red"))
            return
        self.result = state
        node = state.nodes[self.node_id]
        value = node.state.value
        line = Text(f" {value}", style=fmt.state_style(value))
        if node.reason:
            line.append(f": {node.error_class or ''} {node.reason}".rstrip())
        status.update(line)
        if node.output is not None:
            output = json.dumps(node.output, indent=2, sort_keys=True, default=str)
            self.query_one("#test-output", Static).update(f"output:\n{output}")

    def action_back(self) -> None:
        if self._executor is not None and self.result is None:
            self._executor.cancel("the test was closed", "operator")
        self.dismiss()


class NodeTestKey(Screen[None]):
    """`t` on a node view (mixed into `NodeScreen`): test the node on view alone."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("t", "test_node", "Test alone")]

    ctx: Context
    node_id: str
    state: RunState | None

    @property
    def bridge(self) -> Bridge:
        return self.ctx.bridge

    def action_test_node(self) -> None:
        if self.state is None:
            return
        pipeline = pipeline_for(self.ctx, self.state)
        self.app.push_screen(
            NodeTestScreen(pipeline, self.node_id, self.state, self.bridge.search_path)
        )


def pipeline_for(ctx: Context, state: RunState) -> Pipeline:
    """The pipeline as its file reads now (valid, same id), else the run's stored definition."""
    from engine.manager import pipeline_from_state

    entry = ctx.entry(state.pipeline_id)
    if entry is not None and entry.pipeline is not None:
        return entry.pipeline
    return pipeline_from_state(state)
