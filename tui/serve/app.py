"""The HTTP API of `interlock serve` (DESIGN section 8), as a Starlette app.

Contract: JSON in and out. Every error is `{"error": <one sentence>, "issues": [...]}` with
its status (400 bad request body, 401 no token, 404 unknown pipeline/run/node/breaker, 409 the
run's state forbids it, 413 a body over `MAX_BODY`, 422 invalid pipeline or params or a body
field the route does not take, 503 the store cannot be read, 500 anything unexpected), never a
stack trace. Runs launched here belong to the service's manager;
cancel/approve/reject of a run another live process owns are posted as store commands that the
owner acts on within a second (202); a run nobody owns any more is handled in the store as the
CLI does. Reading never writes: a run whose owner is gone is shown `interrupted` without an
event being written.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from engine.errors import (
    InterlockError,
    PipelineValidationError,
    ResumeRefusedError,
    UnknownRunError,
)
from engine.store import StoreError
from tui.pipeline_folder import PipelineEntry, scan_pipelines
from tui.serve.auth import BearerAuth
from tui.serve.sse import event_stream

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from starlette.requests import Request

    from engine.control import Control, Outcome
    from engine.manager import RunManager
    from engine.retry_from import RetryRefusedError
    from engine.store import RunRow, Store
    from tui.serve.metrics import StoreMetrics
    from tui.serve.scheduler import Scheduler
    from tui.serve.sse import Wakeups

ACTOR = "api"
MAX_LIMIT = 10_000
REASON = frozenset({"reason"})
MAX_BODY = 1024 * 1024  # bytes: every body this API takes is a few fields


class ApiError(Exception):
    def __init__(self, status: int, error: str, issues: list[Any] | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.issues = issues or []


@dataclass
class Service:
    """What the routes work with: the store, this process's manager, the pipelines folder."""

    store: Store
    manager: RunManager
    wakeups: Wakeups
    pipelines_dir: Path
    metrics: StoreMetrics
    scheduler: Scheduler | None = None
    accepting: bool = True
    started_at: float = field(default_factory=time.time)


def json_response(payload: Any, status: int = 200) -> Response:
    body = json.dumps(payload, separators=(",", ":"), default=str)
    return Response(body, status_code=status, media_type="application/json")


def error_response(status: int, error: str, issues: list[Any] | None = None) -> Response:
    return json_response({"error": error, "issues": issues or []}, status)


def api(
    handler: Callable[[Service, Request], Awaitable[Response]],
) -> Callable[[Service, Request], Awaitable[Response]]:
    """Known failures as their status; anything else a 500 with one sentence, no traceback."""

    @functools.wraps(handler)
    async def wrapped(service: Service, request: Request) -> Response:
        try:
            return await handler(service, request)
        except ApiError as exc:
            return error_response(exc.status, exc.error, exc.issues)
        except PipelineValidationError as exc:
            return error_response(422, "the pipeline is invalid", [str(i) for i in exc.issues])
        except UnknownRunError as exc:
            return error_response(404, str(exc))
        except ResumeRefusedError as exc:
            return error_response(409, str(exc))
        except StoreError as exc:
            return error_response(503, str(exc))
        except InterlockError as exc:
            return error_response(409, str(exc))
        except Exception as exc:
            return error_response(500, f"unexpected error: {type(exc).__name__}: {exc}")

    return wrapped


async def json_body(request: Request, allowed: frozenset[str] | None = None) -> dict[str, Any]:
    """The request's JSON object (empty body: `{}`). 413 past `MAX_BODY` bytes, 400 for what is
    not a JSON object, 422 naming the fields not in `allowed` (when given)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise _too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:  # a chunked body declares no length: counted as it comes
            raise _too_large()
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        body: Any = {}
    else:
        try:
            body = json.loads(raw, parse_constant=_refuse_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"the request body is not JSON: {exc}") from None
        except RecursionError:
            raise ApiError(400, "the request body is not JSON this service reads: it is "
                                "nested too deeply") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    unknown = sorted(set(body) - allowed) if allowed is not None else []
    if unknown:
        raise ApiError(422, f"unknown field {', '.join(unknown)}",
                       [f"{name}: unknown field" for name in unknown])
    return body


def _too_large() -> ApiError:
    return ApiError(413, f"the request body is over {MAX_BODY // 1024} KiB")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed (strict JSON)")


def _optional_text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise ApiError(400, f"'{key}' must be a string")
    return value


def shown_state(row: RunRow) -> str:
    """The run's state as a reader sees it: non-terminal without a live owner is interrupted."""
    from engine.lease import shown_state as from_lease

    return from_lease(row)


