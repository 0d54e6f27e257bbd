"""What differs between two runs: a pure function over two folded states.

Contract: `diff_runs(a, b)` takes two `RunState`s (each the fold of a run's events, which carry
the run's definition snapshot and params) and returns a `RunDiff`; it does no I/O and never
changes its inputs. `RunDiff.to_dict()` is the `interlock diff --json` object:

- `definition`: nodes added (in B, not A), removed (in A, not B), changed (node id -> the
  fields that differ), and the pipeline-level fields that differ (`timeout`, `defaults`, ...);
- `params`: added, removed and changed (`{name: {"a": .., "b": ..}}`);
- `nodes`: for every node of either run, `state`, `attempts`, `duration` (seconds, first start
  to end, null when it never ran) and `output_hash` (sha256 of the canonical JSON of its output,
  null without one), each as `{"a": .., "b": ..}`, plus `differs`: the names of what differs
  (a duration alone differs when it moved by more than `DURATION_TOLERANCE`);
- `first_divergence`: the first node, in dependency order, whose state or output differs (so
  none of its ancestors differs: it is where the runs went apart), or null;
- `identical`: nothing above differs (durations aside).
"""

from __future__ import annotations

import graphlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.events import parse_timestamp, stable_hash

if TYPE_CHECKING:
    from engine.state import NodeState, RunState

# A duration differs when it moved by more than half and by more than 100 ms: run-to-run noise
# of a loaded machine is not a change worth reporting.
DURATION_TOLERANCE = (0.5, 0.1)


@dataclass(frozen=True)
class NodeDiff:
    node_id: str
    state: tuple[str | None, str | None]
    attempts: tuple[int | None, int | None]
    duration: tuple[float | None, float | None]
    output_hash: tuple[str | None, str | None]
    differs: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        def pair(values: tuple[Any, Any]) -> dict[str, Any]:
            return {"a": values[0], "b": values[1]}

        return {
            "state": pair(self.state),
            "attempts": pair(self.attempts),
            "duration": pair(self.duration),
            "output_hash": pair(self.output_hash),
            "differs": list(self.differs),
        }


@dataclass(frozen=True)
class RunDiff:
    run_a: str
    run_b: str
    pipeline: tuple[str, str]
    state: tuple[str, str]
    nodes_added: tuple[str, ...]
    nodes_removed: tuple[str, ...]
    nodes_changed: dict[str, tuple[str, ...]]
    pipeline_fields_changed: tuple[str, ...]
    params_added: dict[str, Any]
    params_removed: dict[str, Any]
    params_changed: dict[str, tuple[Any, Any]]
    nodes: dict[str, NodeDiff] = field(default_factory=dict)
    first_divergence: str | None = None

    @property
    def definition_changed(self) -> bool:
        return bool(
            self.nodes_added
            or self.nodes_removed
            or self.nodes_changed
            or self.pipeline_fields_changed
        )

    @property
    def params_changed_any(self) -> bool:
        return bool(self.params_added or self.params_removed or self.params_changed)

    @property
    def identical(self) -> bool:
        outcome_differs = any(set(n.differs) - {"duration"} for n in self.nodes.values())
        return not (
            self.definition_changed
            or self.params_changed_any
            or outcome_differs
            or self.state[0] != self.state[1]
        )

    def to_dict(self) -> dict[str, Any]:
        first = None
        if self.first_divergence is not None:
            node = self.nodes[self.first_divergence]
            first = {
                "node_id": node.node_id,
                "differs": [d for d in node.differs if d != "duration"],
                "state": {"a": node.state[0], "b": node.state[1]},
            }
        return {
            "run_a": self.run_a,
            "run_b": self.run_b,
            "pipeline": {"a": self.pipeline[0], "b": self.pipeline[1]},
            "state": {"a": self.state[0], "b": self.state[1]},
            "definition": {
                "changed": self.definition_changed,
                "nodes_added": list(self.nodes_added),
                "nodes_removed": list(self.nodes_removed),
                "nodes_changed": {k: list(v) for k, v in self.nodes_changed.items()},
                "pipeline_fields_changed": list(self.pipeline_fields_changed),
            },
            "params": {
                "added": self.params_added,
                "removed": self.params_removed,
                "changed": {k: {"a": a, "b": b} for k, (a, b) in self.params_changed.items()},
            },
            "nodes": {node_id: node.to_dict() for node_id, node in self.nodes.items()},
            "first_divergence": first,
            "identical": self.identical,
        }


