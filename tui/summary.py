"""`interlock summary`: a human summary of a folded run (pure: state in, text out)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.events import parse_timestamp
from tui.escape import printable
from tui.format import duration

if TYPE_CHECKING:
    from collections.abc import Sequence

    from engine.state import NodeState, RunState


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return max(0.0, parse_timestamp(end) - parse_timestamp(start))


format_seconds = duration  # the console's spelling: one for every duration shown


def node_duration(node: NodeState) -> float | None:
    """Seconds the node's attempts ran in all (backoff waits excluded)."""
    total = 0.0
    seen = False
    for record in node.history:
        span = _seconds(record.started_at, record.ended_at)
        if span is not None:
            total += span
            seen = True
    return total if seen else None


def summary_dict(state: RunState, links: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """`links`: the runs made from this one, (run id, 'retry' or 'replay'), from the store."""
    nodes = []
    for node in state.nodes.values():
        item: dict[str, Any] = {
            "node_id": node.node_id,
            "state": node.state.value,
            "attempts": node.attempts,
            "duration": node_duration(node),
        }
        if node.error_class:
            item["error_class"] = node.error_class
        if node.reason:
            item["reason"] = node.reason
        if node.reused_from:
            item["reused_from"] = node.reused_from
        nodes.append(item)
    return {
        "run_id": state.run_id,
        "pipeline_id": state.pipeline_id,
        "state": state.state.value,
        "reason": state.reason,
        "duration": _seconds(state.started_at or state.created_at, state.ended_at),
        "gate_failures": list(state.gate_failures),
        "overrides": list(state.overrides),
        "replay_of": state.replay_of,
        "retry_of": state.retry_of,
        "retries": [run_id for run_id, kind in links if kind == "retry"],
        "replays": [run_id for run_id, kind in links if kind == "replay"],
        "nodes": nodes,
    }


def summary_text(state: RunState, links: Sequence[tuple[str, str]] = ()) -> str:
    data = summary_dict(state, links)
    lines = [
        f"Run {state.run_id} of {state.pipeline_id}: {state.state.value.upper()}"
        + (f" in {format_seconds(data['duration'])}" if data["duration"] is not None else ""),
    ]
    if state.reason:
        lines.append(f"  reason: {state.reason}")
    if state.replay_of:
        lines.append(f"  replay of {state.replay_of}")
    if state.retry_of:
        lines.append(f"  retry of {state.retry_of}")
    lines += [
        f"  {'retried' if kind == 'retry' else 'replayed'} as {run_id}" for run_id, kind in links
    ]
    lines += [f"  GATE FAILED: {g}: {state.nodes[g].reason}" for g in state.gate_failures]
    lines += [f"  override by {o['actor']}: {o['reason']}" for o in state.overrides]
    counts: dict[str, int] = {}
    for node in state.nodes.values():
        counts[node.state.value] = counts.get(node.state.value, 0) + 1
    lines.append("  " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    lines.append("")
    lines.append(f"  {'NODE':28} {'STATE':10} {'TRIES':>5} {'TIME':>8}  ERROR")
    for item in data["nodes"]:
        error = ""
        if item.get("error_class"):
            error = f"{item['error_class']}: {item.get('reason', '')}"
        elif item["state"] == "skipped":
            error = f"({item.get('reason', '')})"
        elif item.get("reused_from"):
            error = f"(reused from {item['reused_from']})"
        lines.append(
            f"  {item['node_id'][:28]:28} {item['state']:10} {item['attempts']:>5} "
            f"{format_seconds(item['duration']):>8}  {error[:120]}"
        )
    # One logical line each: a node's control characters (or newlines) are shown escaped.
    return "\n".join(printable(line) for line in lines)
