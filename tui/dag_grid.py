"""The DAG widget's pure half: a run's graph, layouts cached per graph, and which cells belong to
which node.

No Textual here: `run_graph` is the one DAG (`engine.graph.Graph`) of a stored run,
`cached_layout` runs in a worker thread, `spans` tells the widget which cells of a grid row to
paint for which node (and where its state glyph goes).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

from engine.graph import Graph
from engine.state import NodeStatus
from tui.layout import Layout, layout_graph

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from engine.state import RunState

# What a layout depends on: node ids, each node's parents, and the labels.
GraphKey = tuple[tuple[str, ...], tuple[tuple[str, ...], ...], tuple[tuple[str, str], ...]]

_CACHE: OrderedDict[tuple[GraphKey, str, bool], Layout] = OrderedDict()
_CACHE_SIZE = 16
_CACHE_LOCK = threading.Lock()


def run_graph(state: RunState) -> Graph:
    """The DAG of a run, from its stored definition (`Graph.from_definition`).

    Nodes the run's events name but its definition does not (a run folded without its
    `run.created`) are added without edges, and a definition that does not make a DAG (a
    store written by hand) is drawn without its edges rather than not at all.
    """
    try:
        graph = Graph.from_definition(state.definition)
    except ValueError:
        graph = Graph([], {})
    if len(graph) == len(state.nodes) and all(node in graph for node in state.nodes):
        return graph
    parents = {node: graph.parents[node] for node in state.nodes if node in graph}
    try:
        return Graph(list(state.nodes), parents)
    except ValueError:
        return Graph(list(state.nodes), {})


def graph_key(graph: Graph, labels: Mapping[str, str] | None = None) -> GraphKey:
    """A value that is equal for graphs drawn alike (the layout cache's key)."""
    nodes = tuple(graph)
    parents = graph.parents
    return nodes, tuple(parents[node] for node in nodes), tuple(sorted((labels or {}).items()))


def cached_layout(
    graph: Graph, mode: str, ascii: bool, labels: Mapping[str, str] | None = None
) -> Layout:
    """Lay a DAG out once per (graph, mode, drawing); later views of it reuse the result, for
    an equal graph too (a run opened again).

    Runs in worker threads; two racing on one graph only cost a duplicate computation.
    """
    key = (graph_key(graph, labels), mode, ascii)
    with _CACHE_LOCK:
        found = _CACHE.get(key)
    if found is not None:
        return found
    result = layout_graph(graph, mode=mode, ascii=ascii, labels=dict(labels or {}) or None)
    with _CACHE_LOCK:
        _CACHE[key] = result
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return result


GROUP_EXTRA = 40  # room right of a groups-mode row for its per-state counts


def spans(result: Layout) -> dict[int, list[tuple[int, int, str, int]]]:
    """Per grid row, the node boxes crossing it: (x start, x end, node id, glyph x or -1)."""
    rows: dict[int, list[tuple[int, int, str, int]]] = {}
    for box in result.boxes.values():
        for y in range(box.y, box.y + box.height):
            glyph_x = box.glyph_x if y == box.glyph_y else -1
            rows.setdefault(y, []).append((box.x, box.x + box.width, box.node_id, glyph_x))
    for row in rows.values():
        row.sort()
    return rows


def layer_counts(layer: Iterable[str], states: Mapping[str, str]) -> list[tuple[str, int]]:
    """How many nodes of a layer are in each state, in the states' natural order."""
    counts: dict[str, int] = {}
    for node_id in layer:
        state = states.get(node_id, NodeStatus.PENDING.value)
        counts[state] = counts.get(state, 0) + 1
    return [(status.value, counts[status.value]) for status in NodeStatus if status.value in counts]
