"""What a layout returns: the grid, the boxes, the edges' cells and the moves between nodes.

Contract: plain frozen values (stdlib only). `Layout.rows` is the drawing, each row exactly
`width` cells; `boxes` says where every node landed; `edge_cells` expands an edge's corner
points into its cells only when asked (`walk`); `neighbours` answers the arrow keys from the
graph's parents and children and where each node was placed. Nothing here lays anything out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "BOXES",
    "COMPACT",
    "GROUPS",
    "MODES",
    "NO_LINKS",
    "Box",
    "Cell",
    "EdgeCells",
    "EdgeKey",
    "Layout",
    "Links",
    "walk",
]

BOXES: Final = "boxes"
COMPACT: Final = "compact"
GROUPS: Final = "groups"
MODES: Final = (BOXES, COMPACT, GROUPS)

Cell = tuple[int, int]
EdgeKey = tuple[str, str]


@dataclass(frozen=True)
class Box:
    """Where one node landed; all coordinates are grid cells (x column, y row)."""

    node_id: str
    layer: int
    order: int
    x: int
    y: int
    width: int
    height: int
    glyph_x: int
    glyph_y: int
    label_x: int
    label_y: int
    label_width: int


@dataclass(frozen=True)
class Links:
    """What the arrow keys move along: each node's parents and children, and its place."""

    parents: Mapping[str, tuple[str, ...]]
    children: Mapping[str, tuple[str, ...]]
    place: Mapping[str, tuple[int, int]]  # node id -> (layer, order)


NO_LINKS: Final = Links(MappingProxyType({}), MappingProxyType({}), MappingProxyType({}))


@dataclass(frozen=True)
class Layout:
    """A laid-out DAG: the drawing, and where everything in it landed.

    ``rows`` is the grid, each row ``width`` characters. ``boxes`` maps every node to its box
    (empty in groups mode, where row ``y`` is layer ``y``). ``layers`` lists the real nodes of
    each layer in drawn order (input order in groups mode). ``edge_cells`` maps every edge to
    the cells of its line in order, from the cell under the parent's box to the arrow head
    over the child's (empty in groups mode); cells where edges cross or join are shared.
    ``crossings`` counts crossing pairs of drawn hops between adjacent layers, a long edge
    counting through its dummy nodes (0 in groups mode, which draws no edges).
    """

    mode: str
    width: int
    height: int
    rows: tuple[str, ...]
    boxes: Mapping[str, Box]
    layers: tuple[tuple[str, ...], ...]
    edge_cells: Mapping[EdgeKey, tuple[Cell, ...]]
    crossings: int
    _graph: Links = field(default=NO_LINKS, repr=False, compare=False)

    def neighbours(self, node_id: str, direction: str) -> str | None:
        """The node selection moves to from ``node_id``, or None at the edge of the graph.

        ``up``/``down`` go to a parent/child (possibly several layers away), preferring the
        one nearest by x; ``left``/``right`` go to the previous/next node in the same layer.
        """
        place = self._graph.place
        if node_id not in place:
            raise KeyError(node_id)
        layer, order = place[node_id]
        if direction in ("left", "right"):
            step = -1 if direction == "left" else 1
            row = self.layers[layer]
            return row[order + step] if 0 <= order + step < len(row) else None
        if direction == "up":
            candidates = self._graph.parents[node_id]
        elif direction == "down":
            candidates = self._graph.children[node_id]
        else:
            raise ValueError(f"direction must be up, down, left or right, not {direction!r}")
        if not candidates:
            return None
        here = self._x(node_id)
        return min(
            candidates,
            key=lambda c: (abs(self._x(c) - here), abs(place[c][0] - layer), self._x(c)),
        )

    def _x(self, node_id: str) -> float:
        box = self.boxes.get(node_id)
        if box is not None:
            return box.x + box.width // 2
        # Groups mode draws no boxes: the position within the layer stands in for x.
        layer, order = self._graph.place[node_id]
        return order / max(1, len(self.layers[layer]) - 1)


class EdgeCells(Mapping[EdgeKey, tuple[Cell, ...]]):
    """Edge -> cells, expanded from a few corner points only when asked for.

    A dense 1,000-node graph has millions of edge cells; the widget highlights one or two
    edges at a time, so paying for all of them up front would dominate the layout time.
    """

    def __init__(self, paths: dict[EdgeKey, tuple[Cell, ...]]) -> None:
        self._paths = paths
        self._cache: dict[EdgeKey, tuple[Cell, ...]] = {}

    def __getitem__(self, key: EdgeKey) -> tuple[Cell, ...]:
        cells = self._cache.get(key)
        if cells is None:
            cells = self._cache[key] = walk(self._paths[key])
        return cells

    def __iter__(self) -> Iterator[EdgeKey]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def __repr__(self) -> str:
        return f"_EdgeCells({len(self._paths)} edges)"


def walk(points: tuple[Cell, ...]) -> tuple[Cell, ...]:
    """Every cell along a path of horizontal and vertical segments through ``points``."""
    cells = [points[0]]
    for (x0, y0), (x1, y1) in pairwise(points):
        if x0 == x1:
            step = 1 if y1 >= y0 else -1
            cells += [(x0, yy) for yy in range(y0 + step, y1 + step, step) if y0 != y1]
        else:
            step = 1 if x1 > x0 else -1
            cells += [(xx, y0) for xx in range(x0 + step, x1 + step, step)]
    return tuple(cells)