def _node_defs(definition: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each node's definition by id, top-level `edges` folded into its `needs`."""
    nodes: dict[str, dict[str, Any]] = {}
    for raw in definition.get("nodes") or ():
        if isinstance(raw, Mapping) and isinstance(raw.get("id"), str):
            nodes[raw["id"]] = dict(raw)
    for edge in definition.get("edges") or ():
        if isinstance(edge, Mapping) and edge.get("to") in nodes:
            node = nodes[edge["to"]]
            needs = list(node.get("needs") or ())
            if edge.get("from") not in needs:
                node["needs"] = [*needs, edge.get("from")]
    return nodes


def _changed_keys(a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k)))


def duration_of(node: NodeState) -> float | None:
    """Seconds from the node's first start to its end; None if it never ran or has not ended."""
    if node.started_at is None or node.ended_at is None:
        return None
    return round(parse_timestamp(node.ended_at) - parse_timestamp(node.started_at), 6)


def output_hash(node: NodeState) -> str | None:
    return stable_hash(node.output) if node.output is not None else None


def _durations_differ(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is not b
    ratio, floor = DURATION_TOLERANCE
    delta = abs(a - b)
    return delta > floor and delta > ratio * max(a, b)


def _node_diff(node_id: str, a: NodeState | None, b: NodeState | None) -> NodeDiff:
    state = (a.state.value if a else None, b.state.value if b else None)
    attempts = (a.attempts if a else None, b.attempts if b else None)
    duration = (duration_of(a) if a else None, duration_of(b) if b else None)
    hashes = (output_hash(a) if a else None, output_hash(b) if b else None)
    differs = []
    if state[0] != state[1]:
        differs.append("state")
    if attempts[0] != attempts[1]:
        differs.append("attempts")
    if hashes[0] != hashes[1]:
        differs.append("output")
    if _durations_differ(*duration):
        differs.append("duration")
    return NodeDiff(node_id, state, attempts, duration, hashes, tuple(differs))


def _dependency_order(a: Mapping[str, Any], b: Mapping[str, Any], order: list[str]) -> list[str]:
    """Node ids with every node after its needs (in either run), ties in definition order."""
    graph: dict[str, set[str]] = {node_id: set() for node_id in order}
    for defs in (a, b):
        for node_id, raw in defs.items():
            graph[node_id] |= {n for n in raw.get("needs") or () if n in graph}
    sorter = graphlib.TopologicalSorter(graph)
    try:
        sorter.prepare()
    except graphlib.CycleError:  # the two definitions disagree in a way that makes a cycle
        return order
    position = {node_id: i for i, node_id in enumerate(order)}
    result: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.__getitem__)
        result.extend(ready)
        sorter.done(*ready)
    return result


