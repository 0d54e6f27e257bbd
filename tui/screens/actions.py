"""The run actions added for operators' tools: `f` retry from failure and `T` the timeline.

Mixed into `RunActionsScreen` (home, run view, node detail), which provides `target_run`,
`target_node` and `open_run`; kept apart from `base.py` so that its screens import nothing
from here at import time (the timeline and the retry dialog are imported when the key is
pressed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual import work

from tui.bridge import CommandError

if TYPE_CHECKING:
    from tui.screens.base import ConsoleScreen as _Screen
else:
    _Screen = object


class RunToolActions(_Screen):
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
        from tui.screens.retry import RetryScreen

        if not await self.app.push_screen_wait(RetryScreen(plan, nodes)):
            return
        new = await self.attempt(self.bridge.retry(run_id, nodes), "retry started: run {}")
        if new is not None:
            self.open_run(new)

    def action_timeline(self) -> None:
        from tui.screens.timeline import TimelineScreen

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
