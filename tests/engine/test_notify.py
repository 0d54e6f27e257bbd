"""Notifications: a run's end (and an approval wait) delivered to a real local HTTP server and to
a real command, retried with backoff, bounded in time, recorded as events before run.completed,
and never failing the run."""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest

from engine.manager import RunManager
from engine.state import RunStatus

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from conftest import MakePipeline, Recorder, RunPipeline


class Hook:
    """A webhook receiver on 127.0.0.1 (port 0): answers with `codes` in turn (then 200)."""

    def __init__(self) -> None:
        self.codes: list[int] = []
        self.hang = 0.0
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.received.append((dict(self.headers), json.loads(body)))
                time.sleep(hook.hang)
                code = hook.codes.pop(0) if hook.codes else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=abc"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = Hook()
    yield server
    server.close()


FAILING = {"id": "b", "type": "shell", "command": ["sh", "-c", "echo no >&2; exit 1"]}
WORKING = {"id": "a", "type": "shell", "command": ["echo", "hi"]}


def _types(events: list[Any]) -> list[str]:
    return [e.event_type for e in events]


async def test_a_failed_run_posts_its_summary_once_and_records_it_before_run_completed(
    run_pipeline: RunPipeline, hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "s3cret")
    headers = {"Authorization": {"from_env": "HOOK_TOKEN", "secret": True}, "X-Team": "data"}
    state, events = await run_pipeline({
        "notify": [
            {"on": ["failed", "timeout"], "webhook": hook.url, "headers": headers},
            {"on": ["succeeded"], "webhook": hook.url},
        ],
        "nodes": [WORKING, FAILING],
    })

    assert state.state is RunStatus.FAILED
    [(sent_headers, body)] = hook.received
    assert sent_headers["Authorization"] == "s3cret"
    assert sent_headers["X-Team"] == "data"
    assert body["run_id"] == state.run_id
    assert body["state"] == "failed" and body["notification"] == "failed"
    assert {n["node_id"]: n["state"] for n in body["nodes"]} == {"a": "succeeded", "b": "failed"}
    assert body["reason"] == "failed nodes: b"
    assert _types(events)[-2:] == ["notification.sent", "run.completed"]
    sent = events[-2]
    assert sent.data == {
        "channel": "webhook", "target": hook.url.split("?")[0], "on": "failed",
        "attempts": 1, "status": 200,
    }
    assert "s3cret" not in "".join(e.to_json() for e in events)


async def test_a_webhook_answering_500_is_retried_with_backoff_until_it_takes(
    run_pipeline: RunPipeline, hook: Hook
) -> None:
    hook.codes = [500, 503]
    state, events = await run_pipeline({
        "notify": [{"on": ["succeeded"], "webhook": hook.url, "max_attempts": 3}],
        "nodes": [WORKING],
    })

    assert state.state is RunStatus.SUCCEEDED
    assert len(hook.received) == 3
    [sent] = [e for e in events if e.event_type == "notification.sent"]
    assert sent.data is not None and sent.data["attempts"] == 3


async def test_a_webhook_that_keeps_failing_is_a_failed_notification_and_the_run_still_succeeds(
    run_pipeline: RunPipeline, hook: Hook
) -> None:
    hook.codes = [500, 500]
    state, events = await run_pipeline({
        "notify": [{"on": ["succeeded"], "webhook": hook.url, "max_attempts": 2}],
        "nodes": [WORKING],
    })

    assert state.state is RunStatus.SUCCEEDED
    [failed] = [e for e in events if e.event_type == "notification.failed"]
    assert failed.reason == "HTTP 500"
    assert failed.data is not None and failed.data["attempts"] == 2
    assert _types(events)[-1] == "run.completed"


async def test_a_hanging_webhook_delays_the_run_end_by_its_timeout_at_most(
    run_pipeline: RunPipeline, hook: Hook
) -> None:
    hook.hang = 5.0
    started = time.monotonic()
    state, events = await run_pipeline({
        "notify": [{"on": ["succeeded"], "webhook": hook.url, "timeout": "500ms"}],
        "nodes": [WORKING],
    })

    assert time.monotonic() - started < 4.0  # not the 5 s the hook hangs
    assert state.state is RunStatus.SUCCEEDED
    [failed] = [e for e in events if e.event_type == "notification.failed"]
    assert failed.reason is not None and failed.reason.startswith("gave up after 0.5s")