async def find_row(service: Service, run_id: str) -> RunRow:
    try:
        row = await service.store.find_run(run_id)
    except StoreError as exc:
        raise ApiError(400, str(exc)) from None
    if row is None:
        raise ApiError(404, f"no run with id '{run_id}'")
    return row


# -- pipelines -----------------------------------------------------------------------------------


async def scan_async(service: Service) -> list[PipelineEntry]:
    return await asyncio.to_thread(scan_pipelines, service.pipelines_dir)


@api
async def healthz(service: Service, request: Request) -> Response:
    return json_response({"ok": True})


@api
async def list_pipelines(service: Service, request: Request) -> Response:
    from engine.schedule import describe, fire_time_text, next_fire, schedule_key

    now = _utcnow()
    items = []
    for item in await scan_async(service):
        entry: dict[str, Any] = {
            "id": item.name,
            "file": str(item.path),
            "valid": item.pipeline is not None,
            "issues": list(item.problems),
        }
        pipeline = item.pipeline
        if pipeline is not None:
            last = await service.store.last_fires(pipeline.id) if pipeline.schedule else {}
            entry["name"] = pipeline.label
            entry["description"] = pipeline.description
            entry["nodes"] = len(pipeline.nodes)
            entry["params"] = {k: v.default for k, v in pipeline.params.items()}
            schedules = []
            for schedule in pipeline.schedule:
                key = schedule_key(schedule)
                fired = last.get(key)
                schedules.append(
                    {
                        "key": key,
                        "schedule": describe(schedule),
                        "cron": schedule.cron,
                        "every": schedule.every,
                        "timezone": schedule.timezone,
                        "params": schedule.params,
                        "last_fire": fired[0] if fired else None,
                        "last_run_id": fired[1] if fired else None,
                        "next_fire": fire_time_text(next_fire(schedule, now)),
                    }
                )
            entry["schedules"] = schedules
        items.append(entry)
    return json_response(items)


def _utcnow() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


# -- runs ----------------------------------------------------------------------------------------


def _row_dict(row: RunRow) -> dict[str, Any]:
    return {
        "run_id": row.run_id,
        "pipeline_id": row.pipeline_id,
        "state": shown_state(row),
        "started_at": row.started_at or row.created_at,
        "ended_at": row.ended_at,
    }


@api
async def list_runs(service: Service, request: Request) -> Response:
    query = request.query_params
    limit_text = query.get("limit")
    limit: int | None = None
    if limit_text:
        if not limit_text.isdigit() or not 0 < int(limit_text) <= MAX_LIMIT:
            raise ApiError(400, f"limit must be a whole number from 1 to {MAX_LIMIT}")
        limit = int(limit_text)
    state = query.get("state") or None
    pipeline = query.get("pipeline") or None
    filtered = state is not None or pipeline is not None
    rows = await service.store.list_runs(limit=None if filtered else limit)
    items = [_row_dict(row) for row in rows]
    if state is not None:
        items = [item for item in items if item["state"] == state]
    if pipeline is not None:
        items = [item for item in items if item["pipeline_id"] == pipeline]
    if limit is not None:
        items = items[:limit]
    return json_response(items)


@api
async def launch(service: Service, request: Request) -> Response:
    from engine.manager import resolve_params

    if not service.accepting:
        raise ApiError(503, "the service is stopping and accepts no new runs")
    body = await json_body(request, frozenset({"pipeline", "params", "simulate"}))
    pipeline_id = body.get("pipeline")
    if not isinstance(pipeline_id, str) or not pipeline_id:
        raise ApiError(422, "'pipeline' (a pipeline id) is required",
                       ["pipeline: required, a pipeline id from GET /v1/pipelines"])
    params = body.get("params", {})
    if not isinstance(params, dict):
        raise ApiError(422, "'params' must be an object", ["params: must be an object"])
    simulate = body.get("simulate", False)
    if not isinstance(simulate, bool):
        raise ApiError(422, "'simulate' must be true or false", ["simulate: must be a boolean"])
    files = await scan_async(service)
    matches = [item for item in files if item.name == pipeline_id]
    if not matches:
        known = ", ".join(sorted(item.name for item in files)) or "none"
        raise ApiError(404, f"no pipeline '{pipeline_id}' in {service.pipelines_dir} "
                            f"(found: {known})")
    item = matches[0]
    if item.pipeline is None:
        raise ApiError(422, f"pipeline '{pipeline_id}' is invalid", list(item.problems))
    try:
        merged = resolve_params(item.pipeline, params)
    except ValueError as exc:
        raise ApiError(422, str(exc), [str(exc)]) from None
    handle = await service.manager.start(
        item.pipeline, params=merged, simulate=simulate,
        search_path=str(item.path.parent.resolve()), actor=ACTOR,
    )
    return json_response({"run_id": handle.run_id}, 201)


