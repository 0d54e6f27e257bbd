"""DagView: the run's DAG as one scrolling grid, nodes marked and coloured by state."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, ClassVar

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from engine.state import NodeStatus
from tui import format as fmt
from tui.dag_grid import GROUP_EXTRA, GraphKey, cached_layout, graph_key, layer_counts, spans
from tui.layout import BOXES, GROUPS, MODES, Layout, choose_mode

if TYPE_CHECKING:
    from collections.abc import Mapping

    from textual import events

    from engine.graph import Graph

class DagView(ScrollView, can_focus=True):
    """A pipeline's DAG drawn on the terminal grid, one state glyph and colour per node.

    The layout is computed once per graph and mode, off the UI thread, and cached; a state
    change only repaints the cells of the node that changed. Arrow keys move the selection
    along the graph, `enter` opens the selected node, `m` cycles boxes/compact/groups.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "move('up')", "Up", show=False),
        Binding("down", "move('down')", "Down", show=False),
        Binding("j", "move('down')", "Down", show=False),
        Binding("k", "move('up')", "Up", show=False),
        Binding("left", "move('left')", "Left", show=False),
        Binding("right", "move('right')", "Right", show=False),
        Binding("enter", "open", "Open node"),
        Binding("m", "cycle_mode", "DAG mode"),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "dag-view--edge",
        "dag-view--selected",
        *(f"dag-view--{status.value}" for status in NodeStatus),
        "dag-view--cancelling",  # shown, not stored: a running node in its cleanup grace
        "dag-view--orphaned",  # a running node of an interrupted run
    }

    DEFAULT_CSS = """
    DagView {
        height: 1fr;
        background: $surface;
        & > .dag-view--edge { color: $foreground 50%; }
        & > .dag-view--selected { text-style: reverse bold; }
        & > .dag-view--pending { color: $foreground 60%; }
        & > .dag-view--running { color: $accent; text-style: bold; }
        & > .dag-view--retrying { color: $warning; text-style: bold; }
        & > .dag-view--waiting { color: $secondary; text-style: bold; }
        & > .dag-view--succeeded { color: $success; }
        & > .dag-view--failed { color: $error; text-style: bold; }
        & > .dag-view--timed_out { color: $error; }
        & > .dag-view--skipped { color: $foreground 50%; text-style: italic; }
        & > .dag-view--cancelled { color: $warning; }
        & > .dag-view--cancelling { color: $warning; text-style: bold; }
        & > .dag-view--orphaned { color: $warning; text-style: bold italic; }
        &:focus { background-tint: $foreground 3%; }
    }
    """

    mode: reactive[str] = reactive(BOXES, init=False)
    """The drawing: `boxes`, `compact` (one line per node) or `groups` (one line per layer)."""

    selected: reactive[str | None] = reactive(None, init=False)
    """The id of the selected node."""

    class NodeSelected(Message):
        """The selection moved to another node."""

        def __init__(self, dag: DagView, node_id: str) -> None:
            super().__init__()
            self.dag = dag
            self.node_id = node_id

    class NodeOpened(Message):
        """`enter` was pressed on a node: show its detail."""

        def __init__(self, dag: DagView, node_id: str) -> None:
            super().__init__()
            self.dag = dag
            self.node_id = node_id

    def __init__(
        self,
        *,
        ascii: bool = False,
        openable: bool = True,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.ascii = ascii
        self.openable = openable  # False: `enter` has nothing to open (playback)
        self._graph: Graph | None = None
        self._labels: Mapping[str, str] | None = None
        self._key: GraphKey | None = None  # what is drawn: a graph equal to it is not redrawn
        self._layout: Layout | None = None
        self._states: dict[str, str] = {}
        self._rows_of: dict[int, list[tuple[int, int, str, int]]] = {}

    # -- feeding ----------------------------------------------------------------------------------

    @property
    def current_layout(self) -> Layout | None:
        return self._layout

    def set_graph(self, graph: Graph, labels: Mapping[str, str] | None = None) -> None:
        """Show this DAG (laid out in a worker; nothing is drawn until it is ready)."""
        key = graph_key(graph, labels)
        if key == self._key:
            return
        self._graph, self._labels, self._key = graph, labels, key
        self.set_reactive(DagView.mode, choose_mode(len(graph)))
        self._start_layout()

    def select(self, node_id: str) -> None:
        """Select a node (before the layout is ready too: it is kept and scrolled to)."""
        self.selected = node_id

    def set_states(self, states: Mapping[str, str]) -> None:
        """Repaint the nodes whose state changed (never lays the graph out again)."""
        changed = [node for node, state in states.items() if self._states.get(node) != state]
        if not changed:
            return
        self._states.update(states)
        for node_id in changed:
            self._refresh_node(node_id)

    def _start_layout(self) -> None:
        if self._graph is not None:
            work = self._lay_out(self._graph, self.mode)
            self.run_worker(work, exclusive=True, group="dag-layout")

    async def _lay_out(self, graph: Graph, mode: str) -> None:
        result = await asyncio.to_thread(cached_layout, graph, mode, self.ascii, self._labels)
        if graph != self._graph or mode != self.mode:
            return
        self._layout = result
        self._rows_of = spans(result)
        self.virtual_size = Size(result.width + GROUP_EXTRA * (mode == GROUPS), result.height)
        if self.selected is None or self.selected not in graph:
            first = result.layers[0][0] if result.layers and result.layers[0] else None
            if first is not None:
                self.selected = first
        else:
            # Once the new virtual size is in effect: before, the scroll is clamped to the old
            # (empty) one and a selection below the first rows stayed out of view at 80x24.
            self.call_after_refresh(self._scroll_to_selected)
        self.refresh()

    # -- keys -------------------------------------------------------------------------------------

    def action_move(self, direction: str) -> None:
        if self._layout is None or self.selected is None:
            return
        target = self._layout.neighbours(self.selected, direction)
        if target is not None:
            self.selected = target

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.openable or action != "open"

    def action_open(self) -> None:
        if self.selected is not None:
            self.post_message(self.NodeOpened(self, self.selected))

    def action_cycle_mode(self) -> None:
        self.mode = MODES[(MODES.index(self.mode) + 1) % len(MODES)]

    def watch_mode(self) -> None:
        self._start_layout()

    def watch_selected(self, old: str | None, new: str | None) -> None:
        for node_id in (old, new):
            if node_id is not None:
                self._refresh_node(node_id)
        if new is not None:
            self._scroll_to_selected()
            self.post_message(self.NodeSelected(self, new))

    def on_resize(self) -> None:
        self.refresh()
        self.call_after_refresh(self._scroll_to_selected)  # a smaller pane keeps it in view

    def on_click(self, event: events.Click) -> None:
        if self._layout is None:
            return
        x = event.x + self.scroll_offset.x - self._indent
        y = event.y + self.scroll_offset.y
        for box in self._layout.boxes.values():
            if box.x <= x < box.x + box.width and box.y <= y < box.y + box.height:
                self.selected = box.node_id
                return

    # -- drawing ----------------------------------------------------------------------------------

    def _node_region(self, node_id: str) -> tuple[int, int] | None:
        """(first row, row count) of a node in the grid."""
        if self._layout is None:
            return None
        box = self._layout.boxes.get(node_id)
        if box is not None:
            return box.y, box.height
        for index, layer in enumerate(self._layout.layers):
            if node_id in layer:
                return index, 1
        return None

    def _refresh_node(self, node_id: str) -> None:
        region = self._node_region(node_id)
        if region is not None:
            self.refresh_lines(region[0], region[1])

    def _scroll_to_selected(self) -> None:
        if self._layout is None or self.selected is None:
            return
        box = self._layout.boxes.get(self.selected)
        if box is not None:
            region = Region(box.x + self._indent, box.y, box.width, box.height)
            self.scroll_to_region(region, animate=False)
        elif (place := self._node_region(self.selected)) is not None:
            self.scroll_to_region(Region(0, place[0], 1, 1), animate=False)

    def _style(self, state: str) -> Style:
        return self.get_component_rich_style(f"dag-view--{state}", partial=True)

    @property
    def _indent(self) -> int:
        """Columns left of the drawing: a graph narrower than the view is centred in it."""
        if self._layout is None or self._layout.mode == GROUPS:
            return 0
        return max(0, (self.size.width - self._layout.width) // 2)

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        base = self.rich_style
        row_y = scroll_y + y
        if self._layout is None or row_y >= len(self._layout.rows):
            return Strip.blank(width, base)
        text = self._layout.rows[row_y]
        edge = base + self.get_component_rich_style("dag-view--edge", partial=True)
        selected = self.get_component_rich_style("dag-view--selected", partial=True)
        indent = self._indent
        if self._layout.mode == GROUPS:
            origin, segments = 0, self._group_segments(row_y, text, base, edge, selected)
        else:
            # Only what is in view: a wide layer is thousands of cells across (200 nodes side
            # by side), and the line is drawn again whenever the view scrolls.
            start = max(0, scroll_x - indent)
            end = max(start, min(len(text), scroll_x - indent + width))
            origin, segments = self._box_segments(row_y, text, start, end, base, edge, selected)
        origin += indent  # the view's x of the first cell of `segments`
        if origin > scroll_x:
            segments.insert(0, Segment(" " * (origin - scroll_x), base))
            origin = scroll_x
        strip = Strip(segments).crop_extend(scroll_x - origin, scroll_x - origin + width, base)
        return strip.apply_offsets(scroll_x, row_y)

    def _box_segments(
        self, row_y: int, text: str, start: int, end: int, base: Style, edge: Style,
        selected: Style,
    ) -> tuple[int, list[Segment]]:
        """The cells `start:end` of a grid row, as (x of the first cell given, segments): a
        node box across the left edge is given whole."""
        segments: list[Segment] = []
        origin = cursor = start
        for left, right, node_id, glyph_x in self._rows_of.get(row_y, ()):
            if right <= start:
                continue
            if left >= end:
                break
            if left < cursor:  # only the first box can start left of the view
                origin = left
            elif left > cursor:
                segments.append(Segment(text[cursor:left], edge))
            state = self._states.get(node_id, NodeStatus.PENDING.value)
            style = base + self._style(state)
            cells = text[left:right]
            if glyph_x >= 0:
                glyph = fmt.node_glyph(state, ascii=self.ascii)
                # A wide glyph (⌛) takes the blank cell after it, so the box keeps its width.
                at = glyph_x - left
                cells = cells[:at] + glyph + cells[at + cell_len(glyph) :]
            if node_id == self.selected:
                style = style + selected
            segments.append(Segment(cells, style))
            cursor = right
        if cursor < end:
            segments.append(Segment(text[cursor:end], edge))
        return origin, segments

    def _group_segments(
        self, row_y: int, text: str, base: Style, edge: Style, selected: Style
    ) -> list[Segment]:
        assert self._layout is not None
        layer = self._layout.layers[row_y] if row_y < len(self._layout.layers) else ()
        here = base + (selected if self.selected in layer else Style())
        segments = [Segment(text, here)]
        for state, count in layer_counts(layer, self._states):
            glyph = fmt.node_glyph(state, ascii=self.ascii)
            segments.append(Segment(f" {glyph}{count}", self._style(state)))
        return segments
