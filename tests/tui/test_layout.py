"""The DAG layout is pure: these tests lay graphs out and read the grid, no app involved."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from itertools import combinations, pairwise

import pytest

from engine.graph import Graph as Dag
from tui.layout import Layout, choose_mode, count_crossings, layout, layout_graph

_N, _S, _W, _E = 1, 2, 4, 8
_LINE_BITS = {
    "│": _N | _S,
    "─": _W | _E,
    "┌": _S | _E,
    "┐": _S | _W,
    "└": _N | _E,
    "┘": _N | _W,
    "├": _N | _S | _E,
    "┤": _N | _S | _W,
    "┬": _S | _W | _E,
    "┴": _N | _W | _E,
    "┼": _N | _S | _W | _E,
    "▼": _N,
}
_STEPS = {_N: (0, -1, _S), _S: (0, 1, _N), _W: (-1, 0, _E), _E: (1, 0, _W)}


@dataclass(frozen=True)
class Graph:
    name: str
    nodes: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]


def _graph(name: str, nodes: list[str], edges: list[tuple[str, str]]) -> Graph:
    return Graph(name, tuple(nodes), tuple(edges))


@pytest.fixture
def chain() -> Graph:
    nodes = ["extract", "transform", "validate", "load", "report"]
    return _graph("chain", nodes, list(pairwise(nodes)))


@pytest.fixture
def diamond() -> Graph:
    return _graph(
        "diamond",
        ["start", "left", "right", "join"],
        [("start", "left"), ("start", "right"), ("left", "join"), ("right", "join")],
    )


@pytest.fixture
def branching() -> Graph:
    """A condition with two branches that join again, and a long edge around them."""
    return _graph(
        "branching",
        ["fetch", "check", "approve", "reject", "notify", "archive"],
        [
            ("fetch", "check"),
            ("check", "approve"),
            ("check", "reject"),
            ("approve", "notify"),
            ("reject", "notify"),
            ("notify", "archive"),
            ("fetch", "archive"),
        ],
    )


@pytest.fixture
def wide_200() -> Graph:
    """A source, 198 middle nodes in three layers of 66, and a sink."""
    middle = [[f"m{k}_{i}" for i in range(66)] for k in range(3)]
    edges = [("source", node) for node in middle[0]]
    for upper, lower in pairwise(middle):
        edges += [(upper[(i * 7) % 66], node) for i, node in enumerate(lower)]
    edges += [(node, "sink") for node in middle[2]]
    return _graph("wide_200", ["source", *(n for layer in middle for n in layer), "sink"], edges)


@pytest.fixture
def random_1000() -> Graph:
    """2,000 distinct edges between random node pairs, pointing from lower to higher index."""
    rng = random.Random(20240601)
    pairs: set[tuple[int, int]] = set()
    while len(pairs) < 2000:
        a, b = sorted(rng.sample(range(1000), 2))
        pairs.add((a, b))
    nodes = [f"task_{i}" for i in range(1000)]
    return _graph("random_1000", nodes, [(nodes[a], nodes[b]) for a, b in sorted(pairs)])


@pytest.fixture(params=["chain", "diamond", "branching", "wide_200"])
def small(request: pytest.FixtureRequest) -> Graph:
    graph: Graph = request.getfixturevalue(request.param)
    return graph


@pytest.fixture(params=["chain", "diamond", "branching", "wide_200", "random_1000"])
def any_graph(request: pytest.FixtureRequest) -> Graph:
    graph: Graph = request.getfixturevalue(request.param)
    return graph


def _lay(
    graph: Graph,
    *,
    mode: str | None = None,
    ascii: bool = False,
    labels: dict[str, str] | None = None,
) -> Layout:
    return layout(graph.nodes, graph.edges, mode=mode, ascii=ascii, labels=labels)


def _centre(lay: Layout, node: str) -> int:
    box = lay.boxes[node]
    return box.x + box.width // 2


def _char(lay: Layout, cell: tuple[int, int]) -> str:
    x, y = cell
    return lay.rows[y][x] if 0 <= y < lay.height and 0 <= x < lay.width else " "


def _box_cells(lay: Layout) -> dict[tuple[int, int], str]:
    cells: dict[tuple[int, int], str] = {}
    for box in lay.boxes.values():
        for y in range(box.y, box.y + box.height):
            for x in range(box.x, box.x + box.width):
                assert (x, y) not in cells, f"{box.node_id} overlaps {cells[x, y]} at {(x, y)}"
                cells[x, y] = box.node_id
    return cells


# --- geometry ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["boxes", "compact"])
def test_no_two_boxes_overlap(any_graph: Graph, mode: str) -> None:
    lay = _lay(any_graph, mode=mode)
    assert set(lay.boxes) == set(any_graph.nodes)
    _box_cells(lay)  # asserts as it paints


@pytest.mark.parametrize("mode", ["boxes", "compact", "groups"])
def test_every_row_is_exactly_the_layout_width(any_graph: Graph, mode: str) -> None:
    lay = _lay(any_graph, mode=mode)
    assert len(lay.rows) == lay.height
    assert {len(row) for row in lay.rows} == {lay.width}


def test_every_edge_goes_forward_in_layer_order(any_graph: Graph) -> None:
    lay = _lay(any_graph, mode="boxes")
    for parent, child in any_graph.edges:
        assert lay.boxes[parent].layer < lay.boxes[child].layer
        assert lay.boxes[parent].y + lay.boxes[parent].height <= lay.boxes[child].y


def test_each_box_sits_in_its_layer_at_its_order(any_graph: Graph) -> None:
    lay = _lay(any_graph, mode="boxes")
    assert sorted(n for layer in lay.layers for n in layer) == sorted(any_graph.nodes)
    for box in lay.boxes.values():
        assert lay.layers[box.layer][box.order] == box.node_id
    for layer in lay.layers:
        xs = [lay.boxes[n].x for n in layer]
        assert xs == sorted(xs)
        assert len({lay.boxes[n].y for n in layer}) == 1


# --- edges -------------------------------------------------------------------------------------


def _check_edge(lay: Layout, parent: str, child: str, inside: dict[tuple[int, int], str]) -> None:
    cells = lay.edge_cells[parent, child]
    top, bottom = lay.boxes[parent], lay.boxes[child]
    assert cells[0] == (_centre(lay, parent), top.y + top.height)
    assert cells[-1] == (_centre(lay, child), bottom.y - 1)
    assert _char(lay, cells[-1]) == "▼"
    if lay.mode == "boxes":
        assert _char(lay, (_centre(lay, parent), top.y + top.height - 1)) == "┬"
    for a, b in pairwise(cells):
        assert abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1, f"{parent}->{child} jumps {a}->{b}"
        direction = next(d for d, (dx, dy, _) in _STEPS.items() if (a[0] + dx, a[1] + dy) == b)
        assert _LINE_BITS[_char(lay, a)] & direction, f"the line breaks at {a}"
        assert _LINE_BITS[_char(lay, b)] & _STEPS[direction][2], f"the line breaks at {b}"
    assert not any(cell in inside for cell in cells), f"{parent}->{child} runs through a box"


@pytest.mark.parametrize("mode", ["boxes", "compact"])
def test_every_edge_runs_from_its_parents_bottom_to_its_childs_top(small: Graph, mode: str) -> None:
    lay = _lay(small, mode=mode)
    inside = _box_cells(lay)
    assert set(lay.edge_cells) == set(small.edges)
    for parent, child in small.edges:
        _check_edge(lay, parent, child, inside)


def test_edges_of_the_random_dag_connect_their_nodes(random_1000: Graph) -> None:
    lay = _lay(random_1000, mode="boxes")
    inside = _box_cells(lay)
    assert len(lay.edge_cells) == len(random_1000.edges)
    for parent, child in random.Random(5).sample(random_1000.edges, 100):
        _check_edge(lay, parent, child, inside)


@pytest.mark.parametrize("mode", ["boxes", "compact"])
def test_the_drawing_has_no_loose_line_ends(any_graph: Graph, mode: str) -> None:
    lay = _lay(any_graph, mode=mode)
    # A one-line node has no border for the line below it to join.
    nodes = _box_cells(lay) if mode == "compact" else {}
    for y, row in enumerate(lay.rows):
        for x, char in enumerate(row):
            if char not in _LINE_BITS or (x, y) in nodes:
                continue
            for direction, (dx, dy, back) in _STEPS.items():
                if _LINE_BITS.get(char, 0) & direction:
                    there = (x + dx, y + dy)
                    joined = _LINE_BITS.get(_char(lay, there), 0) & back or there in nodes
                    assert joined, f"{char!r} at {(x, y)} points at {_char(lay, there)!r}"


@pytest.fixture
def medium_random() -> Graph:
    """60 nodes, each with two parents drawn at random from the nodes before it."""
    rng = random.Random(11)
    nodes = [f"n{i}" for i in range(60)]
    edges = [(nodes[p], nodes[j]) for j in range(1, 60) for p in rng.sample(range(j), min(2, j))]
    return _graph("medium_random", nodes, edges)


@pytest.mark.parametrize("name", ["chain", "diamond", "branching", "wide_200", "medium_random"])
@pytest.mark.parametrize("mode", ["boxes", "compact"])
def test_unrelated_edges_meet_only_where_they_cross(
    name: str, mode: str, request: pytest.FixtureRequest
) -> None:
    graph: Graph = request.getfixturevalue(name)
    lay = _lay(graph, mode=mode)
    passing: dict[tuple[int, int], list[tuple[str, str, frozenset[str]]]] = {}
    for (parent, child), cells in lay.edge_cells.items():
        for i, cell in enumerate(cells):
            steps = [cells[j] for j in (i - 1, i + 1) if 0 <= j < len(cells)]
            axes = frozenset("x" if y == cell[1] else "y" for _, y in steps) or frozenset("y")
            passing.setdefault(cell, []).append((parent, child, axes))
    for cell, edges in passing.items():
        for a, b in combinations(edges, 2):
            if a[0] != b[0] and a[1] != b[1]:  # no shared end: they may only cross here
                assert not a[2] & b[2], f"{a[:2]} and {b[:2]} run together through {cell}"


def test_a_long_edge_bends_only_to_leave_and_to_enter(branching: Graph) -> None:
    cells = _lay(branching).edge_cells["fetch", "archive"]
    steps = [(b[0] - a[0], b[1] - a[1]) for a, b in pairwise(cells)]
    turns = sum(s != t for s, t in pairwise(steps))
    assert turns <= 4  # out to the side, down past the branches, back under to the child


def test_a_fan_in_shares_one_line(wide_200: Graph) -> None:
    lay = _lay(wide_200, mode="boxes")
    sink, parent = lay.boxes["sink"], lay.boxes["m2_0"]
    assert sink.y - (parent.y + parent.height) == 2  # one track and the arrow row


# --- crossings ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["chain", "diamond", "branching"])
def test_simple_graphs_are_drawn_without_crossings(
    name: str, request: pytest.FixtureRequest
) -> None:
    graph: Graph = request.getfixturevalue(name)
    lay = _lay(graph)
    assert lay.crossings == 0
    assert count_crossings(lay.layers, graph.edges) == 0


def test_the_ordering_passes_remove_an_avoidable_crossing() -> None:
    edges = [("a", "d"), ("b", "c")]
    assert count_crossings([["a", "b"], ["c", "d"]], edges) == 1  # the input order crosses
    lay = layout(["a", "b", "c", "d"], edges)
    assert lay.crossings == 0
    assert count_crossings(lay.layers, edges) == 0


def test_count_crossings_counts_pairs_and_spares_shared_endpoints() -> None:
    layers = [["a", "b"], ["c", "d"]]
    complete = [("a", "c"), ("a", "d"), ("b", "c"), ("b", "d")]
    assert count_crossings(layers, complete) == 1
    assert count_crossings(layers, [("a", "c"), ("a", "d")]) == 0
    assert count_crossings([["a"], ["b"], ["c"]], [("a", "c")]) == 0  # not adjacent layers


def test_ordering_cuts_most_crossings_of_the_random_dag(random_1000: Graph) -> None:
    lay = _lay(random_1000, mode="compact")
    naive = _lay(random_1000, mode="groups").layers  # input order, no ordering passes
    assert count_crossings(lay.layers, random_1000.edges) < count_crossings(
        naive, random_1000.edges
    )


# --- modes -------------------------------------------------------------------------------------


def test_a_box_has_a_border_a_reserved_glyph_cell_and_its_label(branching: Graph) -> None:
    lay = _lay(branching, mode="boxes")
    box = lay.boxes["approve"]
    assert (box.height, box.width % 2) == (3, 1)  # odd: the edges meet a true centre
    assert lay.rows[box.y][box.x] == "┌"
    assert lay.rows[box.y + 2][box.x + box.width - 1] == "┘"
    assert lay.rows[box.glyph_y][box.glyph_x] == " "
    assert lay.rows[box.label_y][box.label_x : box.label_x + box.label_width].rstrip() == "approve"


def test_long_labels_are_truncated_with_an_ellipsis() -> None:
    lay = layout(["n"], [], labels={"n": "a rather long node label"})
    box = lay.boxes["n"]
    assert lay.rows[box.label_y][box.label_x : box.label_x + 16] == "a rather long n…"


def test_compact_mode_draws_each_node_on_one_line(branching: Graph) -> None:
    lay = _lay(branching, mode="compact")
    assert lay.mode == "compact"
    for node, box in lay.boxes.items():
        row = lay.rows[box.y]
        assert box.height == 1
        assert (row[box.x], row[box.x + box.width - 1]) == ("[", "]")
        assert row[box.glyph_x] == " "
        assert row[box.label_x : box.label_x + box.label_width].rstrip() == node


def test_groups_mode_draws_one_row_per_layer(branching: Graph) -> None:
    lay = _lay(branching, mode="groups")
    assert lay.boxes == {}
    assert lay.edge_cells == {}
    assert lay.layers == (("fetch",), ("check",), ("approve", "reject"), ("notify",), ("archive",))
    assert lay.height == len(lay.layers)
    assert lay.rows[2].rstrip() == "L2  2 nodes"
    assert lay.rows[0].rstrip() == "L0  1 node"


@pytest.mark.parametrize("mode", ["boxes", "compact", "groups"])
def test_ascii_mode_draws_only_ascii(any_graph: Graph, mode: str) -> None:
    labels = {node: f"étape→{node}" for node in any_graph.nodes[:3]}
    lay = _lay(any_graph, mode=mode, ascii=True, labels=labels)
    assert all(row.isascii() for row in lay.rows)


def test_the_mode_follows_the_node_count(wide_200: Graph) -> None:
    assert [choose_mode(n) for n in (0, 150, 151, 600, 601)] == [
        "boxes",
        "boxes",
        "compact",
        "compact",
        "groups",
    ]
    assert _lay(wide_200).mode == "compact"


def test_an_empty_graph_lays_out_to_an_empty_grid() -> None:
    lay = layout([], [])
    assert (lay.width, lay.height, lay.rows, lay.layers, lay.crossings) == (0, 0, (), (), 0)


# --- navigation --------------------------------------------------------------------------------


def test_neighbours_move_along_the_graph(diamond: Graph) -> None:
    lay = _lay(diamond)
    assert lay.layers[1] == ("left", "right")
    assert lay.neighbours("start", "up") is None
    assert lay.neighbours("start", "down") == "left"  # the nearer child by x
    assert lay.neighbours("left", "right") == "right"
    assert lay.neighbours("right", "right") is None
    assert lay.neighbours("right", "left") == "left"
    assert lay.neighbours("left", "left") is None
    assert lay.neighbours("right", "up") == "start"
    assert lay.neighbours("join", "up") in {"left", "right"}
    assert lay.neighbours("join", "down") is None


def test_up_prefers_the_parent_nearest_by_x(branching: Graph) -> None:
    lay = _lay(branching)
    parent = lay.neighbours("archive", "up")
    here = _centre(lay, "archive")
    assert parent is not None
    assert abs(_centre(lay, parent) - here) == min(
        abs(_centre(lay, p) - here) for p in ("fetch", "notify")
    )


def test_neighbours_work_in_groups_mode_too(diamond: Graph) -> None:
    lay = _lay(diamond, mode="groups")
    assert lay.neighbours("start", "down") == "left"
    assert lay.neighbours("left", "right") == "right"


def test_neighbours_reject_unknown_nodes_and_directions(diamond: Graph) -> None:
    lay = _lay(diamond)
    with pytest.raises(KeyError):
        lay.neighbours("nowhere", "up")
    with pytest.raises(ValueError, match="direction"):
        lay.neighbours("start", "sideways")


# --- contract ----------------------------------------------------------------------------------


def test_a_cycle_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"cycle: .*a"):
        layout(["a", "b", "c"], [("a", "b"), ("b", "c"), ("c", "a")])
    with pytest.raises(ValueError, match="cycle"):
        layout(["a"], [("a", "a")])


def test_an_edge_to_an_unknown_node_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown node 'ghost'"):
        layout(["a"], [("a", "ghost")])


def test_duplicate_nodes_and_unknown_modes_are_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        layout(["a", "a"], [])
    with pytest.raises(ValueError, match="mode"):
        layout(["a"], [], mode="spiral")


def test_the_same_input_gives_the_same_layout(small: Graph) -> None:
    assert _lay(small) == _lay(small)


def test_the_random_dag_lays_out_the_same_every_time(random_1000: Graph) -> None:
    first, second = _lay(random_1000, mode="boxes"), _lay(random_1000, mode="boxes")
    assert (first.rows, first.boxes, first.crossings) == (
        second.rows,
        second.boxes,
        second.crossings,
    )


# --- the one DAG ---------------------------------------------------------------------------------


def _dag(graph: Graph) -> Dag:
    parents: dict[str, list[str]] = {node: [] for node in graph.nodes}
    for source, target in graph.edges:
        parents[target].append(source)
    return Dag(graph.nodes, parents)


@pytest.mark.parametrize("mode", ["boxes", "compact", "groups"])
def test_the_graph_lays_out_as_its_edges_taken_child_by_child(small: Graph, mode: str) -> None:
    dag = _dag(small)
    edges = [(parent, node) for node in dag for parent in dag.parents[node]]
    from_lists = layout(small.nodes, edges, mode=mode)
    from_graph = layout_graph(dag, mode=mode)
    assert (from_graph.rows, from_graph.boxes, from_graph.layers, from_graph.crossings) == (
        from_lists.rows,
        from_lists.boxes,
        from_lists.layers,
        from_lists.crossings,
    )
    assert dict(from_graph.edge_cells) == dict(from_lists.edge_cells)
    moves = ("up", "down", "left", "right")
    some = small.nodes[:40]
    assert [from_graph.neighbours(n, d) for n in some for d in moves] == [
        from_lists.neighbours(n, d) for n in some for d in moves
    ]


def test_layers_are_the_graphs_levels(branching: Graph) -> None:
    dag = _dag(branching)
    lay = layout_graph(dag, mode="groups")
    assert [list(layer) for layer in lay.layers] == dag.levels
    boxes = layout_graph(dag)
    assert [sorted(layer) for layer in boxes.layers] == [sorted(level) for level in dag.levels]


@pytest.mark.parametrize("name", ["wide_200", "random_1000"])
def test_large_graphs_lay_out_within_the_time_budget(
    name: str, request: pytest.FixtureRequest
) -> None:
    graph: Graph = request.getfixturevalue(name)
    started = time.perf_counter()
    _lay(graph, mode="boxes")
    elapsed = time.perf_counter() - started
    # The benchmark target is 1 s on a slow 2-core machine; 2 s leaves room for a loaded CI box.
    assert elapsed < 2.0, f"{name} took {elapsed:.2f}s"
