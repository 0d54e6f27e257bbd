"""Event streams: every stored event once, in order, resumable, ended by run.completed."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from typing import TYPE_CHECKING, Any

import httpx

from engine.events import parse_timestamp
from serve.conftest import INTERLOCK, PIPELINES, cli, environment, sse_events

if TYPE_CHECKING:
    from pathlib import Path

    from serve.conftest import Serve, ServeProcess


def read_stream(service: ServeProcess, run_id: str, **headers: str) -> list[tuple[int, Any]]:
    with service.client.stream("GET", f"/v1/runs/{run_id}/events", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return sse_events(response.read().decode())


def stored_log(db: Path, run_id: str) -> list[dict[str, Any]]:
    result = cli(db, "events", run_id)
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_a_stream_sends_every_event_once_and_ends_after_run_completed(
    serve: Serve, db: Path
) -> None:
    service = serve()
    run_id = service.launch("greet")
    received = read_stream(service, run_id)  # returns only because the stream ended
    seqs = [seq for seq, _ in received]
    assert seqs == list(range(1, len(seqs) + 1))
    assert received[-1][1]["event_type"] == "run.completed"
    assert [data for _, data in received] == stored_log(db, run_id)
    assert all(seq == data["seq"] for seq, data in received)


def test_a_stream_resumes_after_last_event_id_with_no_gap_and_no_repeat(
    serve: Serve, db: Path
) -> None:
    service = serve()
    run_id = service.launch("gated")
    service.wait_for(run_id, lambda s: s["nodes"]["gate"]["state"] == "waiting")
    first: list[tuple[int, Any]] = []
    with service.client.stream("GET", f"/v1/runs/{run_id}/events") as response:
        lines = response.iter_lines()
        for line in lines:
            if line.startswith("id: "):
                first.append((int(line[4:]), None))
            if len(first) == 3:
                break
    assert [seq for seq, _ in first] == [1, 2, 3]
    assert service.client.post(f"/v1/runs/{run_id}/nodes/gate/approve").status_code == 202
    rest = read_stream(service, run_id, **{"Last-Event-ID": "3"})
    seqs = [1, 2, 3] + [seq for seq, _ in rest]
    assert seqs == list(range(1, len(seqs) + 1))
    assert rest[-1][1]["event_type"] == "run.completed"
    assert len(seqs) == len(stored_log(db, run_id))
    # A client that already has run.completed gets an empty stream that ends at once.
    assert read_stream(service, run_id, **{"Last-Event-ID": str(seqs[-1])}) == []
    bad = service.client.get(f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": "x"})
    assert bad.status_code == 400


def test_a_run_of_another_process_is_streamed_from_the_store(serve: Serve, db: Path) -> None:
    service = serve()
    other = subprocess.Popen(
        [INTERLOCK, "run", str(PIPELINES / "gated.yaml"), "--db", str(db)],
        env=environment(db), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert other.stdout is not None
        run_id = other.stdout.readline().strip()
        service.wait_for(run_id, lambda s: s["nodes"]["gate"]["state"] == "waiting")
        approve = subprocess.Popen(
            [INTERLOCK, "approve", run_id, "gate", "--db", str(db)], env=environment(db),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        received = read_stream(service, run_id)
        assert approve.wait(timeout=30) == 0
        assert other.wait(timeout=30) == 0
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()
        assert other.stdout is not None
        other.stdout.close()
    seqs = [seq for seq, _ in received]
    assert seqs == list(range(1, len(seqs) + 1))
    assert received[-1][1]["data"]["state"] == "succeeded"


def test_a_hundred_concurrent_streams_each_get_the_whole_run(serve: Serve, db: Path) -> None:
    service = serve()
    run_id = service.launch("gated")
    service.wait_for(run_id, lambda s: s["nodes"]["gate"]["state"] == "waiting")

    latencies: list[float] = []

    async def follow(client: httpx.AsyncClient) -> list[int]:
        seqs = []
        async with client.stream("GET", f"/v1/runs/{run_id}/events") as response:
            opened = time.time()
            async for line in response.aiter_lines():
                if line.startswith("id: "):
                    seqs.append(int(line[4:]))
                elif line.startswith("data: "):
                    emitted = parse_timestamp(json.loads(line[6:])["timestamp_utc"])
                    if emitted > opened:
                        latencies.append(time.time() - emitted)
        return seqs

    async def main() -> list[list[int]]:
        limits = httpx.Limits(max_connections=120)
        async with httpx.AsyncClient(base_url=service.url, timeout=60, limits=limits) as client:
            streams = [asyncio.create_task(follow(client)) for _ in range(100)]
            await asyncio.sleep(1.0)  # all open and waiting on the approval
            response = await client.post(f"/v1/runs/{run_id}/nodes/gate/approve")
            assert response.status_code == 202
            return await asyncio.wait_for(asyncio.gather(*streams), timeout=60)

    results = asyncio.run(main())
    expected = list(range(1, len(stored_log(db, run_id)) + 1))
    assert len(results) == 100
    assert all(seqs == expected for seqs in results)
    # The events after the approval reached all 100 clients; a generous bound (the figures
    # are measured by benchmarks/serve_sse.py, not asserted on a loaded machine).
    assert len(latencies) >= 100
    assert max(latencies) < 5.0


def test_on_sigterm_open_streams_end_cleanly_own_runs_with_their_cancel(
    serve: Serve, db: Path
) -> None:
    service = serve()
    own = service.launch("slow")
    service.wait_for(own, lambda s: s["nodes"]["nap"]["state"] == "running")
    other = subprocess.Popen(
        [INTERLOCK, "run", str(PIPELINES / "gated.yaml"), "--db", str(db)],
        env=environment(db), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert other.stdout is not None
        foreign = other.stdout.readline().strip()
        service.wait_for(foreign, lambda s: s["nodes"]["gate"]["state"] == "waiting")

        async def follow(run_id: str) -> str:
            async with (
                httpx.AsyncClient(base_url=service.url, timeout=60) as client,
                client.stream("GET", f"/v1/runs/{run_id}/events") as response,
            ):
                return "".join([chunk async for chunk in response.aiter_text()])

        async def main() -> tuple[str, str]:
            streams = asyncio.gather(follow(own), follow(foreign))
            await asyncio.sleep(1.0)
            service.process.send_signal(signal.SIGTERM)
            own_text, foreign_text = await asyncio.wait_for(streams, timeout=60)
            return own_text, foreign_text

        own_text, foreign_text = asyncio.run(main())
        assert service.stop() == 0
    finally:
        other.kill()
        other.wait()
        assert other.stdout is not None
        other.stdout.close()
    last_own = sse_events(own_text)[-1][1]
    assert last_own["event_type"] == "run.completed"
    assert last_own["data"]["state"] == "cancelled"
    assert foreign_text.rstrip().endswith(": the service is stopping")
    assert "Traceback" not in service.stderr