@api
async def run_status(service: Service, request: Request) -> Response:
    from engine.state import state_to_dict

    row = await find_row(service, request.path_params["run_id"])
    state = await service.store.fold_run(row.run_id)
    out = state_to_dict(state)
    if not state.is_terminal and not service.manager.is_running(row.run_id):
        fresh = await service.store.run_row(row.run_id)
        out["state"] = shown_state(fresh or row)
    return json_response(out)


@api
async def run_events(service: Service, request: Request) -> Response:
    row = await find_row(service, request.path_params["run_id"])
    raw = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
    if not raw.strip().isdigit():
        raise ApiError(400, f"Last-Event-ID must be an event seq (a whole number), not {raw!r}")
    stream = event_stream(service.wakeups, row.run_id, int(raw))
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)


# -- control -------------------------------------------------------------------------------------


def _control(service: Service) -> Control:
    from engine.control import Control

    # The API answers at once (202): the owner acknowledges the command within a second.
    return Control(service.store, service.manager, actor=ACTOR, wait=0.0)


def _posted(outcome: Outcome) -> Response:
    row = outcome.row
    return json_response(
        {"run_id": outcome.run_id, "result": "requested", "command_id": outcome.command_id,
         "owner_pid": row.owner_pid if row else None,
         "owner_host": row.owner_host if row else None},
        202,
    )


@api
async def cancel(service: Service, request: Request) -> Response:
    from engine.control import ControlRefusedError

    row = await find_row(service, request.path_params["run_id"])
    reason = _optional_text(await json_body(request, REASON), "reason")
    try:
        outcome = await _control(service).cancel(row.run_id, reason)
    except ControlRefusedError as exc:
        raise ApiError(409, str(exc)) from None
    if outcome.how == "here":
        return json_response({"run_id": row.run_id, "result": "cancelling"}, 202)
    if outcome.how == "store":
        return json_response({"run_id": row.run_id, "result": outcome.result}, 202)
    return _posted(outcome)


async def _decide(service: Service, request: Request, approve: bool) -> Response:
    from engine.control import ControlRefusedError, Refusal

    row = await find_row(service, request.path_params["run_id"])
    node_id = request.path_params["node"]
    reason = _optional_text(await json_body(request, REASON), "reason")
    kind = "approve" if approve else "reject"
    try:
        outcome = await _control(service).decide(row.run_id, node_id, approve, reason)
    except ControlRefusedError as exc:
        if exc.why is Refusal.NO_NODE:
            raise ApiError(404, f"run {row.run_id} has no node '{node_id}'") from None
        if exc.why is Refusal.INTERRUPTED:
            raise ApiError(409, f"run {row.run_id} is interrupted (its process is gone); "
                                f"resume it first (POST /v1/runs/{row.run_id}/resume), then "
                                f"{kind}") from None
        raise ApiError(409, str(exc)) from None
    if outcome.how == "here":
        return json_response({"run_id": row.run_id, "node": node_id, "result": kind + "d"}, 202)
    return _posted(outcome)


@api
async def approve(service: Service, request: Request) -> Response:
    return await _decide(service, request, True)


@api
async def reject(service: Service, request: Request) -> Response:
    return await _decide(service, request, False)


@api
async def replay(service: Service, request: Request) -> Response:
    if not service.accepting:
        raise ApiError(503, "the service is stopping and accepts no new runs")
    row = await find_row(service, request.path_params["run_id"])
    await json_body(request, frozenset())
    handle = await service.manager.replay(row.run_id, actor=ACTOR)
    return json_response({"run_id": handle.run_id, "replay_of": row.run_id}, 202)


