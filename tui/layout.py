"""Layered (Sugiyama-style) layout of a DAG onto a terminal character grid.

Contract: ``layout(nodes, edges)`` is a pure, deterministic function of its arguments (stdlib
only, no Textual, no I/O). It returns a ``Layout``: the whole drawing as ``rows`` of exactly
``width`` characters, one per terminal cell, plus where every node and edge landed, so the
DAG widget can paint a node's state glyph and recolour its cells when its status changes
without laying the graph out again. It raises ``ValueError`` on a cycle, a duplicate node id
or an edge naming an unknown node. Labels are cut to ``MAX_LABEL`` characters with an
ellipsis; characters that are not one cell wide become ``?``.

Layers are rows of boxes read top to bottom, which suits a terminal scrolled vertically.
The steps are the classic ones:

1. Layers by longest path from the sources, in ``graphlib.TopologicalSorter`` order.
2. A dummy node on every layer an edge skips, so every drawn hop joins adjacent layers.
3. Barycenter ordering sweeps, down then up, keeping the order with the fewest crossings
   (four iterations; two for big graphs, where each costs O(E log E)).
4. x coordinates from sweeps that pull each node towards the mean centre of its neighbours,
   with non-overlap solved exactly as isotonic regression (pool adjacent violators);
   dummies weigh more and are then lined up, so long edges run straight.
5. Right-angled routing. A parent's edges leave the bottom centre of its box, run along one
   track (row) of the channel below and drop into the top centre of each child, under an
   arrow head. Runs on a track keep a blank cell apart, except a fan-in (parents whose only
   child is the same node), which shares one run. A parent whose column another edge drops
   through gets the higher track, so an edge never seems to flow on into an unrelated
   parent's children; when those rules form a cycle (two edges each dropping where the
   other rises) a node moves a column aside. Channels are capped at ``MAX_TRACKS`` tracks:
   past that, in graphs too dense to read anyway, runs overlap and their lines merge.

Lines are drawn as direction bits per cell, so where edges join the junction character
(``┬ ┴ ├ ┤ ┼``) is exact; where two edges cross they draw ``┼``.

Why hand-written: no maintained pure-Python library lays a DAG out onto a character grid.
grandalf, the usual pure-Python Sugiyama, is unmaintained and yields float coordinates and
splines, not right-angled routes on cells; Graphviz is a native dependency and also routes
in points, not terminal cells.
"""

from __future__ import annotations

import graphlib
import heapq
import math
import unicodedata
from bisect import bisect_left, bisect_right, insort
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, TypeVar

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

__all__ = [
    "BOXES",
    "COMPACT",
    "GROUPS",
    "MODES",
    "Box",
    "Layout",
    "choose_mode",
    "count_crossings",
    "layout",
]

BOXES: Final = "boxes"
COMPACT: Final = "compact"
GROUPS: Final = "groups"
MODES: Final = (BOXES, COMPACT, GROUPS)
BOXES_MAX_NODES: Final = 150
COMPACT_MAX_NODES: Final = 600
MAX_LABEL: Final = 16
MAX_TRACKS: Final = 32
# Past this many drawn nodes plus hops, two ordering iterations instead of four: on a random
# 1,000-node DAG the other two cut crossings by ~4% for ~15% more layout time.
_BIG_GRAPH: Final = 4000

_N, _S, _W, _E = 1, 2, 4, 8
_V = _N | _S
# Indexed by the direction bits of a cell: N=1, S=2, W=4, E=8.
_UNICODE_LINES: Final = " │││─┘┐┤─└┌├─┴┬┼"
_ASCII_LINES: Final = " |||-+++-+++-+++"

Cell = tuple[int, int]
EdgeKey = tuple[str, str]
_H = TypeVar("_H", bound=Hashable)


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
class _Graph:
    parents: Mapping[str, tuple[str, ...]]
    children: Mapping[str, tuple[str, ...]]
    place: Mapping[str, tuple[int, int]]  # node id -> (layer, order)


