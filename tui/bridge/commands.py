"""The bridge's commands: launch, cancel, approve, reject, resume, replay, reset a breaker.

Cancel, approve and reject go through `engine.control`, the one implementation the CLI and the
service use too: a run of this console is acted on through its manager; a run owned by another
live process gets a store command its owner acts on within a second (the console does not wait
for the acknowledgement: the run's events show it); a run no live process owns is judged
`interrupted` from its lease, and a cancel then takes the lease and is applied in the store
directly (one transaction). Refusals come back as `CommandError`, worded for the operator.
"""

from __future__ import annotations

import contextlib
import getpass
from typing import TYPE_CHECKING, Any

from engine.errors import InterlockError
from tui.settings import pipeline_files

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    from engine.manager import RunManager
    from engine.retry_from import RetryPlan
    from engine.spec import Pipeline
    from engine.store import Store
    from tui.view import BreakerView


class CommandError(Exception):
    """A command the engine refused; the text is shown to the operator as is."""


def operator_actor() -> str:
    """`operator:<login name>`: who decided, recorded in the events."""
    try:
        name = getpass.getuser()
    except Exception:  # a login name is a nicety; no passwd entry must not break approvals
        name = "unknown"
    return f"operator:{name}"


class Commands:
    """The command half of the bridge (mixed into `Bridge`, which provides what is declared)."""

    actor: str
    search_path: str | None
    _breakers: dict[str, BreakerView]

    @property
    def manager(self) -> RunManager:
        raise NotImplementedError

    @property
    def store(self) -> Store:
        raise NotImplementedError

    def is_own(self, run_id: str) -> bool:
        raise NotImplementedError

    async def poll(self) -> None:
        raise NotImplementedError

    async def launch(
        self,
        pipeline: Pipeline,
        params: Mapping[str, Any],
        *,
        simulate: bool = False,
        run_id: str | None = None,
    ) -> str:
        from engine.manager import resolve_params

        try:
            merged = resolve_params(pipeline, params)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        handle = await self.manager.start(
            pipeline, params=merged, simulate=simulate, search_path=self.search_path,
            actor=self.actor, run_id=run_id,
        )
        return handle.run_id

    async def cancel(self, run_id: str, reason: str | None = None) -> str:
        # The event names the operator (its actor): the reason does not say it a second time.
        reason = reason or "cancelled from the console"
        return await self._command(run_id, "cancel", None, reason)

    def stopping(self, run_id: str) -> bool:
        """Whether a run of this console was asked to stop and its nodes are in their grace."""
        return self.manager.stopping(run_id)

    def cleanup_grace(self, run_id: str) -> float:
        """The cleanup grace of a run of this console (0 if it is not running here)."""
        handle = self.manager.get(run_id)
        return handle.pipeline.cleanup_grace if handle is not None else 0.0

    def force(self, run_id: str) -> str:
        """Kill the nodes of a run of this console whose cancel waits out its grace, now."""
        if self.manager.force(run_id):
            return "killing its nodes now (SIGKILL)"
        if self.manager.is_running(run_id):
            raise CommandError(
                f"run {run_id[:8]} is not being cancelled: press c first, then K to skip the grace"
            )
        raise CommandError(
            f"run {run_id[:8]} is not running in this console: force-kill it where it runs "
            "(Ctrl-C twice on `interlock run`)"
        )

    async def approve(self, run_id: str, node_id: str, reason: str | None = None) -> str:
        return await self._command(run_id, "approve", node_id, reason)

    async def reject(self, run_id: str, node_id: str, reason: str | None = None) -> str:
        return await self._command(run_id, "reject", node_id, reason)

    async def _command(
        self, run_id: str, kind: str, node_id: str | None, reason: str | None
    ) -> str:
        """The command through `engine.control` (the one the CLI and the service use too):
        acted on here for a run of this console, asked of its owner for another process's
        run, applied in the store for a cancel of a run that no live process owns. The
        console does not wait for the owner's acknowledgement: the run's events show it."""
        from engine.control import Control, ControlRefusedError, Refusal

        short = run_id[:8]
        control = Control(self.store, self.manager, actor=self.actor, wait=0.0)
        try:
            if kind == "cancel":
                outcome = await control.cancel(run_id, reason)
            else:
                assert node_id is not None
                outcome = await control.decide(run_id, node_id, kind == "approve", reason)
        except ControlRefusedError as exc:
            if self.is_own(run_id) and not self.manager.is_running(run_id):
                raise CommandError(f"run {short} is not running any more") from None
            if exc.why is Refusal.UNKNOWN:
                raise CommandError(f"no run {short}") from None
            if exc.why is Refusal.ENDED and exc.row is not None:
                raise CommandError(f"run {short} already ended ({exc.row.state})") from None
            if exc.why is Refusal.INTERRUPTED:
                raise CommandError(
                    f"run {short} is interrupted (no live process owns it): resume it first"
                ) from None
            raise CommandError(str(exc)) from None
        except InterlockError as exc:  # a take-over lost to another process
            raise CommandError(str(exc)) from None
        if outcome.how == "here":
            return "cancel requested" if kind == "cancel" else f"{outcome.result} {node_id}"
        if outcome.how == "store":
            return "cancelled (no live process owned it)"
        owner = f"pid {outcome.owner_pid}" if outcome.owner_pid else "its owner"
        if outcome.how == "acknowledged":
            return f"{owner}: {outcome.result}"
        return f"asked {owner} to {kind}"

    async def resume(
        self, run_id: str, *, override: bool = False, reason: str | None = None
    ) -> str:
        from engine.errors import InterlockError

        try:
            handle = await self.manager.resume(
                run_id, override=override, reason=reason, actor=self.actor,
                search_path=self.search_path,
            )
        except (InterlockError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        return handle.run_id

    async def replay(self, run_id: str) -> str:
        from engine.errors import InterlockError

        try:
            handle = await self.manager.replay(
                run_id, actor=self.actor, search_path=self.search_path
            )
        except (InterlockError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        return handle.run_id

    async def retry_plan(self, run_id: str, nodes: Sequence[str] = ()) -> RetryPlan:
        """What a retry of `run_id` would reuse and run again (CommandError if refused)."""
        from engine.errors import InterlockError
        from engine.retry_from import preview_retry

        try:
            return await preview_retry(self.store, run_id, nodes)
        except (InterlockError, ValueError) as exc:
            raise CommandError(str(exc)) from None

    async def retry(self, run_id: str, nodes: Sequence[str] = ()) -> str:
        """Start a retry from failure of `run_id` here; the new run's id."""
        from engine.errors import InterlockError

        try:
            handle = await self.manager.retry(
                run_id, nodes=nodes, actor=self.actor, search_path=self.search_path
            )
        except (InterlockError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        return handle.run_id

    async def reset_breaker(self, key: str) -> bool:
        found = await self.manager.reset_breaker(key)
        self._breakers.pop(key, None)
        with contextlib.suppress(Exception):
            await self.poll()
        return found


def folder_stamp(directory: Path) -> tuple[tuple[str, float], ...]:
    """Names and modification times of the pipeline files: a change means read them again."""
    stamp = []
    for path in pipeline_files(directory):
        with contextlib.suppress(OSError):  # deleted between listing and stat: next look
            stamp.append((path.name, path.stat().st_mtime))
    return tuple(stamp)