def diff_runs(a: RunState, b: RunState) -> RunDiff:
    """What differs from run `a` to run `b`. Pure."""
    defs_a, defs_b = _node_defs(a.definition), _node_defs(b.definition)
    top_a = {k: v for k, v in a.definition.items() if k not in ("nodes", "edges", "id")}
    top_b = {k: v for k, v in b.definition.items() if k not in ("nodes", "edges", "id")}
    changed = {
        node_id: keys
        for node_id in defs_a.keys() & defs_b.keys()
        if (keys := _changed_keys(defs_a[node_id], defs_b[node_id]))
    }
    order = list(dict.fromkeys([*a.nodes, *b.nodes]))
    nodes = {
        node_id: _node_diff(node_id, a.nodes.get(node_id), b.nodes.get(node_id))
        for node_id in _dependency_order(defs_a, defs_b, order)
    }
    first = next(
        (
            node_id
            for node_id, node in nodes.items()
            if {"state", "output"} & set(node.differs)
        ),
        None,
    )
    params_a, params_b = a.params, b.params
    return RunDiff(
        run_a=a.run_id,
        run_b=b.run_id,
        pipeline=(a.pipeline_id, b.pipeline_id),
        state=(a.state.value, b.state.value),
        nodes_added=tuple(n for n in defs_b if n not in defs_a),
        nodes_removed=tuple(n for n in defs_a if n not in defs_b),
        nodes_changed={n: changed[n] for n in defs_b if n in changed},
        pipeline_fields_changed=_changed_keys(top_a, top_b),
        params_added={k: v for k, v in params_b.items() if k not in params_a},
        params_removed={k: v for k, v in params_a.items() if k not in params_b},
        params_changed={
            k: (params_a[k], params_b[k])
            for k in params_a
            if k in params_b and params_a[k] != params_b[k]
        },
        nodes=nodes,
        first_divergence=first,
    )


def diff_text(diff: RunDiff) -> str:
    """The human form of a diff, for `interlock diff` and the console."""
    lines = [f"A {diff.run_a} ({diff.pipeline[0]}, {diff.state[0]})"]
    lines.append(f"B {diff.run_b} ({diff.pipeline[1]}, {diff.state[1]})")
    if diff.identical:
        lines.append("the runs match: same definition, params, node states and outputs")
    lines.append("")
    lines.append("definition: " + ("changed" if diff.definition_changed else "unchanged"))
    lines.extend(f"  + {node_id} (only in B)" for node_id in diff.nodes_added)
    lines.extend(f"  - {node_id} (only in A)" for node_id in diff.nodes_removed)
    lines.extend(f"  ~ {n}: {', '.join(keys)}" for n, keys in diff.nodes_changed.items())
    if diff.pipeline_fields_changed:
        lines.append(f"  ~ pipeline: {', '.join(diff.pipeline_fields_changed)}")
    lines.append("params: " + ("changed" if diff.params_changed_any else "unchanged"))
    lines.extend(f"  + {key} = {value!r}" for key, value in diff.params_added.items())
    lines.extend(f"  - {key} = {value!r}" for key, value in diff.params_removed.items())
    lines.extend(f"  ~ {k}: {old!r} -> {new!r}" for k, (old, new) in diff.params_changed.items())
    if diff.first_divergence is not None:
        lines.append(f"first divergence: {divergence_text(diff.nodes[diff.first_divergence])}")
    else:
        lines.append("first divergence: none")
    lines.append("")
    lines.append(f"  {'NODE':24} {'STATE A -> B':26} {'TRIES':7} {'TIME A -> B':19} OUTPUT")
    for node in diff.nodes.values():
        mark = "!" if set(node.differs) - {"duration"} else ("~" if node.differs else " ")
        states = f"{node.state[0] or '-'} -> {node.state[1] or '-'}"
        if node.state[0] == node.state[1]:
            states = node.state[0] or "-"
        tries = f"{_num(node.attempts[0])}/{_num(node.attempts[1])}"
        times = f"{_secs(node.duration[0])} -> {_secs(node.duration[1])}"
        output = "differs" if "output" in node.differs else "same"
        if node.output_hash == (None, None):
            output = "-"
        name = node.node_id[:24]
        lines.append(f"{mark} {name:24} {states[:26]:26} {tries:7} {times:19} {output}")
    return "\n".join(lines)


def divergence_text(node: NodeDiff) -> str:
    """`load: succeeded -> failed, output differs`, or `count: output differs (both succeeded)`."""
    a, b = node.state
    if a != b:
        tail = ", output differs" if "output" in node.differs else ""
        return f"{node.node_id}: {a or 'absent'} -> {b or 'absent'}{tail}"
    return f"{node.node_id}: output differs (both {a})"


def _num(value: int | None) -> str:
    return "-" if value is None else str(value)


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.2f}s"