_NO_GRAPH: Final = _Graph(MappingProxyType({}), MappingProxyType({}), MappingProxyType({}))


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
    _graph: _Graph = field(default=_NO_GRAPH, repr=False, compare=False)

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


class _EdgeCells(Mapping[EdgeKey, tuple[Cell, ...]]):
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
            cells = self._cache[key] = _walk(self._paths[key])
        return cells

    def __iter__(self) -> Iterator[EdgeKey]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def __repr__(self) -> str:
        return f"_EdgeCells({len(self._paths)} edges)"


def choose_mode(n_nodes: int) -> str:
    """The drawing that stays readable (and fast) for a graph of ``n_nodes``."""
    if n_nodes <= BOXES_MAX_NODES:
        return BOXES
    if n_nodes <= COMPACT_MAX_NODES:
        return COMPACT
    return GROUPS


def count_crossings(layers: Sequence[Sequence[_H]], edges: Iterable[tuple[_H, _H]]) -> int:
    """Pairs of edges that cross between adjacent layers, with nodes drawn in ``layers`` order.

    Edges between non-adjacent layers are ignored (a layout counts them through its dummy
    nodes); edges sharing an endpoint never cross.
    """
    where: dict[_H, tuple[int, int]] = {}
    for k, layer in enumerate(layers):
        for i, node in enumerate(layer):
            where[node] = (k, i)
    channels: dict[int, list[tuple[int, int]]] = {}
    for a, b in edges:
        if a not in where or b not in where:
            raise ValueError(f"edge {a!r} -> {b!r} names a node in no layer")
        (ka, ia), (kb, ib) = where[a], where[b]
        if kb == ka + 1:
            channels.setdefault(ka, []).append((ia, ib))
        elif ka == kb + 1:
            channels.setdefault(kb, []).append((ib, ia))
    return sum(_inversions(pairs) for pairs in channels.values())


def layout(
    nodes: Sequence[str],
    edges: Iterable[tuple[str, str]],
    *,
    mode: str | None = None,
    ascii: bool = False,
    labels: Mapping[str, str] | None = None,
) -> Layout:
    """Lay the DAG out; see the module docstring for the contract."""
    ids = list(nodes)
    index: dict[str, int] = {}
    for i, node in enumerate(ids):
        if node in index:
            raise ValueError(f"duplicate node id {node!r}")
        index[node] = i
    pairs: dict[tuple[int, int], None] = {}
    for source, target in edges:
        if source not in index or target not in index:
            missing = source if source not in index else target
            raise ValueError(f"edge {source!r} -> {target!r} names unknown node {missing!r}")
        pairs[index[source], index[target]] = None
    mode = choose_mode(len(ids)) if mode is None else mode
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")

    n = len(ids)
    parents: list[list[int]] = [[] for _ in range(n)]
    children: list[list[int]] = [[] for _ in range(n)]
    for a, b in pairs:
        parents[b].append(a)
        children[a].append(b)
    layer_of = _longest_path_layers(ids, parents)
    n_layers = max(layer_of, default=-1) + 1
    graph = _Graph(
        parents=MappingProxyType({ids[v]: tuple(ids[p] for p in parents[v]) for v in range(n)}),
        children=MappingProxyType({ids[v]: tuple(ids[c] for c in children[v]) for v in range(n)}),
        place=MappingProxyType({}),
    )
    if mode == GROUPS:
        return _groups(ids, layer_of, n_layers, graph)

    # Internal nodes are ints: 0..n-1 real, then dummies in edge order.
    up: list[list[int]] = [list(p) for p in parents]
    down: list[list[int]] = [[] for _ in range(n)]
    chains: list[list[int]] = []
    for a, b in pairs:
        chain = [a]
        for k in range(layer_of[a] + 1, layer_of[b]):
            dummy = len(layer_of)
            layer_of.append(k)
            up.append([chain[-1]])
            down.append([])
            chain.append(dummy)
        chain.append(b)
        for u, v in pairwise(chain):
            down[u].append(v)
        up[b][up[b].index(a)] = chain[-2]
        chains.append(chain)

    orders: list[list[int]] = [[] for _ in range(n_layers)]
    for v, k in enumerate(layer_of):
        orders[k].append(v)
    total = len(layer_of) + sum(len(c) - 1 for c in chains)
    orders, crossings = _order(orders, up, down, iterations=2 if total > _BIG_GRAPH else 4)

    texts = [_label(labels.get(node, node) if labels else node, ascii=ascii) for node in ids]
    return _draw(ids, texts, orders, layer_of, up, down, chains, crossings, graph, mode, ascii)


