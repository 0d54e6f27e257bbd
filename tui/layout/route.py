"""Right-angled routing: on which track (row) of the channel below a layer each parent's edges run.

Contract: pure functions over numbered nodes with their centre columns. A parent's edges leave
the bottom centre of its box, run along one track of the channel below and drop into the top
centre of each child. Runs on a track keep a blank cell apart, except a fan-in (parents whose
only child is the same node), which shares one run. A parent whose column another edge drops
through gets the higher track, so an edge never seems to flow on into an unrelated parent's
children; when those rules form a cycle (two edges each dropping where the other rises) a node
moves a column aside (`route` changes ``x`` and ``centre`` in place). Channels are capped at
``MAX_TRACKS`` tracks: past that, in graphs too dense to read anyway, runs overlap and their
lines merge. Ties go to the leftmost run, so the result depends only on the input.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from typing import Final

from tui.layout.place import dummy_fits, slots

__all__ = ["MAX_TRACKS", "route"]

MAX_TRACKS: Final = 32


def route(
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
    slot = slots(orders, 0)
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
                if col >= 0 and col not in near and dummy_fits(orders, slot[d], col, x, widths):
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
