"""W3C trace context for runs, derived from ids alone (no OpenTelemetry import, no I/O).

Contract: a run is one trace and every node attempt one span in it, with ids any process can
compute from the run id, node id and attempt: the trace id is the run id when that is 32 hex
digits (as `new_id` makes them), else a hash of it; span ids are 64-bit hashes. So the service
that records the spans (`tui.serve.tracing`) and the engine that hands `TRACEPARENT` to a shell
node agree without sharing state. `ENABLED` is switched on by a process that exports spans;
only then do shell nodes get `TRACEPARENT` (a parent that no one records would mislead).
"""

from __future__ import annotations

import hashlib

ENABLED = False


def _hash(text: str, bits: int) -> int:
    value = int.from_bytes(hashlib.sha256(text.encode()).digest()[: bits // 8], "big")
    return value or 1  # an all-zero id is invalid in W3C trace context


def trace_id(run_id: str) -> int:
    if len(run_id) == 32:
        try:
            value = int(run_id, 16)
        except ValueError:
            pass
        else:
            if value:
                return value
    return _hash(run_id, 128)


def run_span_id(run_id: str) -> int:
    return _hash(f"{run_id}/run", 64)


def attempt_span_id(run_id: str, node_id: str, attempt: int) -> int:
    return _hash(f"{run_id}/{node_id}/{attempt}", 64)


def traceparent(run_id: str, node_id: str, attempt: int) -> str:
    """The `TRACEPARENT` value naming the node attempt's span (sampled)."""
    return f"00-{trace_id(run_id):032x}-{attempt_span_id(run_id, node_id, attempt):016x}-01"
