"""The DAG of a pipeline: parents, children, a deterministic order, levels, reachability.

Contract: a `Graph` is immutable and always acyclic. It is built from node ids in file order and
each node's parents (`Graph.from_pipeline` merges the top-level `edges` into `needs` through
`Pipeline.needs_of`). Construction raises `ValueError` for a parent that is not a node or for a
cycle (the message names the cycle in order); the loader reports both as validation issues
before a `Graph` is ever built, so a loaded pipeline always makes a valid graph.

Everything is deterministic: where the DAG leaves a choice, file order decides. `order` is the
topological order that takes, at every step, the earliest ready node in the file; `levels`
groups nodes by their longest distance from a source, each level in file order. Ordering uses
the stdlib `graphlib`. Pure: no I/O, no event loop.
"""

from __future__ import annotations

import graphlib
import heapq
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from engine.spec import Pipeline

__all__ = ["Graph", "find_cycle", "find_cycles", "is_acyclic"]


class Graph:
    """An acyclic graph of node ids; edges point from a parent (a need) to its children."""

    def __init__(self, nodes: Sequence[str], parents: Mapping[str, Sequence[str]]) -> None:
        ids = list(nodes)
        index = {node: i for i, node in enumerate(ids)}
        if len(index) != len(ids):
            duplicates = sorted({node for node in ids if ids.count(node) > 1})
            raise ValueError(f"duplicate node ids: {', '.join(duplicates)}")
        unknown = sorted(set(parents) - set(index))
        if unknown:
            raise ValueError(f"parents given for unknown nodes: {', '.join(unknown)}")
        parent_map: dict[str, tuple[str, ...]] = {}
        child_lists: dict[str, list[str]] = {node: [] for node in ids}
        for node in ids:
            given = parents.get(node, ())
            own = tuple(given) if len(given) < 2 else tuple(dict.fromkeys(given))
            for parent in own:
                if parent not in index:
                    raise ValueError(f"node '{node}' needs unknown node '{parent}'")
                child_lists[parent].append(node)
            parent_map[node] = own
        if not _all_ordered(parent_map, child_lists):
            cycle = find_cycle(ids, parent_map)
            raise ValueError(f"cycle: {' -> '.join(cycle or ())}")

        self._nodes = tuple(ids)
        self._index = index
        self._parents = MappingProxyType(parent_map)
        # In file order already: each node was appended to its parents' lists in file order.
        self._children = MappingProxyType(
            {node: tuple(kids) for node, kids in child_lists.items()}
        )
        # Order and levels are worked out on first use: validation and the scheduler need only
        # parents and children, and a 10,000-node file should not pay for a sort it never reads.
        self._order_cache: tuple[str, ...] | None = None
        self._levels_cache: tuple[tuple[str, ...], ...] | None = None

    @classmethod
    def from_pipeline(cls, pipeline: Pipeline) -> Graph:
        """The graph of a validated pipeline (`needs` merged with the top-level `edges`)."""
        return cls(
            [node.id for node in pipeline.nodes],
            {node.id: pipeline.needs_of(node) for node in pipeline.nodes},
        )

    @classmethod
    def from_definition(cls, definition: Mapping[str, Any]) -> Graph:
        """The graph of a stored run's `run.created` definition (the console and the fold read
        runs, not files). Entries that are not nodes, and parents that name no node, are left
        out: a definition in the store was valid when it was written."""
        parents: dict[str, list[str]] = {}
        for raw in definition.get("nodes") or ():
            if isinstance(raw, Mapping) and isinstance(raw.get("id"), str):
                parents[raw["id"]] = [str(n) for n in raw.get("needs") or ()]
        for edge in definition.get("edges") or ():
            if isinstance(edge, Mapping):
                src, dst = edge.get("from"), edge.get("to")
                if isinstance(src, str) and dst in parents:
                    parents[dst].append(src)
        return cls(
            list(parents),
            {node: [p for p in needs if p in parents] for node, needs in parents.items()},
        )

    # -- structure ---------------------------------------------------------------------------

    @property
    def nodes(self) -> list[str]:
        """Node ids in file order."""
        return list(self._nodes)

    @property
    def parents(self) -> Mapping[str, tuple[str, ...]]:
        """`parents[id]`: the nodes `id` needs, in the order they were named."""
        return self._parents

    @property
    def children(self) -> Mapping[str, tuple[str, ...]]:
        """`children[id]`: the nodes that need `id`, in file order."""
        return self._children

    @property
    def order(self) -> list[str]:
        """A topological order; ties go to the node that comes first in the file."""
        return list(self._ordered())

    @property
    def levels(self) -> list[list[str]]:
        """Nodes grouped by the longest path from a source (level 0), each level in file order."""
        return [list(level) for level in self._leveled()]

    @property
    def sources(self) -> list[str]:
        """Nodes without parents, in file order."""
        return [node for node in self._nodes if not self._parents[node]]

    @property
    def sinks(self) -> list[str]:
        """Nodes without children, in file order."""
        return [node for node in self._nodes if not self._children[node]]

    def index(self, node: str) -> int:
        """The position of `node` in the file."""
        return self._index[node]

    def descendants(self, node: str) -> set[str]:
        """Every node reachable from `node` through children (not `node` itself)."""
        return self._reach(node, self._children)

    def ancestors(self, node: str) -> set[str]:
        """Every node `node` depends on, directly or not (not `node` itself)."""
        return self._reach(node, self._parents)

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, node: object) -> bool:
        return node in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._nodes)

    def __repr__(self) -> str:
        return f"Graph({len(self._nodes)} nodes, {len(self._leveled())} levels)"

    # -- internals ---------------------------------------------------------------------------

    def _reach(self, start: str, links: Mapping[str, tuple[str, ...]]) -> set[str]:
        if start not in self._index:
            raise KeyError(start)
        seen: set[str] = set()
        stack = list(links[start])
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(links[node])
        return seen

    def _ordered(self) -> tuple[str, ...]:
        if self._order_cache is None:
            self._order_cache = self._topological_order()
        return self._order_cache

    def _leveled(self) -> tuple[tuple[str, ...], ...]:
        if self._levels_cache is None:
            self._levels_cache = self._compute_levels()
        return self._levels_cache

    def _topological_order(self) -> tuple[str, ...]:
        sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
        for node in self._nodes:
            sorter.add(node, *self._parents[node])
        sorter.prepare()
        ready: list[tuple[int, str]] = []
        order: list[str] = []
        while sorter.is_active():
            for node in sorter.get_ready():
                heapq.heappush(ready, (self._index[node], node))
            _, node = heapq.heappop(ready)
            order.append(node)
            sorter.done(node)
        return tuple(order)

    def _compute_levels(self) -> tuple[tuple[str, ...], ...]:
        depth: dict[str, int] = {}
        for node in self._ordered():
            depth[node] = 1 + max((depth[p] for p in self._parents[node]), default=-1)
        levels: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
        for node in self._nodes:
            levels[depth[node]].append(node)
        return tuple(tuple(level) for level in levels)