async def test_a_missing_header_secret_fails_the_notification_naming_the_variable(
    run_pipeline: RunPipeline, hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_SUCH_HOOK_TOKEN", raising=False)
    headers = {"Authorization": {"from_env": "NO_SUCH_HOOK_TOKEN", "secret": True}}
    _, events = await run_pipeline({
        "notify": [{"on": ["succeeded"], "webhook": hook.url, "headers": headers}],
        "nodes": [WORKING],
    })

    [failed] = [e for e in events if e.event_type == "notification.failed"]
    assert failed.reason == (
        "header Authorization: environment variable NO_SUCH_HOOK_TOKEN is not set"
    )
    assert hook.received == []


async def test_a_command_gets_the_summary_on_stdin(
    run_pipeline: RunPipeline, tmp_path: Path
) -> None:
    out = tmp_path / "summary.json"
    copy = f"import sys; open({str(out)!r}, 'w').write(sys.stdin.read())"
    state, events = await run_pipeline({
        "notify": [{"on": ["succeeded"], "command": [sys.executable, "-c", copy]}],
        "nodes": [WORKING],
    })

    body = json.loads(out.read_text())
    assert body["run_id"] == state.run_id and body["state"] == "succeeded"
    [sent] = [e for e in events if e.event_type == "notification.sent"]
    assert sent.data == {
        "channel": "command", "target": sys.executable, "on": "succeeded", "attempts": 1,
        "status": 0,
    }


async def test_a_failing_command_is_retried_then_recorded_as_failed_with_its_stderr(
    run_pipeline: RunPipeline,
) -> None:
    _, events = await run_pipeline({
        "notify": [{"on": ["failed"], "command": ["sh", "-c", "echo pager down >&2; exit 3"],
                    "max_attempts": 2}],
        "nodes": [FAILING],
    })

    [failed] = [e for e in events if e.event_type == "notification.failed"]
    assert failed.reason == "exit 3: pager down"
    assert failed.data is not None and failed.data["attempts"] == 2


async def test_a_command_still_running_at_its_timeout_is_killed_and_recorded_as_failed(
    run_pipeline: RunPipeline,
) -> None:
    started = time.monotonic()
    state, events = await run_pipeline({
        "notify": [{"on": ["succeeded"], "command": ["sleep", "30"], "timeout": "500ms"}],
        "nodes": [WORKING],
    })

    assert time.monotonic() - started < 10.0
    assert state.state is RunStatus.SUCCEEDED
    [failed] = [e for e in events if e.event_type == "notification.failed"]
    assert failed.reason == "gave up after 0.5s (1 attempt)"
    # (the autouse fixture fails the test if the sleep were left running)


async def test_states_not_listed_in_on_notify_nobody(
    run_pipeline: RunPipeline, hook: Hook
) -> None:
    _, events = await run_pipeline({
        "notify": [{"on": ["failed"], "webhook": hook.url}], "nodes": [WORKING],
    })

    assert hook.received == []
    assert not [e for e in events if e.event_type.startswith("notification.")]


async def test_a_simulated_run_notifies_nobody(run_pipeline: RunPipeline, hook: Hook) -> None:
    await run_pipeline(
        {"notify": [{"on": ["succeeded"], "webhook": hook.url}], "nodes": [WORKING]},
        simulate=True,
    )

    assert hook.received == []


async def test_waiting_for_an_approval_notifies_while_the_run_goes_on(
    hook: Hook, recorder: Recorder, make_pipeline: MakePipeline
) -> None:
    pipeline = make_pipeline({
        "notify": [{"on": ["waiting", "succeeded"], "webhook": hook.url}],
        "nodes": [WORKING, {"id": "ok", "type": "approval", "needs": ["a"]}],
    })
    async with RunManager(sinks=[recorder]) as manager:
        handle = await manager.start(pipeline)
        sent = await recorder.wait_for("notification.sent")
        assert not handle.done()  # the delivery did not hold the run
        manager.approve(handle.run_id, "ok", actor="operator:eve")
        state = await handle.wait(10)

    assert state.state is RunStatus.SUCCEEDED
    assert sent.data is not None and sent.data["on"] == "waiting"
    assert [body["notification"] for _, body in hook.received] == ["waiting", "succeeded"]
    assert hook.received[0][1]["waiting_for"] == ["ok"]
    kinds = _types(recorder.of(handle.run_id))
    assert kinds.count("notification.sent") == 2
    assert kinds[-1] == "run.completed"


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({"on": ["failed"]}, "needs exactly one of `webhook: URL` or `command: [...]`"),
        ({"webhook": "http://x/y", "command": ["true"]}, "needs exactly one of"),
        ({"command": ["true"], "headers": {"A": "b"}}, "`headers` go with `webhook`"),
        ({"on": ["exploded"], "command": ["true"]}, "expected 'succeeded', 'failed'"),
        ({"on": [], "command": ["true"]}, "names at least one of its run states"),
        ({"webhook": "ftp://x/y"}, "notify.0.webhook"),
        ({"webhook": "http://u:p@h/x", "headers": {"authorization": "Bearer t"}},
         "URL with credentials (user:password@) and an `Authorization` header"),
    ],
)
def test_a_bad_notify_entry_is_a_validation_error_with_its_reason(
    entry: dict[str, Any], reason: str
) -> None:
    from engine.errors import PipelineValidationError
    from engine.loader import load_dict

    with pytest.raises(PipelineValidationError) as caught:
        load_dict({"id": "x", "notify": [entry], "nodes": [WORKING]}, file="x.yaml")

    assert reason in str(caught.value)


async def test_credentials_in_the_url_alone_are_sent_and_recorded_nowhere(
    run_pipeline: RunPipeline, hook: Hook
) -> None:
    """With no `Authorization` header the URL's credentials are the authentication (Basic);
    with one, the entry is refused (above): httpx would send the URL's in its place."""
    url = hook.url.replace("http://", "http://ops:pw@")
    state, events = await run_pipeline({
        "notify": [{"on": ["succeeded"], "webhook": url, "headers": {"X-Team": "data"}}],
        "nodes": [WORKING],
    })
    assert state.state is RunStatus.SUCCEEDED
    [(sent_headers, _body)] = hook.received
    assert sent_headers["Authorization"] == "Basic " + base64.b64encode(b"ops:pw").decode()
    assert sent_headers["X-Team"] == "data"
    [notified] = [e.data for e in events if e.event_type == "notification.sent"]
    assert notified is not None
    assert notified["target"] == hook.url.split("?")[0]
