"""x coordinates: where in its layer's row every node (and dummy) of an ordered layering goes.

Contract: pure functions over numbered nodes (real ones below ``n_real``, dummies above, one
cell wide). `assign_x` keeps each layer's order and gaps (two cells between boxes, one beside a
dummy) and pulls every node towards the mean centre of its neighbours in sweeps down and up,
non-overlap solved exactly as isotonic regression (pool adjacent violators); dummies weigh
more and are then lined up, so long edges run straight. The leftmost node ends
at x 0. Rounding is half up, so the result depends only on the input.
"""

from __future__ import annotations

import math
from itertools import pairwise

__all__ = ["assign_x", "dummy_fits", "slots"]


def assign_x(
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
    slot = slots(orders, n_real)

    def fits(d: int, col: int) -> bool:
        return dummy_fits(orders, slot[d], col, x, widths)

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


def slots(orders: list[list[int]], first: int) -> dict[int, tuple[int, int]]:
    """(layer, index) of every node numbered ``first`` or above."""
    return {v: (k, i) for k, layer in enumerate(orders) for i, v in enumerate(layer) if v >= first}


def dummy_fits(
    orders: list[list[int]], slot: tuple[int, int], col: int, x: list[int], widths: list[int]
) -> bool:
    """Whether the dummy at ``slot`` can move to column ``col`` keeping its order and gaps."""
    k, i = slot
    layer = orders[k]
    if i and x[layer[i - 1]] + widths[layer[i - 1]] + 1 > col:
        return False
    return i + 1 == len(layer) or col + 2 <= x[layer[i + 1]]
