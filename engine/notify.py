"""Notifications (`notify:` in a pipeline file): deliver a run's summary to webhooks and commands.

Contract:
- `run_summary(state, status, ...)` is the JSON body: run id, pipeline, the state the run ends
  in (or `waiting`), reason, error class, params, times, and per node its state, attempts,
  error class and reason. Node reasons are already masked by the engine; header secrets never
  enter it.
- `deliver_all(targets, on, summary)` delivers to every target whose `on` lists `on`,
  concurrently, and returns one `Delivery` per target; it never raises (a broken target is a
  failed delivery, not an error of the run). Each target's delivery is retried with exponential
  backoff (tenacity: `max_attempts` attempts) and bounded as a whole by its `timeout`, so the
  caller waits at most the largest `timeout` of the targets.
- A webhook is an HTTP POST of the summary as JSON (httpx); a 2xx answer is delivered, a 5xx,
  a 429 or a connection error is retried, any other answer fails at once. Header values may be
  `{from_env: NAME, secret: true}`, read from the environment at delivery time; a missing one
  fails the delivery naming the variable. A command gets the summary JSON on stdin; exit 0 is
  delivered, anything else is retried; a command still running at the budget's end is killed.
- `Delivery.event_data()` is the `notification.sent` / `notification.failed` event data:
  `channel` (webhook | command), `target` (the URL without its query string, or the command's
  program), `on`, `attempts`, and `status` (the last HTTP status or exit code, if any). The
  executor records these events before `run.completed` (see `Executor._finish`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import urlsplit, urlunsplit

from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from engine.events import parse_timestamp

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from engine.spec import Notify
    from engine.state import RunState

Sleep: TypeAlias = "Callable[[float], Awaitable[None]]"
BACKOFF_INITIAL = 0.2  # seconds before the second attempt; doubling, with jitter, up to 5 s
BACKOFF_MAX = 5.0


class _Retryable(Exception):
    """A delivery attempt failed in a way another attempt may not (5xx, refused, exit != 0)."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status


class _Final(Exception):
    """A delivery failed in a way no retry mends (a 4xx, a missing secret)."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class Delivery:
    channel: str
    target: str
    on: str
    ok: bool
    attempts: int
    status: int | None = None
    reason: str | None = None

    def event_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "channel": self.channel, "target": self.target, "on": self.on,
            "attempts": self.attempts,
        }
        if self.status is not None:
            data["status"] = self.status
        return data


def run_summary(
    state: RunState,
    status: str,
    *,
    reason: str | None = None,
    error_class: str | None = None,
    ended_at: str | None = None,
) -> dict[str, Any]:
    """The body of a notification: the run as it ends in `status` (or waits)."""
    started = state.started_at or state.created_at
    duration = None
    if started and ended_at:
        duration = round(max(0.0, parse_timestamp(ended_at) - parse_timestamp(started)), 3)
    nodes = []
    for node in state.nodes.values():
        item: dict[str, Any] = {
            "node_id": node.node_id, "state": node.state.value, "attempts": node.attempts,
        }
        if node.error_class:
            item["error_class"] = node.error_class
        if node.reason:
            item["reason"] = node.reason
        nodes.append(item)
    return {
        "run_id": state.run_id,
        "pipeline_id": state.pipeline_id,
        "state": status,
        "reason": reason,
        "error_class": error_class,
        "params": state.params,
        "started_at": started,
        "ended_at": ended_at,
        "duration": duration,
        "waiting_for": [n.node_id for n in state.nodes.values() if n.state.value == "waiting"],
        "nodes": nodes,
    }


def _public_url(url: str) -> str:
    """The URL as recorded in events: without its query string, fragment and credentials."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _headers(target: Notify) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in target.headers.items():
        if isinstance(value, str):
            headers[name] = value
            continue
        found = os.environ.get(value.from_env)
        if found is None:
            raise _Final(f"header {name}: environment variable {value.from_env} is not set")
        headers[name] = found
    return headers


async def _post(target: Notify, body: bytes) -> int:
    import httpx

    assert target.webhook is not None
    headers = {"Content-Type": "application/json", **_headers(target)}
    try:
        async with httpx.AsyncClient(timeout=target.timeout, follow_redirects=False) as client:
            response = await client.post(target.webhook, content=body, headers=headers)
    except httpx.HTTPError as exc:
        why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise _Retryable(why) from None
    code = response.status_code
    if 200 <= code < 300:
        return code
    if code >= 500 or code == 429:
        raise _Retryable(f"HTTP {code}", code)
    raise _Final(f"HTTP {code}", code)


