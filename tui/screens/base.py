"""What the home screen, the run view and a node's detail share: the run commands.

The commands (`c` cancel, `r` replay, `R` resume, `a` approve, `x` reject, `d` diff, `p`
playback, and `f`/`T` from `actions`) act on `target_run()`, which each screen defines (the
highlighted run, or the run on view). A run or its playback is opened by asking the app
(`RunRequested`, `PlaybackRequested`), so this module imports no screen above it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.binding import Binding, BindingType

from engine.state import NodeStatus, RunStatus
from tui import format as fmt
from tui.bridge import CommandError
from tui.messages import PlaybackRequested, RunRequested
from tui.screens.actions import RunToolActions
from tui.screens.confirm import ConfirmScreen, ReasonScreen
from tui.screens.console import ConsoleScreen
from tui.screens.diff import open_diff

if TYPE_CHECKING:
    from engine.state import RunState

__all__ = ["RUN_BINDINGS", "ConsoleScreen", "RunActionsScreen"]

RUN_BINDINGS: list[BindingType] = [
    Binding("c", "cancel", "Cancel"),
    Binding("d", "diff", "Diff"),
    Binding("r", "replay", "Replay"),
    Binding("R", "resume", "Resume"),
    Binding("a", "approve", "Approve"),
    Binding("x", "reject", "Reject"),
    Binding("p", "playback", "Playback"),
    Binding("f", "retry", "Retry", show=False),
    Binding("T", "timeline", "Timeline", show=False),
    Binding("K", "force_kill", "Kill now", show=False),
]


class RunActionsScreen(RunToolActions):
    """A screen showing runs the operator can act on."""

    BINDINGS: ClassVar[list[BindingType]] = RUN_BINDINGS

    def target_run(self) -> str | None:
        raise NotImplementedError

    def target_node(self) -> str | None:
        """The node the operator pointed at, if any (approve/reject prefer it)."""
        return None

    def _run_or_say(self) -> str | None:
        run_id = self.target_run()
        if run_id is None:
            self.notify("no run selected", severity="warning")
        return run_id

    def open_run(self, run_id: str) -> None:
        self.post_message(RunRequested(run_id))

    @work(group="command", exit_on_error=False)
    async def action_cancel(self) -> None:
        run_id = self._run_or_say()
        state = await self._state(run_id) if run_id else None
        if run_id is None or state is None:
            return
        short = fmt.short_id(run_id)
        # Refused at once, not after a question the answer to which changes nothing.
        if state.is_terminal:
            self.notify(f"run {short} already ended ({state.state.value})", severity="warning")
            return
        if self.bridge.is_running_here(run_id) and self.bridge.stopping(run_id):
            self.notify(f"run {short} is already cancelling: K kills its nodes now",
                        severity="warning")
            return
        question = ConfirmScreen(
            f"Cancel run {short}?",
            "No new node starts; running nodes get SIGTERM and are killed (SIGKILL) after the "
            "pipeline's cleanup grace, or at once with K. The run ends `cancelled`.",
            yes="Cancel the run",
            no="Keep it",
        )
        if await self.app.push_screen_wait(question):
            await self.attempt(self.bridge.cancel(run_id), f"run {short}: {{}}")

    @work(group="command", exit_on_error=False)
    async def action_force_kill(self) -> None:
        run_id = self._run_or_say()
        if run_id is None:
            return
        short = fmt.short_id(run_id)
        if not (self.bridge.is_running_here(run_id) and self.bridge.stopping(run_id)):
            try:
                self.bridge.force(run_id)  # refused with the reason why
            except CommandError as exc:
                self.notify(str(exc), title="Refused", severity="warning", timeout=8)
            return
        question = ConfirmScreen(
            f"Kill the nodes of run {short} now?",
            "Its running nodes get SIGKILL at once instead of at the end of their cleanup "
            "grace: what they were cleaning up is left as it is.",
            yes="Kill now",
            no="Wait for the grace",
        )
        if await self.app.push_screen_wait(question):
            try:
                done = self.bridge.force(run_id)
            except CommandError as exc:
                self.notify(str(exc), title="Refused", severity="warning", timeout=8)
                return
            self.notify(f"run {short}: {done}", timeout=4)

    @work(group="command", exit_on_error=False)
    async def action_replay(self) -> None:
        run_id = self._run_or_say()
        if run_id is None:
            return
        question = ConfirmScreen(
            f"Replay run {fmt.short_id(run_id)}?",
            "A new run starts now from this run's stored definition and params (its work "
            "really runs again). The old run is left as it is.",
            yes="Replay",
            no="Not now",
        )
        if not await self.app.push_screen_wait(question):
            return
        new = await self.attempt(self.bridge.replay(run_id), "replay started: run {}")
        if new is not None:
            self.open_run(new)

    @work(group="command", exit_on_error=False)
    async def action_resume(self) -> None:
        run_id = self._run_or_say()
        if run_id is None:
            return
        state = await self._state(run_id)
        if state is None:
            return
        short = fmt.short_id(run_id)
        if self.bridge.is_running_here(run_id):
            self.notify(f"run {short} is running in this console", severity="warning")
            return
        if not state.is_terminal and state.state is not RunStatus.INTERRUPTED:
            listed = self.bridge.summary(run_id)
            owner = listed.owner if listed is not None else "another process"
            self.notify(f"run {short} is still running ({owner}): only an interrupted run "
                        "resumes", severity="warning")
            return
        if state.is_terminal and not state.gate_failures:
            self.notify(f"run {short} ended ({state.state.value}): only an interrupted run "
                        "resumes (r replays it)", severity="warning")
            return
        override, reason = False, None
        if not state.is_terminal:
            question = ConfirmScreen(
                f"Resume run {short} here?",
                "This console takes the run over and runs what is left: nodes that were running "
                "or pending run again (their work may run twice); succeeded nodes are kept.",
                yes="Resume",
                no="Not now",
            )
            if not await self.app.push_screen_wait(question):
                return
        elif state.gate_failures:
            reason = await self.app.push_screen_wait(
                ReasonScreen(
                    f"Override the hard gate of run {fmt.short_id(run_id)}?",
                    f"Gate {', '.join(state.gate_failures)} failed. Resuming past it is "
                    "recorded with your name and this reason.",
                    required=True,
                )
            )
            if reason is None:
                return
            override = True
        resumed = self.bridge.resume(run_id, override=override, reason=reason)
        if await self.attempt(resumed, "resumed run {}") is not None:
            self.open_run(run_id)

    async def _state(self, run_id: str) -> RunState | None:
        try:
            return await self.bridge.run_state(run_id)
        except Exception as exc:  # an unknown or unreadable run is reported, not raised
            self.notify(f"run {fmt.short_id(run_id)}: {exc}", severity="error")
            return None

    async def _waiting_node(self, run_id: str) -> str | None:
        state = await self._state(run_id)
        if state is None:
            return None
        if state.state is RunStatus.INTERRUPTED:
            self.notify(f"run {fmt.short_id(run_id)} is interrupted (no live process owns it): "
                        "resume it (R) first", severity="warning")
            return None
        node = self.target_node()
        if node in state.nodes and state.nodes[node].state is NodeStatus.WAITING:
            return node
        waiting = state.nodes_in(NodeStatus.WAITING)
        if not waiting:
            self.notify(f"run {fmt.short_id(run_id)} has no approval waiting", severity="warning")
            return None
        return waiting[0]

    @work(group="command", exit_on_error=False)
    async def action_approve(self) -> None:
        await self._decide(approve=True)

    @work(group="command", exit_on_error=False)
    async def action_reject(self) -> None:
        await self._decide(approve=False)

    async def _decide(self, *, approve: bool) -> None:
        """Approve or reject the waiting approval, after asking. Approving usually lets real
        work go ahead (a publish, a deploy), so one stray key must not do it either: both ask,
        and record the reason (optional for approve) with the operator's name."""
        run_id = self._run_or_say()
        node = await self._waiting_node(run_id) if run_id else None
        if run_id is None or node is None:
            return
        verb = "Approve" if approve else "Reject"
        body = (
            "The run goes on with what depends on it. A reason is optional (recorded in the "
            "run's events with your name); escape keeps it waiting."
            if approve
            else "The approval fails (class `rejected`) and so does what depends on it. "
            "Why? (recorded in the run's events with your name)"
        )
        reason = await self.app.push_screen_wait(
            ReasonScreen(
                f"{verb} {node} of run {fmt.short_id(run_id)}?", body, send=f"{verb} (enter)",
                required=not approve,
            )
        )
        if reason is None:
            return
        decide = self.bridge.approve if approve else self.bridge.reject
        done = decide(run_id, node, reason or None)
        await self.attempt(done, "{} " + f"(as {self.bridge.actor})")

    @work(group="command", exit_on_error=False)
    async def action_diff(self) -> None:
        run_id = self._run_or_say()
        if run_id is not None:
            await open_diff(self, run_id)

    def action_playback(self) -> None:
        run_id = self._run_or_say()
        if run_id is not None:
            self.post_message(PlaybackRequested(run_id))
