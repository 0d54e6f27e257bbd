"""The DAG widget's pure half: layouts cached per graph, and which cells belong to which node.

No Textual here: `cached_layout` runs in a worker thread, `spans` tells the widget which cells
of a grid row to paint for which node (and where its state glyph goes).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

from engine.state import NodeStatus
from tui.layout import Layout, layout

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

Graph = tuple[tuple[str, ...], tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]

_CACHE: OrderedDict[tuple[Graph, str, bool], Layout] = OrderedDict()
_CACHE_SIZE = 16
_CACHE_LOCK = threading.Lock()


def cached_layout(graph: Graph, mode: str, ascii: bool) -> Layout:
    """Lay a DAG out once per (graph, mode, drawing); later views of it reuse the result.

    Runs in worker threads; two racing on one graph only cost a duplicate computation.
    """
    key = (graph, mode, ascii)
    with _CACHE_LOCK:
        found = _CACHE.get(key)
    if found is not None:
        return found
    nodes, edges, labels = graph
    result = layout(nodes, edges, mode=mode, ascii=ascii, labels=dict(labels) or None)
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