def is_acyclic(parents: Mapping[str, Sequence[str]]) -> bool:
    """Whether every node can be ordered (Kahn's count): a third of the cost of `find_cycles`,
    which is asked only when this says no, to name the cycles. A parent that is not a key
    keeps its children waiting: the answer is then no, and `find_cycles` has the last word."""
    children: dict[str, list[str]] = {}
    for node, needs in parents.items():
        for parent in needs:
            children.setdefault(parent, []).append(node)
    return _all_ordered(parents, children)


def _all_ordered(
    parents: Mapping[str, Sequence[str]], children: Mapping[str, Sequence[str]]
) -> bool:
    """Kahn's count over both directions of the edges, each already built by the caller."""
    waiting = {node: len(needs) for node, needs in parents.items()}
    ready = [node for node, count in waiting.items() if not count]
    ordered = 0
    while ready:
        node = ready.pop()
        ordered += 1
        for child in children.get(node, ()):
            waiting[child] -= 1
            if not waiting[child]:
                ready.append(child)
    return ordered == len(waiting)


def find_cycle(nodes: Sequence[str], parents: Mapping[str, Sequence[str]]) -> list[str] | None:
    """The first cycle in file order, as a path with its first node repeated at the end.

    `["a", "b", "c", "a"]` means b needs a, c needs b and a needs c (work would flow a -> b -> c
    -> a). Parents that are not in `nodes` are ignored. None if the graph is acyclic.
    """
    cycles = find_cycles(nodes, parents)
    return cycles[0] if cycles else None


def find_cycles(nodes: Sequence[str], parents: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """One cycle per group of mutually dependent nodes, each as `find_cycle` spells it.

    Groups are the graph's strongly connected components with a cycle (including a node that
    needs itself); each cycle starts at the group's earliest node in file order and follows
    children in file order, so the answer is the same on every run.
    """
    ids = list(dict.fromkeys(nodes))
    index = {node: i for i, node in enumerate(ids)}
    children: dict[str, list[str]] = {node: [] for node in ids}
    for node in ids:
        for parent in dict.fromkeys(parents.get(node, ())):
            if parent in index:
                children[parent].append(node)
    for kids in children.values():
        kids.sort(key=index.__getitem__)

    cycles: list[list[str]] = []
    for component in _strongly_connected(ids, children):
        start = min(component, key=index.__getitem__)
        if len(component) == 1 and start not in children[start]:
            continue
        cycles.append(_cycle_through(start, component, children))
    cycles.sort(key=lambda cycle: index[cycle[0]])
    return cycles


def _strongly_connected(ids: list[str], children: Mapping[str, list[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative so that a long chain cannot exhaust the stack."""
    counter = 0
    low: dict[str, int] = {}
    number: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for root in ids:
        if root in number:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, next_child = work.pop()
            if next_child == 0:
                number[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            kids = children[node]
            descended = False
            for i in range(next_child, len(kids)):
                kid = kids[i]
                if kid not in number:
                    work.append((node, i + 1))
                    work.append((kid, 0))
                    descended = True
                    break
                if kid in on_stack:
                    low[node] = min(low[node], number[kid])
            if descended:
                continue
            if low[node] == number[node]:
                component: set[str] = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                components.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return components


def _cycle_through(start: str, component: set[str], children: Mapping[str, list[str]]) -> list[str]:
    """A simple path start -> ... -> start inside one strongly connected component."""
    path = [start]
    visited = {start}
    iterators = [iter(children[start])]
    while iterators:
        for kid in iterators[-1]:
            if kid == start:
                return [*path, start]
            if kid in component and kid not in visited:
                visited.add(kid)
                path.append(kid)
                iterators.append(iter(children[kid]))
                break
        else:
            iterators.pop()
            path.pop()
    raise AssertionError("a strongly connected component always has a cycle")  # pragma: no cover
