"""Event stream latency of `interlock serve`: event -> client, with 1 and with 100 streams.

    python -m benchmarks.serve_sse [--streams 100] [--nodes 40] [--step 20ms]

Starts a real `interlock serve --port 0` on a fresh database, with a generated pipeline: a
half-second delay node (the streams connect meanwhile), then a chain of `--nodes` delay nodes
of `--step` each (so events come spread over time, as in a real
run, not in one burst). Each figure is taken over every event of the run(s): latency is the
client's receive time minus the event's `timestamp_utc` (the moment the engine emitted it, the
same host clock). Three cases:

- own run, 1 stream: the service's own run, its events woken by its manager's live events;
- own run, N streams: N concurrent streams of one own run;
- other process's run, 1 stream: a run of a separate `interlock run`, found by polling the store.

Goal (DESIGN section 8, issue 19): p99 <= 50 ms for own runs, with 100 concurrent streams held.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from engine.events import parse_timestamp

INTERLOCK = str(Path(sys.executable).with_name("interlock"))


def pipeline_yaml(nodes: int, step: str) -> str:
    # The first node waits half a second: the streams connect while it does.
    lines = ["id: sse-chain", "timeout: 10m", "nodes:",
             "  - {id: n0, type: delay, duration: 500ms}"]
    lines += [f"  - {{id: n{i}, type: delay, duration: {step}, needs: [n{i - 1}]}}"
              for i in range(1, nodes + 1)]
    return "\n".join(lines) + "\n"


async def stream(url: str, run_id: str, out: list[float]) -> int:
    """Reads the run's stream to its end; appends the latency (seconds) of each event emitted
    after the stream was open (earlier ones are history, not latency).

    A bare HTTP/1.1 client on asyncio streams: with 100 streams in this one process, httpx's
    own parsing would be what is measured. Each SSE message arrives as one chunk of the
    chunked body, so its `data:` line is whole.
    """
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET /v1/runs/{run_id}/events HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await writer.drain()
    opened = time.time()
    count = 0
    try:
        while line := await reader.readline():
            if line.startswith(b"data: "):
                now = time.time()
                event = json.loads(line[6:])
                emitted = parse_timestamp(event["timestamp_utc"])
                if emitted >= opened:
                    out.append(now - emitted)
                    count += 1
                if event["event_type"] == "run.completed":
                    break
    finally:
        writer.close()
        await writer.wait_closed()
    return count


def figures(name: str, latencies: list[float], streams: int, events: int) -> str:
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

    return (f"{name:36} streams {streams:4}  events {events:6}  p50 {pct(0.50):7.1f} ms  "
            f"p99 {pct(0.99):7.1f} ms  max {ordered[-1] * 1000:7.1f} ms")


async def measure(url: str, db: Path, pipelines: Path, streams: int) -> list[str]:
    rows = []
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        for count in (1, streams):
            launched = await client.post("/v1/runs", json={"pipeline": "sse-chain"})
            run_id = launched.json()["run_id"]
            latencies: list[float] = []
            done = await asyncio.gather(*(stream(url, run_id, latencies) for _ in range(count)))
            rows.append(figures("own run", latencies, count, sum(done)))
        other = await asyncio.create_subprocess_exec(
            INTERLOCK, "run", str(pipelines / "chain.yaml"), "--db", str(db),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        assert other.stdout is not None
        run_id = (await other.stdout.readline()).decode().strip()
        latencies = []
        total = await stream(url, run_id, latencies)
        await other.wait()
        rows.append(figures("another process's run (polled)", latencies, 1, total))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve_sse")
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=40)
    parser.add_argument("--step", default="20ms")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "pipelines"
        folder.mkdir()
        (folder / "chain.yaml").write_text(pipeline_yaml(args.nodes, args.step))
        db = Path(tmp) / "bench.db"
        env = {**os.environ, "INTERLOCK_DB": str(db)}
        env.pop("INTERLOCK_TOKEN", None)
        service = subprocess.Popen(
            [INTERLOCK, "serve", "--port", "0", "--pipelines", str(folder), "--db", str(db)],
            env=env, stderr=subprocess.PIPE, text=True,
        )
        try:
            assert service.stderr is not None
            url = ""
            while not url:
                line = service.stderr.readline()
                if not line:
                    raise SystemExit("interlock serve did not start")
                found = re.search(r"listening on (http://\S+)", line)
                url = found.group(1) if found else ""
            rows = asyncio.run(measure(url, db, folder, args.streams))
        finally:
            service.terminate()
            service.wait(timeout=30)
            if service.stderr is not None:
                service.stderr.close()
    print(f"interlock serve: event -> client latency ({args.nodes} delay nodes of {args.step})")
    for row in rows:
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
