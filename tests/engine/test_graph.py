"""The DAG: deterministic order and levels, reachability, and cycles named in order."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from engine.graph import Graph, find_cycle, find_cycles
from engine.loader import load_dict, load_file

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "pipelines"


def graph_of(name: str) -> Graph:
    return Graph.from_pipeline(load_file(DATA / name))


def test_order_of_a_linear_graph() -> None:
    graph = graph_of("linear.yaml")
    assert graph.order == ["extract", "transform", "load"]
    assert graph.levels == [["extract"], ["transform"], ["load"]]
    assert (graph.sources, graph.sinks) == (["extract"], ["load"])


def test_order_of_a_branching_graph() -> None:
    graph = graph_of("branching.yaml")
    assert graph.order == ["extract", "enough_rows", "load", "alert", "report"]
    assert graph.levels == [["extract"], ["enough_rows"], ["load", "alert"], ["report"]]
    assert graph.children["enough_rows"] == ("load", "alert")
    assert graph.parents["report"] == ("load", "alert")


def test_levels_group_nodes_by_their_longest_path_from_a_source() -> None:
    graph = Graph(
        ["a", "b", "c", "d"],
        {"b": ["a"], "c": ["b"], "d": ["a", "c"]},  # d is one step from a but three via c
    )
    assert graph.levels == [["a"], ["b"], ["c"], ["d"]]


def test_ties_in_the_order_go_to_the_earlier_node_in_the_file() -> None:
    graph = Graph(["z", "y", "x", "w"], {"w": ["z"], "x": ["z"]})
    assert graph.order == ["z", "y", "x", "w"]
    graph = Graph(["late", "early_child", "root"], {"early_child": ["root"]})
    assert graph.order == ["late", "root", "early_child"]


def test_diamond_parents_children_and_reachability() -> None:
    graph = graph_of("diamond.yaml")
    assert graph.nodes == ["top", "left", "right", "bottom"]
    assert graph.children["top"] == ("left", "right")
    assert graph.parents["bottom"] == ("left", "right")
    assert graph.descendants("top") == {"left", "right", "bottom"}
    assert graph.descendants("bottom") == set()
    assert graph.ancestors("bottom") == {"top", "left", "right"}
    assert graph.ancestors("left") == {"top"}
    assert graph.levels == [["top"], ["left", "right"], ["bottom"]]
    assert len(graph) == 4 and "left" in graph and "nowhere" not in graph
    with pytest.raises(KeyError):
        graph.descendants("nowhere")


def test_the_graph_of_a_pipeline_merges_its_edges() -> None:
    graph = graph_of("edges_alias.yaml")
    assert graph.parents == {"a": (), "b": ("a",), "c": ("a", "b")}
    assert graph.order == ["a", "b", "c"]


def test_the_wide_bundled_pipeline_has_six_levels() -> None:
    graph = Graph.from_pipeline(load_file(ROOT / "pipelines" / "wide-200.yaml"))
    assert [len(level) for level in graph.levels] == [1, 48, 50, 50, 50, 1]
    assert (graph.sources, graph.sinks) == (["start"], ["end"])
    assert len(graph.descendants("start")) == 199


def test_find_cycle_returns_the_path_with_its_start_repeated() -> None:
    # b needs a, c needs b, a needs c: a -> b -> c -> a
    assert find_cycle(["a", "b", "c"], {"a": ["c"], "b": ["a"], "c": ["b"]}) == [
        "a",
        "b",
        "c",
        "a",
    ]


def test_find_cycle_starts_at_the_earliest_node_of_the_cycle_in_file_order() -> None:
    parents = {"s1": ["entry", "s3"], "s2": ["s1"], "s3": ["s2"], "exit": ["s3"]}
    for nodes in (["entry", "s1", "s2", "s3", "exit"], ["exit", "s2", "s3", "s1", "entry"]):
        cycle = find_cycle(nodes, parents)
        assert cycle is not None
        assert cycle[0] == cycle[-1] == min({"s1", "s2", "s3"}, key=nodes.index)
        assert len(cycle) == 4


def test_find_cycle_on_an_acyclic_graph_is_none() -> None:
    assert find_cycle(["a", "b", "c"], {"b": ["a"], "c": ["a", "b"]}) is None
    assert find_cycle([], {}) is None


def test_a_node_needing_itself_is_a_cycle() -> None:
    assert find_cycle(["a", "b"], {"b": ["b"]}) == ["b", "b"]


def test_parents_outside_the_node_list_are_ignored_by_find_cycle() -> None:
    assert find_cycle(["a"], {"a": ["ghost"]}) is None


def test_find_cycles_reports_each_independent_cycle_once() -> None:
    parents = {"a": ["b"], "b": ["a"], "c": ["a"], "d": ["e"], "e": ["d"]}
    assert find_cycles(["a", "b", "c", "d", "e"], parents) == [["a", "b", "a"], ["d", "e", "d"]]


def test_find_cycle_is_deterministic() -> None:
    nodes = [f"n{i}" for i in range(30)]
    parents = {node: [nodes[(i + 1) % 30], nodes[(i + 7) % 30]] for i, node in enumerate(nodes)}
    first = find_cycle(nodes, parents)
    assert first is not None
    for _ in range(5):
        assert find_cycle(list(nodes), {k: list(v) for k, v in parents.items()}) == first
    for a, b in itertools.pairwise(first):
        assert a in parents[b], f"{b} needs {a} on the reported path"


def test_a_cyclic_graph_cannot_be_built() -> None:
    with pytest.raises(ValueError, match=r"cycle: a -> b -> a"):
        Graph(["a", "b"], {"a": ["b"], "b": ["a"]})


def test_unknown_parents_and_duplicate_ids_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="needs unknown node 'ghost'"):
        Graph(["a"], {"a": ["ghost"]})
    with pytest.raises(ValueError, match="duplicate node ids: a"):
        Graph(["a", "a"], {})
    with pytest.raises(ValueError, match="unknown nodes: zed"):
        Graph(["a"], {"zed": []})


def test_a_long_chain_neither_recurses_too_deep_nor_slows_down() -> None:
    size = 20_000
    nodes = [f"n{i}" for i in range(size)]
    parents = {nodes[i]: [nodes[i - 1]] for i in range(1, size)}
    graph = Graph(nodes, parents)
    assert graph.order == nodes
    assert len(graph.levels) == size
    parents[nodes[0]] = [nodes[-1]]
    cycle = find_cycle(nodes, parents)
    assert cycle is not None and len(cycle) == size + 1


def test_random_dags_are_ordered_parents_first() -> None:
    rng = random.Random(20240601)
    for _ in range(50):
        size = rng.randint(1, 40)
        nodes = [f"n{i}" for i in range(size)]
        rng.shuffle(nodes)
        rank = {node: i for i, node in enumerate(sorted(nodes, key=lambda n: int(n[1:])))}
        parents = {
            node: [other for other in nodes if rank[other] < rank[node] and rng.random() < 0.2]
            for node in nodes
        }
        graph = Graph(nodes, parents)
        position = {node: i for i, node in enumerate(graph.order)}
        assert sorted(graph.order) == sorted(nodes)
        for node in nodes:
            assert all(position[p] < position[node] for p in parents[node])
            level = next(i for i, lvl in enumerate(graph.levels) if node in lvl)
            expected = 1 + max(
                (next(i for i, lvl in enumerate(graph.levels) if p in lvl) for p in parents[node]),
                default=-1,
            )
            assert level == expected
        assert find_cycle(nodes, parents) is None


def test_a_loaded_pipeline_always_makes_a_graph() -> None:
    pipeline = load_dict(
        {
            "id": "g",
            "nodes": [
                {"id": "a", "type": "trigger"},
                {"id": "b", "type": "parallel", "needs": ["a"]},
                {"id": "c", "type": "parallel"},
            ],
            "edges": [{"from": "c", "to": "b"}],
        }
    )
    graph = Graph.from_pipeline(pipeline)
    assert graph.parents["b"] == ("a", "c")
    assert graph.order == ["a", "c", "b"]
    assert repr(graph) == "Graph(3 nodes, 2 levels)"


async def test_one_graph_serves_the_pipeline_the_scheduler_and_the_fold() -> None:
    from engine import MemorySink, RunManager
    from engine.scheduler import Shape

    pipeline = load_file(Path(__file__).resolve().parents[2] / "pipelines" / "diamond.yaml")
    built = pipeline.__dict__.get("graph")
    assert built is not None  # validation built it (its cycle check) and kept it
    graph = pipeline.graph
    assert graph is built and pipeline.graph is graph  # built once
    assert Shape.of(pipeline).graph is graph
    async with RunManager(sinks=[MemorySink()]) as manager:
        state = await (await manager.start(pipeline))
    assert state.graph is graph  # the run's fold read the same object
    assert list(state.nodes) == graph.nodes