# --- layering --------------------------------------------------------------------------------


def _longest_path_layers(ids: list[str], parents: list[list[int]]) -> list[int]:
    sorter: graphlib.TopologicalSorter[int] = graphlib.TopologicalSorter()
    for v, ps in enumerate(parents):
        sorter.add(v, *ps)
    try:
        order = list(sorter.static_order())
    except graphlib.CycleError as exc:
        cycle = " -> ".join(ids[v] for v in exc.args[1])
        raise ValueError(f"the graph has a cycle: {cycle}") from None
    layer = [0] * len(ids)
    for v in order:
        for p in parents[v]:
            layer[v] = max(layer[v], layer[p] + 1)
    return layer


def _groups(ids: list[str], layer_of: list[int], n_layers: int, graph: _Graph) -> Layout:
    members: list[list[str]] = [[] for _ in range(n_layers)]
    for v, k in enumerate(layer_of):
        members[k].append(ids[v])
    digits = len(str(max(n_layers - 1, 0)))
    lines = [
        f"L{k:<{digits}}  {len(m)} node{'' if len(m) == 1 else 's'}" for k, m in enumerate(members)
    ]
    width = max(map(len, lines), default=0)
    place = {node: (k, i) for k, m in enumerate(members) for i, node in enumerate(m)}
    return Layout(
        mode=GROUPS,
        width=width,
        height=len(lines),
        rows=tuple(line.ljust(width) for line in lines),
        boxes=MappingProxyType({}),
        layers=tuple(tuple(m) for m in members),
        edge_cells=MappingProxyType({}),
        crossings=0,
        _graph=_Graph(graph.parents, graph.children, MappingProxyType(place)),
    )


# --- ordering --------------------------------------------------------------------------------


def _order(
    orders: list[list[int]], up: list[list[int]], down: list[list[int]], *, iterations: int
) -> tuple[list[list[int]], int]:
    pos = [0] * len(up)
    for layer in orders:
        for i, v in enumerate(layer):
            pos[v] = i
    best = [list(layer) for layer in orders]
    best_crossings = _all_crossings(orders, down, pos)
    for _ in range(iterations):
        if best_crossings == 0:
            break
        for sweep in ("down", "up"):
            ks = range(1, len(orders)) if sweep == "down" else range(len(orders) - 2, -1, -1)
            adj = up if sweep == "down" else down
            for k in ks:
                orders[k] = _barycenter_order(orders[k], adj, pos)
                for i, v in enumerate(orders[k]):
                    pos[v] = i
            crossings = _all_crossings(orders, down, pos)
            if crossings < best_crossings:
                best, best_crossings = [list(layer) for layer in orders], crossings
    return best, best_crossings


def _barycenter_order(layer: list[int], adj: list[list[int]], pos: list[int]) -> list[int]:
    keyed: list[tuple[float, int, int]] = []
    fixed: list[int] = []
    for i, v in enumerate(layer):
        nb = adj[v]
        if nb:
            keyed.append((sum(pos[u] for u in nb) / len(nb), i, v))
        else:
            fixed.append(i)  # no neighbours on that side: keep its slot
    keyed.sort()
    if not fixed:
        return [v for _, _, v in keyed]
    out = [-1] * len(layer)
    for i in fixed:
        out[i] = layer[i]
    rest = iter(keyed)
    return [v if v >= 0 else next(rest)[2] for v in out]


def _all_crossings(orders: list[list[int]], down: list[list[int]], pos: list[int]) -> int:
    return sum(
        _inversions([(pos[u], pos[v]) for u in layer for v in down[u]]) for layer in orders[:-1]
    )