async def _run_command(target: Notify, body: bytes) -> int:
    assert target.command is not None
    try:
        process = await asyncio.create_subprocess_exec(
            *target.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise _Final(f"cannot start {target.command[0]}: {exc.strerror or exc}") from None
    try:
        _, stderr = await process.communicate(body)
    finally:
        if process.returncode is None:  # the budget ran out (cancelled) while it ran
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            with contextlib.suppress(Exception):
                await asyncio.shield(process.wait())
    code = process.returncode or 0
    if code == 0:
        return code
    last = (stderr or b"").decode(errors="replace").strip().splitlines()[-1:] or [""]
    raise _Retryable(f"exit {code}" + (f": {last[0][:200]}" if last[0] else ""), code)


async def deliver(
    target: Notify, on: str, summary: dict[str, Any], *, sleep: Sleep = asyncio.sleep
) -> Delivery:
    """One target: attempts with backoff, the whole bounded by `target.timeout`. Never raises."""
    channel = "webhook" if target.webhook is not None else "command"
    name = _public_url(target.webhook) if target.webhook else (target.command or ["?"])[0]
    body = json.dumps({**summary, "notification": on}, default=str).encode()
    send = _post if target.webhook is not None else _run_command
    attempts = 0
    last: _Retryable | _Final | None = None
    retrying = AsyncRetrying(
        stop=stop_after_attempt(target.max_attempts),
        wait=wait_exponential(multiplier=BACKOFF_INITIAL, max=BACKOFF_MAX)
        + wait_random(0, BACKOFF_INITIAL / 2),
        retry=retry_if_exception_type(_Retryable),
        sleep=sleep,
    )

    async def attempt_all() -> int:
        nonlocal attempts, last
        async for attempt in retrying:
            with attempt:
                attempts += 1
                try:
                    return await send(target, body)
                except (_Retryable, _Final) as exc:
                    last = exc
                    raise
        raise AssertionError("unreachable: tenacity returns or raises")  # pragma: no cover

    try:
        status = await asyncio.wait_for(attempt_all(), target.timeout)
    except TimeoutError:
        why = f"gave up after {target.timeout:g}s ({attempts} attempt{'s' * (attempts != 1)})"
        if last is not None:
            why += f"; last: {last}"
        return Delivery(channel, name, on, False, attempts, last.status if last else None, why)
    except (RetryError, _Retryable, _Final):
        assert last is not None
        return Delivery(channel, name, on, False, attempts, last.status, str(last))
    except Exception as exc:  # a delivery must never fail the run
        return Delivery(channel, name, on, False, attempts, None, f"{type(exc).__name__}: {exc}")
    return Delivery(channel, name, on, True, attempts, status)


async def deliver_all(
    targets: Sequence[Notify], on: str, summary: dict[str, Any], *, sleep: Sleep = asyncio.sleep
) -> list[Delivery]:
    """Every target that wants `on`, concurrently; one `Delivery` each, in target order."""
    wanted = [target for target in targets if on in target.on]
    if not wanted:
        return []
    return list(await asyncio.gather(*(deliver(t, on, summary, sleep=sleep) for t in wanted)))


class Notifier:
    """A run's notifications, for its executor: `waiting` in the background, the run's end
    awaited (bounded) and recorded before `run.completed`.

    `emit(event_type, reason, data)` records a delivery (the executor's `_emit`). The final
    delivery is one task, awaited through `asyncio.shield`: if the executor's task is cancelled
    while it waits, a second `finishing` awaits the same delivery, so a run end notifies once.
    """

    def __init__(
        self,
        targets: Sequence[Notify],
        emit: Callable[[str, str | None, dict[str, Any]], None],
        *,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._targets = tuple(targets)
        self._emit = emit
        self._sleep = sleep
        self._background: list[asyncio.Task[None]] = []
        self._final: asyncio.Task[list[Delivery]] | None = None
        self._closed = False

    def _record(self, deliveries: Sequence[Delivery]) -> None:
        for item in deliveries:
            event_type = "notification.sent" if item.ok else "notification.failed"
            self._emit(event_type, item.reason, item.event_data())

    def waiting(self, state: RunState, now: str) -> None:
        """The run waits for an approval: notify in the background, recording as it ends."""
        if self._closed or not any("waiting" in t.on for t in self._targets):
            return
        summary = run_summary(state, "waiting")
        summary["at"] = now

        async def send() -> None:
            deliveries = await deliver_all(self._targets, "waiting", summary, sleep=self._sleep)
            if not self._closed:
                self._record(deliveries)

        self._background.append(asyncio.ensure_future(send()))

    async def finishing(
        self,
        state: RunState,
        status: str,
        reason: str | None,
        error_class: str | None,
        ended_at: str,
    ) -> None:
        """The run ends in `status`: wait for the deliveries (each within its `timeout`) and
        record them. Call before `run.completed`; the second call records nothing again."""
        if self._closed:
            return
        if self._final is None:
            summary = run_summary(
                state, status, reason=reason, error_class=error_class, ended_at=ended_at
            )
            background = list(self._background)

            async def send() -> list[Delivery]:
                if background:
                    await asyncio.gather(*background, return_exceptions=True)
                return await deliver_all(self._targets, status, summary, sleep=self._sleep)

            self._final = asyncio.ensure_future(send())
        deliveries = await asyncio.shield(self._final)
        if not self._closed:
            self._closed = True
            self._record(deliveries)
