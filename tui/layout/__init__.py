"""Layered (Sugiyama-style) layout of a DAG onto a terminal character grid.

Contract: ``layout_graph(graph)`` lays out the one DAG (``engine.graph.Graph``, as the console
gets it from ``Graph.from_definition`` or ``Pipeline.graph``); ``layout(nodes, edges)`` does the
same for plain lists. Both are pure, deterministic functions of their arguments (no Textual, no
I/O). They return a ``Layout``: the whole drawing as ``rows`` of exactly ``width`` characters,
one per terminal cell, plus where every node and edge landed, so the DAG widget can paint a
node's state glyph and recolour its cells when its status changes without laying the graph out
again. ``layout`` raises ``ValueError`` on a cycle, a duplicate node id or an edge naming an
unknown node (a ``Graph`` has none of these). Labels are cut to ``MAX_LABEL`` characters with
an ellipsis; characters that are not one cell wide become ``?``.

Layers are rows of boxes read top to bottom, which suits a terminal scrolled vertically.
The steps are the classic ones, one module each:

1. Layers: the graph's ``levels`` (longest path from the sources).
2. ``order``: a dummy node on every layer an edge skips, so every drawn hop joins adjacent
   layers; barycenter ordering sweeps, down then up, keeping the order with the fewest
   crossings (four iterations; two for big graphs, where each costs O(E log E)).
3. ``place``: x coordinates from sweeps that pull each node towards the mean centre of its
   neighbours, non-overlap solved exactly as isotonic regression; long edges run straight.
4. ``route``: right-angled routing of each parent's edges along one track of the channel
   below its layer.
5. ``draw``: boxes, lines and arrow heads into cells (``model`` holds what is returned).

Edges are taken child by child in the graph's node order, each child's parents in the order
it names them (for ``layout``, in the order given): that order numbers the dummies and so
breaks the ordering's ties.

Why hand-written: no maintained pure-Python library lays a DAG out onto a character grid.
grandalf, the usual pure-Python Sugiyama, is unmaintained and yields float coordinates and
splines, not right-angled routes on cells; Graphviz is a native dependency and also routes
in points, not terminal cells.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from engine.graph import Graph
from tui.layout.draw import MAX_LABEL, draw, label
from tui.layout.model import BOXES, COMPACT, GROUPS, MODES, Box, Layout, Links
from tui.layout.order import Chains, count_crossings, order
from tui.layout.route import MAX_TRACKS

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "BOXES",
    "BOXES_MAX_NODES",
    "COMPACT",
    "COMPACT_MAX_NODES",
    "GROUPS",
    "MAX_LABEL",
    "MAX_TRACKS",
    "MODES",
    "Box",
    "Layout",
    "choose_mode",
    "count_crossings",
    "layout",
    "layout_graph",
]

BOXES_MAX_NODES: Final = 150
COMPACT_MAX_NODES: Final = 600
# Past this many drawn nodes plus hops, two ordering iterations instead of four: there the
# other two buy few crossings for much time (benchmarks/NOTES.md, "Console layout").
_BIG_GRAPH: Final = 4000


def choose_mode(n_nodes: int) -> str:
    """The drawing that stays readable (and fast) for a graph of ``n_nodes``."""
    if n_nodes <= BOXES_MAX_NODES:
        return BOXES
    if n_nodes <= COMPACT_MAX_NODES:
        return COMPACT
    return GROUPS


def layout_graph(
    graph: Graph,
    *,
    mode: str | None = None,
    ascii: bool = False,
    labels: Mapping[str, str] | None = None,
) -> Layout:
    """Lay the graph out; see the module docstring for the contract."""
    edges = [(parent, node) for node in graph for parent in graph.parents[node]]
    links = Links(graph.parents, graph.children, MappingProxyType({}))
    return _lay_out(graph, edges, links, mode=mode, ascii=ascii, labels=labels)


def layout(
    nodes: Sequence[str],
    edges: Iterable[tuple[str, str]],
    *,
    mode: str | None = None,
    ascii: bool = False,
    labels: Mapping[str, str] | None = None,
) -> Layout:
    """Lay out the DAG of ``nodes`` joined by ``edges`` (parent, child), in the order given."""
    ids = list(nodes)
    known: set[str] = set()
    for node in ids:
        if node in known:
            raise ValueError(f"duplicate node id {node!r}")
        known.add(node)
    pairs: dict[tuple[str, str], None] = {}
    for source, target in edges:
        if source not in known or target not in known:
            missing = source if source not in known else target
            raise ValueError(f"edge {source!r} -> {target!r} names unknown node {missing!r}")
        pairs[source, target] = None
    parents: dict[str, list[str]] = {node: [] for node in ids}
    children: dict[str, list[str]] = {node: [] for node in ids}
    for source, target in pairs:
        parents[target].append(source)
        children[source].append(target)
    try:
        graph = Graph(ids, parents)
    except ValueError as exc:  # the only error left is a cycle
        raise ValueError(f"the graph has a {exc}") from None
    links = Links(
        MappingProxyType({node: tuple(p) for node, p in parents.items()}),
        MappingProxyType({node: tuple(c) for node, c in children.items()}),
        MappingProxyType({}),
    )
    return _lay_out(graph, list(pairs), links, mode=mode, ascii=ascii, labels=labels)


def _lay_out(
    graph: Graph,
    edges: list[tuple[str, str]],
    links: Links,
    *,
    mode: str | None,
    ascii: bool,
    labels: Mapping[str, str] | None,
) -> Layout:
    ids = graph.nodes
    mode = choose_mode(len(ids)) if mode is None else mode
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    levels = graph.levels
    if mode == GROUPS:
        return _groups(levels, links)

    # Internal nodes are ints: 0..n-1 real (in the graph's order), then dummies in edge order.
    index = {node: i for i, node in enumerate(ids)}
    pairs = [(index[a], index[b]) for a, b in edges]
    parents: list[list[int]] = [[] for _ in ids]
    for a, b in pairs:
        parents[b].append(a)
    layer_of = [0] * len(ids)
    for k, level in enumerate(levels):
        for node in level:
            layer_of[index[node]] = k
    drawn = Chains(pairs, parents, layer_of)
    orders, crossings = order(
        drawn.layers(len(levels)),
        drawn.up,
        drawn.down,
        iterations=2 if drawn.hops() > _BIG_GRAPH else 4,
    )
    texts = [label(labels.get(node, node) if labels else node, ascii=ascii) for node in ids]
    return draw(ids, texts, orders, drawn, crossings, links, mode, ascii)


def _groups(levels: list[list[str]], links: Links) -> Layout:
    """One line per layer: how many nodes it has (row ``y`` is layer ``y``)."""
    digits = len(str(max(len(levels) - 1, 0)))
    lines = [
        f"L{k:<{digits}}  {len(m)} node{'' if len(m) == 1 else 's'}" for k, m in enumerate(levels)
    ]
    width = max(map(len, lines), default=0)
    place = {node: (k, i) for k, m in enumerate(levels) for i, node in enumerate(m)}
    return Layout(
        mode=GROUPS,
        width=width,
        height=len(lines),
        rows=tuple(line.ljust(width) for line in lines),
        boxes=MappingProxyType({}),
        layers=tuple(tuple(m) for m in levels),
        edge_cells=MappingProxyType({}),
        crossings=0,
        _graph=Links(links.parents, links.children, MappingProxyType(place)),
    )