@api
async def retry(service: Service, request: Request) -> Response:
    """Retry from failure (DESIGN section 4): `RunManager.retry`."""
    from engine.retry_from import RetryRefusedError

    if not service.accepting:
        raise ApiError(503, "the service is stopping and accepts no new runs")
    row = await find_row(service, request.path_params["run_id"])
    nodes = (await json_body(request, frozenset({"nodes"}))).get("nodes", [])
    if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
        raise ApiError(400, "'nodes' must be a list of node ids")
    try:
        handle = await service.manager.retry(row.run_id, nodes=nodes, actor=ACTOR)
    except RetryRefusedError as exc:
        raise _retry_refused(row.run_id, exc) from None
    return json_response({"run_id": handle.run_id, "retry_of": row.run_id}, 202)


def _retry_refused(run_id: str, exc: RetryRefusedError) -> ApiError:
    """The engine's refusal in the API's words (it names CLI commands and flags)."""
    if exc.why == "unknown_node":
        return ApiError(404, str(exc), [f"nodes: no node {name}" for name in exc.unknown])
    if exc.why == "nothing":
        return ApiError(409, f"run {run_id} succeeded: a retry would run nothing; name a node "
                             'to run again ({"nodes": ["NODE"]})')
    if exc.why == "interrupted":
        return ApiError(409, f"run {run_id} is interrupted, not finished; resume it instead "
                             f"(POST /v1/runs/{run_id}/resume)")
    return ApiError(409, str(exc))


@api
async def resume(service: Service, request: Request) -> Response:
    if not service.accepting:
        raise ApiError(503, "the service is stopping and accepts no new runs")
    row = await find_row(service, request.path_params["run_id"])
    body = await json_body(request, frozenset({"override", "reason"}))
    override = body.get("override", False)
    if not isinstance(override, bool):
        raise ApiError(400, "'override' must be true or false")
    reason = _optional_text(body, "reason")
    if override and not reason:
        raise ApiError(422, "an override needs a reason", ["reason: required with override"])
    handle = await service.manager.resume(row.run_id, override=override, reason=reason,
                                          actor=ACTOR)
    return json_response({"run_id": handle.run_id, "result": "resumed"}, 202)


# -- breakers and metrics ------------------------------------------------------------------------


@api
async def breakers(service: Service, request: Request) -> Response:
    now = time.time()
    records = sorted((await service.store.load_breakers()).values(), key=lambda r: r.key)
    return json_response([record.item(now) for record in records])


@api
async def reset_breaker(service: Service, request: Request) -> Response:
    key = request.path_params["key"]
    if not await service.manager.reset_breaker(key):
        raise ApiError(404, f"no breaker with key '{key}'")
    return json_response({"key": key, "state": "closed"})


@api
async def metrics(service: Service, request: Request) -> Response:
    text = await service.metrics.render()
    return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")


# -- the app -------------------------------------------------------------------------------------


def build_app(service: Service, token: str | None) -> Starlette:
    def bind(
        handler: Callable[[Service, Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await handler(service, request)

        return endpoint

    run = "/v1/runs/{run_id}"
    routes = [
        Route("/healthz", bind(healthz)),
        Route("/metrics", bind(metrics)),
        Route("/v1/pipelines", bind(list_pipelines)),
        Route("/v1/runs", bind(list_runs), methods=["GET"]),
        Route("/v1/runs", bind(launch), methods=["POST"]),
        Route(run, bind(run_status)),
        Route(run + "/events", bind(run_events)),
        Route(run + "/cancel", bind(cancel), methods=["POST"]),
        Route(run + "/replay", bind(replay), methods=["POST"]),
        Route(run + "/resume", bind(resume), methods=["POST"]),
        Route(run + "/nodes/{node}/approve", bind(approve), methods=["POST"]),
        Route(run + "/nodes/{node}/reject", bind(reject), methods=["POST"]),
        Route("/v1/breakers", bind(breakers)),
        Route(run + "/retry", bind(retry), methods=["POST"]),
        Route("/v1/breakers/{key:path}/reset", bind(reset_breaker), methods=["POST"]),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        what = {404: f"no route {request.url.path}",
                405: f"{request.method} is not allowed on {request.url.path}"}
        return error_response(exc.status_code, what.get(exc.status_code, str(exc.detail)))

    async def crash(request: Request, exc: Exception) -> Response:
        return error_response(500, f"unexpected error: {type(exc).__name__}")

    return Starlette(
        routes=routes,
        middleware=[Middleware(BearerAuth, token=token)],
        exception_handlers={HTTPException: http_error, Exception: crash},
    )