def _inversions(pairs: list[tuple[int, int]]) -> int:
    pairs.sort()
    seen: list[int] = []
    total = 0
    for _, b in pairs:
        total += len(seen) - bisect_right(seen, b)
        insort(seen, b)
    return total


# --- coordinates -----------------------------------------------------------------------------


def _assign_x(
    orders: list[list[int]],
    widths: list[int],
    up: list[list[int]],
    down: list[list[int]],
    chains: list[list[int]],
    n_real: int,
) -> list[int]:
    x = [0] * len(widths)
    offsets: list[list[int]] = []
    for layer in orders:
        off: list[int] = []
        cursor = 0
        for i, v in enumerate(layer):
            if i:
                cursor += 2 if v < n_real and layer[i - 1] < n_real else 1
            off.append(cursor)
            x[v] = cursor
            cursor += widths[v]
        offsets.append(off)
    # A dummy is part of a long edge: weighting it keeps those edges straight at the cost of
    # nudging boxes, which the eye forgives more readily than a staircase.
    weights = [1.0 if v < n_real else 4.0 for v in range(len(widths))]
    last = len(orders) - 1
    for sweep, adj in (("down", up), ("up", down), ("down", up), ("up", down), ("down", up)):
        for k in range(1, last + 1) if sweep == "down" else range(last - 1, -1, -1):
            layer, off = orders[k], offsets[k]
            targets = []
            for i, v in enumerate(layer):
                nb = adj[v]
                half = widths[v] // 2
                centre = sum(x[u] + widths[u] // 2 for u in nb) / len(nb) if nb else x[v] + half
                targets.append(centre - half - off[i])
            fitted = _isotonic(targets, [weights[v] for v in layer])
            for i, v in enumerate(layer):
                x[v] = math.floor(fitted[i] + 0.5) + off[i]
    _straighten(orders, x, widths, chains, n_real)
    shift = min(x, default=0)
    return [xv - shift for xv in x]


def _straighten(
    orders: list[list[int]],
    x: list[int],
    widths: list[int],
    chains: list[list[int]],
    n_real: int,
) -> None:
    """Put each long edge's dummies in one column where the neighbours leave room.

    The sweeps pull dummies towards both ends of their edge, leaving staircases; one column
    (the parent's or child's centre when possible, so the edge bends only once) reads better.
    """
    slot = _slots(orders, n_real)

    def fits(d: int, col: int) -> bool:
        return _dummy_fits(orders, slot[d], col, x, widths)

    for chain in chains:
        dummies = chain[1:-1]
        if not dummies:
            continue
        ends = (x[chain[0]] + widths[chain[0]] // 2, x[chain[-1]] + widths[chain[-1]] // 2)
        cols = [ends[0], *(x[d] for d in dummies), ends[1]]
        bends = sum(a != b for a, b in pairwise(cols))
        candidates = sorted(
            {ends[0], ends[1], *(x[d] for d in dummies)},
            key=lambda c: ((c != ends[0]) + (c != ends[1]), sum(abs(c - x[d]) for d in dummies), c),
        )
        for col in candidates:
            if (col != ends[0]) + (col != ends[1]) >= bends:
                break
            if all(fits(d, col) for d in dummies):
                for d in dummies:
                    x[d] = col
                break


def _isotonic(targets: list[float], weights: list[float]) -> list[float]:
    """Weighted least-squares non-decreasing fit (pool adjacent violators, O(n))."""
    sums: list[float] = []
    mass: list[float] = []
    counts: list[int] = []
    for t, w in zip(targets, weights, strict=True):
        s, m, c = t * w, w, 1
        while sums and sums[-1] / mass[-1] > s / m:
            s, m, c = s + sums.pop(), m + mass.pop(), c + counts.pop()
        sums.append(s)
        mass.append(m)
        counts.append(c)
    out: list[float] = []
    for s, m, c in zip(sums, mass, counts, strict=True):
        out.extend([s / m] * c)
    return out


def _slots(orders: list[list[int]], first: int) -> dict[int, tuple[int, int]]:
    """(layer, index) of every node numbered ``first`` or above."""
    return {v: (k, i) for k, layer in enumerate(orders) for i, v in enumerate(layer) if v >= first}


def _dummy_fits(
    orders: list[list[int]], slot: tuple[int, int], col: int, x: list[int], widths: list[int]
) -> bool:
    """Whether the dummy at ``slot`` can move to column ``col`` keeping its order and gaps."""
    k, i = slot
    layer = orders[k]
    if i and x[layer[i - 1]] + widths[layer[i - 1]] + 1 > col:
        return False
    return i + 1 == len(layer) or col + 2 <= x[layer[i + 1]]


# --- routing ---------------------------------------------------------------------------------


def _assign_tracks(
    layer: list[int], down: list[list[int]], centre: list[int]
) -> tuple[dict[int, int], list[int]]:
    """Parent -> track in the channel below ``layer``; parents that drop straight get none.

    A parent's edges rise in its column x down to its track. Any other edge dropping in x
    must take a lower track: joining the rise would make it seem to flow on to this
    parent's children. That is a hard rule when this parent has no child in x (the join
    would also invent an edge from this parent to that child) and a soft one when it has.
    When the rules form a cycle the soft ones give way first, and the nodes whose moving a
    column aside would dissolve the cycle (children first) are returned with the tracks.
    """
    spans: list[tuple[int, int, int, list[int]]] = []  # lo, hi, parent, child columns
    rises: dict[int, int] = {}  # column -> the bus whose parent rises there
    for v in layer:
        if not down[v]:
            continue
        px = centre[v]
        cols = sorted({centre[c] for c in down[v]})
        if cols == [px]:
            continue
        rises[px] = len(spans)
        spans.append((min(px, cols[0]), max(px, cols[-1]), v, cols))
    above: list[list[int]] = [[] for _ in spans]
    hard = [0] * len(spans)  # unplaced buses each bus must sit below, by rule
    soft = [0] * len(spans)
    for j, (_, _, _, cols) in enumerate(spans):
        for col in cols:
            i = rises.get(col)
            if i is not None and i != j:
                above[i].append(j)
                if col in spans[i][3]:
                    soft[j] += 1
                else:
                    hard[j] += 1
    ready = [(spans[j][0], spans[j][1], j) for j in range(len(spans)) if not hard[j] + soft[j]]
    heapq.heapify(ready)
    by_left = sorted(range(len(spans)), key=lambda j: (spans[j][0], spans[j][1], j))
    placed = [False] * len(spans)
    floor = [0] * len(spans)
    tracks = _Tracks()
    track: dict[int, int] = {}
    clashes: list[int] = []
    for _ in range(len(spans)):
        if ready:
            j = heapq.heappop(ready)[2]
        else:  # a cycle: break it at the leftmost bus held back only by soft rules, if any
            stuck = [q for q in by_left if not placed[q]]
            j = next((q for q in stuck if not hard[q]), stuck[0])
            clashes += _clashing_nodes(stuck, spans, rises, down, centre)
        placed[j] = True
        lo, hi, parent, cols = spans[j]
        fan_in = down[parent][0] if len(down[parent]) == 1 else -1
        t = track[parent] = tracks.place(lo, hi, fan_in, floor[j])
        for k in above[j]:
            if placed[k]:
                continue
            floor[k] = max(floor[k], t + 1)
            if centre[parent] in cols:
                soft[k] -= 1
            else:
                hard[k] -= 1
            if not hard[k] + soft[k]:
                heapq.heappush(ready, (spans[k][0], spans[k][1], k))
    return track, list(dict.fromkeys(clashes))


def _clashing_nodes(
    stuck: list[int],
    spans: list[tuple[int, int, int, list[int]]],
    rises: dict[int, int],
    down: list[list[int]],
    centre: list[int],
) -> list[int]:
    """Children dropping where another stuck bus rises, then parents rising where one drops."""
    rising = {spans[q][2] for q in stuck}
    children = [
        c
        for q in stuck
        for c in down[spans[q][2]]
        if centre[c] in rises and rises[centre[c]] != q and spans[rises[centre[c]]][2] in rising
    ]
    dropping = {col for q in stuck for col in spans[q][3]}
    return children + [spans[q][2] for q in stuck if centre[spans[q][2]] in dropping]


class _Tracks:
    """The horizontal runs of one channel, packed onto its tracks (rows), top first.

    Runs on a track keep a blank cell between them, so a line never seems to continue into
    its neighbour; the exception is a fan-in: edges into one child from parents with no
    other child share one run, which still leads only into that child.
    """

    def __init__(self) -> None:
        self.starts: list[list[int]] = []
        self.ends: list[list[int]] = []
        self.owners: list[list[int]] = []  # the fan-in child a run leads to, or -1
        self.last_end: list[int] = []

    def place(self, lo: int, hi: int, fan_in: int, first: int) -> int:
        """Put the run [lo, hi] on the lowest track >= first with room; return the track."""
        first = min(first, MAX_TRACKS - 1)
        for t in range(first, len(self.starts)):
            if self._join(t, lo, hi, fan_in) or self._add(t, lo, hi, fan_in):
                return t
        t = max(first, len(self.starts))
        if t < MAX_TRACKS:
            while len(self.starts) <= t:
                self.starts.append([])
                self.ends.append([])
                self.owners.append([])
                self.last_end.append(-1)
        else:  # over the cap: overlap on the track that frees up first, merging lines
            t = min(range(first, MAX_TRACKS), key=lambda u: (self.last_end[u], u))
        self._add(t, lo, hi, fan_in, force=True)
        return t

    def _free(self, t: int, lo: int, hi: int) -> bool:
        starts, ends = self.starts[t], self.ends[t]
        i = bisect_left(starts, lo)
        return (not i or ends[i - 1] < lo - 1) and (i == len(starts) or starts[i] > hi + 1)

    def _add(self, t: int, lo: int, hi: int, owner: int, *, force: bool = False) -> bool:
        if not force and not self._free(t, lo, hi):
            return False
        i = bisect_left(self.starts[t], lo)
        self.starts[t].insert(i, lo)
        self.ends[t].insert(i, hi)
        self.owners[t].insert(i, owner)
        self.last_end[t] = max(self.last_end[t], hi)
        return True

    def _join(self, t: int, lo: int, hi: int, fan_in: int) -> bool:
        if fan_in < 0 or fan_in not in self.owners[t]:
            return False
        i = self.owners[t].index(fan_in)
        run = (self.starts[t].pop(i), self.ends[t].pop(i), self.owners[t].pop(i))
        if self._add(t, min(lo, run[0]), max(hi, run[1]), fan_in):
            return True
        self.starts[t].insert(i, run[0])
        self.ends[t].insert(i, run[1])
        self.owners[t].insert(i, run[2])
        return False


# --- drawing ---------------------------------------------------------------------------------


def _draw(
    ids: list[str],
    texts: list[str],
    orders: list[list[int]],
    layer_of: list[int],
    up: list[list[int]],
    down: list[list[int]],
    chains: list[list[int]],
    crossings: int,
    graph: _Graph,
    mode: str,
    ascii: bool,
) -> Layout:
    n = len(ids)
    boxes_mode = mode == BOXES
    band = 3 if boxes_mode else 1
    # Label areas are padded to an odd width so every box has a true centre column.
    label_w = [len(t) | 1 for t in texts]
    widths = [lw + (6 if boxes_mode else 4) for lw in label_w] + [1] * (len(layer_of) - n)
    x = _assign_x(orders, widths, up, down, chains, n)
    centre = [xv + w // 2 for xv, w in zip(x, widths, strict=True)]
    tracks = _route(orders, down, x, widths, centre)
    width = max((xv + w for xv, w in zip(x, widths, strict=True)), default=0)
    top: list[int] = []  # first row of each layer's band
    y = 0
    for k in range(len(orders)):
        top.append(y)
        if k < len(tracks):
            y += band + max(tracks[k].values(), default=-1) + 2  # tracks + arrow row
    height = y + band if orders else 0

    bits: list[dict[int, int]] = [{} for _ in range(height)]
    runs: list[list[tuple[int, int]]] = [[] for _ in range(height)]
    texts_at: list[list[tuple[int, str]]] = [[] for _ in range(height)]
    arrow = "v" if ascii else "▼"

    def vline(col: int, y0: int, y1: int) -> None:
        for row in range(y0, y1 + 1):
            cell = bits[row]
            cell[col] = cell.get(col, 0) | _V

    for k, layer in enumerate(orders[:-1]):
        chan = top[k] + band
        last = top[k + 1] - 1  # the arrow row
        for v in layer:
            if not down[v]:
                continue
            px = centre[v]
            t = tracks[k].get(v)
            drops = sorted({centre[c] for c in down[v]})
            if t is None:
                vline(px, chan, last - 1)
            else:
                row = chan + t
                vline(px, chan, row - 1)
                bits[row][px] = bits[row].get(px, 0) | _N
                runs[row].append((min(px, drops[0]), max(px, drops[-1])))
                for col in drops:
                    bits[row][col] = bits[row].get(col, 0) | _S
                    vline(col, row + 1, last - 1)
            for c in down[v]:
                if c < n:
                    texts_at[last].append((centre[c], arrow))
                else:
                    vline(centre[c], last, last)
    paths: dict[EdgeKey, tuple[Cell, ...]] = {}
    for chain in chains:
        points: list[Cell] = []
        for a, b in pairwise(chain):
            k = layer_of[a]
            chan, last = top[k] + band, top[k + 1] - 1
            t = tracks[k].get(a)
            row = chan if t is None else chan + t
            points += [(centre[a], chan), (centre[a], row), (centre[b], row), (centre[b], last)]
            if b >= n:
                points.append((centre[b], last + band))  # down through the dummy's band
        paths[ids[chain[0]], ids[chain[-1]]] = tuple(points)

    boxes: dict[str, Box] = {}
    place: dict[str, tuple[int, int]] = {}
    real_layers: list[tuple[str, ...]] = []
    for k, layer in enumerate(orders):
        real = [v for v in layer if v < n]
        real_layers.append(tuple(ids[v] for v in real))
        for i, v in enumerate(real):
            node_id, bx, by = ids[v], x[v], top[k]
            place[node_id] = (k, i)
            text = texts[v].ljust(label_w[v])
            if boxes_mode:
                boxes[node_id] = Box(
                    node_id, k, i, bx, by, widths[v], 3, bx + 2, by + 1, bx + 4, by + 1, label_w[v]
                )
                texts_at[by].append((bx, _border(widths[v], "top", False, ascii)))
                texts_at[by + 1].append(
                    (bx, f"{'|' if ascii else '│'}   {text} {'|' if ascii else '│'}")
                )
                texts_at[by + 2].append((bx, _border(widths[v], "bottom", bool(down[v]), ascii)))
            else:
                boxes[node_id] = Box(
                    node_id, k, i, bx, by, widths[v], 1, bx + 1, by, bx + 3, by, label_w[v]
                )
                texts_at[by].append((bx, f"[  {text}]"))
        for v in layer:
            if v >= n:
                vline(centre[v], top[k], top[k] + band - 1)

    lines = _ASCII_LINES if ascii else _UNICODE_LINES
    rows = tuple(_row(width, runs[r], bits[r], texts_at[r], lines) for r in range(height))
    return Layout(
        mode=mode,
        width=width,
        height=height,
        rows=rows,
        boxes=MappingProxyType(boxes),
        layers=tuple(real_layers),
        edge_cells=_EdgeCells(paths),
        crossings=crossings,
        _graph=_Graph(graph.parents, graph.children, MappingProxyType(place)),
    )


def _route(
    orders: list[list[int]],
    down: list[list[int]],
    x: list[int],
    widths: list[int],
    centre: list[int],
) -> list[dict[int, int]]:
    """Tracks for every channel, moving nodes aside (in ``x`` and ``centre``) to dissolve clashes.

    Channels are settled top-down; a move touches the channels above and below the moved
    node, which are settled again.
    """
    slot = _slots(orders, 0)
    tracks: list[dict[int, int]] = [{} for _ in orders[:-1]]
    dirty = set(range(len(tracks)))
    budget = 2 * len(tracks)  # moves are rare; the budget only bounds a pathological graph
    while dirty:
        k = min(dirty)
        dirty.discard(k)
        tracks[k], clashes = _assign_tracks(orders[k], down, centre)
        moved = _nudge(clashes, orders, slot, x, widths, centre) if clashes and budget else -1
        if moved >= 0:
            budget -= 1
            m = slot[moved][0]
            dirty |= {c for c in (m - 1, m) if 0 <= c < len(tracks)}
    return tracks


def _nudge(
    clashes: list[int],
    orders: list[list[int]],
    slot: dict[int, tuple[int, int]],
    x: list[int],
    widths: list[int],
    centre: list[int],
) -> int:
    """Move the first clashing node that can go a column or two aside; -1 if none can.

    A dummy moves alone when its neighbours leave room; otherwise the node and everything
    right of it in its layer shift right. The new centre lines up with no node in the
    layers above and below, so the move cannot start the same clash next door.
    """

    def taken(v: int) -> set[int]:
        k = slot[v][0]
        return {centre[u] for m in (k - 1, k + 1) if 0 <= m < len(orders) for u in orders[m]}

    for d in clashes:
        if widths[d] == 1:  # a dummy
            near = taken(d)
            for step in (1, -1, 2, -2):
                col = x[d] + step
                if col >= 0 and col not in near and _dummy_fits(orders, slot[d], col, x, widths):
                    x[d] = centre[d] = col
                    return d
    for v in clashes:
        near = taken(v)
        step = next((s for s in (1, 2, 3) if centre[v] + s not in near), 0)
        if step:
            k, i = slot[v]
            for u in orders[k][i:]:
                x[u] += step
                centre[u] += step
            return v
    return -1


def _border(width: int, side: str, joined: bool, ascii: bool) -> str:
    if ascii:
        line = "+" + "-" * (width - 2) + "+"
        mid = "+"
    else:
        line = ("┌" + "─" * (width - 2) + "┐") if side == "top" else ("└" + "─" * (width - 2) + "┘")
        mid = "┬"
    if joined:
        line = line[: width // 2] + mid + line[width // 2 + 1 :]
    return line


def _row(
    width: int,
    runs: list[tuple[int, int]],
    bits: dict[int, int],
    texts: list[tuple[int, str]],
    lines: str,
) -> str:
    horizontal = lines[_W | _E]
    if runs:
        pieces, cursor = [], 0
        for lo, hi in sorted(runs):
            if hi < cursor:
                continue
            lo = max(lo, cursor)
            pieces += [" " * (lo - cursor), horizontal * (hi - lo + 1)]
            cursor = hi + 1
        pieces.append(" " * (width - cursor))
        base = "".join(pieces)
    else:
        base = " " * width
    if not bits and not texts:
        return base
    cells = list(base)
    for col, b in bits.items():
        # Runs on one track keep a blank cell between them, so a run neighbour means the
        # same line continues that way.
        if base[col] == horizontal:
            if col > 0 and base[col - 1] == horizontal:
                b |= _W
            if col + 1 < width and base[col + 1] == horizontal:
                b |= _E
        cells[col] = lines[b]
    for col, text in texts:
        cells[col : col + len(text)] = text
    return "".join(cells)


def _walk(points: tuple[Cell, ...]) -> tuple[Cell, ...]:
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


def _label(text: str, *, ascii: bool) -> str:
    """One terminal cell per character: wide, zero-width and control characters become ?."""
    clean = "".join(
        "?"
        if (ascii and not " " <= ch <= "~")
        or (unicodedata.category(ch)[0] in "CZ" and ch != " ")
        or unicodedata.combining(ch)
        or unicodedata.east_asian_width(ch) in "WF"
        else ch
        for ch in text
    )
    if len(clean) > MAX_LABEL:
        clean = clean[: MAX_LABEL - 3] + "..." if ascii else clean[: MAX_LABEL - 1] + "…"
    return clean or "?"
