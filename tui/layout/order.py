"""Layering and ordering: which layer every node sits in, and its place within the layer.

Contract: pure functions over nodes numbered 0..n-1 (real nodes, in file order) with their
edges as (parent, child) number pairs. `Chains` adds a dummy node (numbered n and up,
in edge order) on every layer an edge skips, so every drawn hop joins adjacent layers, and
returns each edge's chain of nodes. `order` runs barycenter sweeps, down then up, and keeps the
order with the fewest crossings; ties keep the earlier order, so the result depends only on the
input. `count_crossings` counts crossing pairs of edges between adjacent layers.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Hashable
from itertools import pairwise
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = ["Chains", "count_crossings", "order"]

_H = TypeVar("_H", bound=Hashable)


class Chains:
    """The drawn graph: real nodes and dummies, each one's neighbours a layer up and down.

    ``up[v]``/``down[v]`` are the nodes one layer above/below ``v`` that it is joined to,
    ``chains`` every edge as the nodes it passes through (parent, dummies, child), and
    ``layer_of`` every node's layer, dummies included.
    """

    def __init__(
        self, pairs: Iterable[tuple[int, int]], parents: list[list[int]], layer_of: list[int]
    ) -> None:
        n = len(parents)
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
        self.up = up
        self.down = down
        self.chains = chains
        self.layer_of = layer_of

    def hops(self) -> int:
        """Drawn nodes plus drawn hops: what the ordering's cost grows with."""
        return len(self.layer_of) + sum(len(c) - 1 for c in self.chains)

    def layers(self, n_layers: int) -> list[list[int]]:
        """Every layer's nodes in number order: real nodes in file order, then dummies."""
        orders: list[list[int]] = [[] for _ in range(n_layers)]
        for v, k in enumerate(self.layer_of):
            orders[k].append(v)
        return orders


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


def order(
    orders: list[list[int]], up: list[list[int]], down: list[list[int]], *, iterations: int
) -> tuple[list[list[int]], int]:
    """The layers reordered to cut crossings, and how many crossings are left."""
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
