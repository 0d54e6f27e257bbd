"""The run actions added for operators' tools: `f` retry from failure and `T` the timeline.

The base of `RunActionsScreen` (home, run view, node detail), which provides `target_run`,
`target_node` and `open_run`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.css.query import NoMatches
from textual.widgets import Static

from tui import format as fmt
from tui.bridge import CommandError
from tui.screens.console import ConsoleScreen
from tui.screens.retry import RetryScreen
from tui.screens.timeline import TimelineScreen
from tui.widgets.run_header import RunHeader

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tui.messages import RunsListed, RunSummary


def links_text(run_id: str, runs: Sequence[RunSummary]) -> str:
    """` retried as 1a2b3c4d, 5e6f7a8b  replayed as 9c0d1e2f` (empty if none is listed)."""
    retries = [fmt.short_id(r.run_id) for r in runs if r.retry_of == run_id]
    replays = [fmt.short_id(r.run_id) for r in runs if r.replay_of == run_id]
    parts = [f"retried as {', '.join(retries)}"] if retries else []
    parts += [f"replayed as {', '.join(replays)}"] if replays else []
    return " " + "  ".join(parts) if parts else ""


class RunToolActions(ConsoleScreen):
    """The `f` and `T` actions, mixed into the screens that act on runs (`RunActionsScreen`)."""

    RETRY_FROM_NODE: ClassVar[bool] = False
    """Whether `f` also names the screen's node (the node detail) to run again."""

    @work(group="command", exit_on_error=False)
    async def action_retry(self) -> None:
        run_id = self.target_run()
        if run_id is None:
            self.notify("no run selected", severity="warning")
            return
        node = self.target_node() if self.RETRY_FROM_NODE else None
        nodes = (node,) if node else ()
        try:
            plan = await self.bridge.retry_plan(run_id, nodes)
        except CommandError as exc:
            self.notify(str(exc), title="Refused", severity="error", timeout=8)
            return
        if not await self.app.push_screen_wait(RetryScreen(plan, nodes)):
            return
        new = await self.attempt(self.bridge.retry(run_id, nodes), "retry started: run {}")
        if new is not None:
            self.open_run(new)

    def on_runs_listed(self, message: RunsListed) -> None:
        """Under a run's header, the runs made from it (its retries and replays): the other end
        of the link their header shows. Added only when there are some."""
        run_id = getattr(self, "run_id", None)
        if run_id is None:
            return
        text = links_text(run_id, message.runs)
        try:
            line = self.query_one("#run-links", Static)
        except NoMatches:
            headers = self.query(RunHeader)
            if not text or not headers:
                return
            line = Static(id="run-links")
            self.mount(line, after=headers.first())
        line.update(Text(text, style="dim"))

    def action_timeline(self) -> None:
        run_id = self.target_run()
        if run_id is None:
            self.notify("no run selected", severity="warning")
            return
        self.app.push_screen(TimelineScreen(self.ctx, run_id))

    # Provided by `RunActionsScreen`, the class this is mixed into.
    def target_run(self) -> str | None:
        raise NotImplementedError

    def target_node(self) -> str | None:
        raise NotImplementedError

    def open_run(self, run_id: str) -> None:
        raise NotImplementedError
