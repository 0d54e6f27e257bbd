"""Drawing into cells: the boxes, lines and arrow heads of a placed and routed layering.

Contract: `draw` turns layers (in order), x coordinates and tracks into a `Layout`: rows of
exactly ``width`` characters, one per terminal cell. Lines are drawn as direction bits per
cell, so where edges join the junction character (``┬ ┴ ├ ┤ ┼``) is exact; where two edges
cross they draw ``┼``. `label` makes a node's label one cell per character (wide, zero-width
and control characters become ``?``) and cuts it to ``MAX_LABEL`` characters with an
ellipsis. In ASCII mode only printable ASCII is drawn. Pure: stdlib only.
"""

from __future__ import annotations

import unicodedata
from itertools import pairwise
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from tui.layout.model import BOXES, Box, EdgeCells, Layout, Links
from tui.layout.place import assign_x
from tui.layout.route import route

if TYPE_CHECKING:
    from tui.layout.model import Cell, EdgeKey
    from tui.layout.order import Chains

__all__ = ["MAX_LABEL", "draw", "label"]

MAX_LABEL: Final = 16

_N, _S, _W, _E = 1, 2, 4, 8
_V = _N | _S
# Indexed by the direction bits of a cell: N=1, S=2, W=4, E=8.
_UNICODE_LINES: Final = " │││─┘┐┤─└┌├─┴┬┼"
_ASCII_LINES: Final = " |||-+++-+++-+++"


def draw(
    ids: list[str],
    texts: list[str],
    orders: list[list[int]],
    drawn: Chains,
    crossings: int,
    links: Links,
    mode: str,
    ascii: bool,
) -> Layout:
    """The layout of ``drawn`` (real nodes ``ids`` labelled ``texts``, then dummies) with its
    layers in ``orders``; ``links`` gives the arrow keys their parents and children."""
    layer_of, up, down, chains = drawn.layer_of, drawn.up, drawn.down, drawn.chains
    n = len(ids)
    boxes_mode = mode == BOXES
    band = 3 if boxes_mode else 1
    # Label areas are padded to an odd width so every box has a true centre column.
    label_w = [len(t) | 1 for t in texts]
    widths = [lw + (6 if boxes_mode else 4) for lw in label_w] + [1] * (len(layer_of) - n)
    x = assign_x(orders, widths, up, down, chains, n)
    centre = [xv + w // 2 for xv, w in zip(x, widths, strict=True)]
    tracks = route(orders, down, x, widths, centre)
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
        edge_cells=EdgeCells(paths),
        crossings=crossings,
        _graph=Links(links.parents, links.children, MappingProxyType(place)),
    )


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


def label(text: str, *, ascii: bool) -> str:
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
