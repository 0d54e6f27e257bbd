"""The home screen: the pipelines found (with validation badges) and every stored run, live."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Input, Label, Static

from tui import runs as run_views
from tui.screens.base import RUN_BINDINGS, RunActionsScreen
from tui.widgets.pipeline_table import PipelineTable
from tui.widgets.runs_table import RunsTable

if TYPE_CHECKING:
    from textual.app import ComposeResult

    from tui.context import Context
    from tui.messages import PipelinesScanned, RunsListed, RunSummary
    from tui.pipeline_folder import PipelineEntry


def issues_text(entry: PipelineEntry) -> str:
    """The validation errors of an invalid pipeline, one per line, with line and node."""
    if entry.error:
        return f"{entry.path.name}: {entry.error}"
    lines = []
    for issue in entry.issues:
        where = f"line {issue.line}" if issue.line is not None else ""
        node = f"node '{issue.node_id}'" if issue.node_id else ""
        place = ", ".join(p for p in (where, node) if p)
        lines.append(f"{entry.path.name}{': ' + place if place else ''}: {issue.reason}")
    return "\n".join(lines)


LOAD_AHEAD = 50  # rows before the end of the loaded runs at which the next page is read


class HomeScreen(RunActionsScreen):
    """Pipelines on top, runs below. `enter` opens a run (or launches a pipeline)."""

    CSS_PATH = "home.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        *RUN_BINDINGS,
        Binding("slash", "filter", "Filter"),
        Binding("s", "sort", "Sort"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        *(Binding(key, f"quick_filter('{key}')", "Quick filter", show=False)
          for key in ("0", *run_views.QUICK_FILTERS)),
    ]

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._runs: list[RunSummary] = []
        self._sort = run_views.SORT_KEYS[0]
        self._listed = False  # the first list of runs has come
        self._total: int | None = None  # the stored runs matching the filter

    @property
    def pipelines(self) -> PipelineTable:
        return self.query_one("#pipelines", PipelineTable)

    @property
    def runs_table(self) -> RunsTable:
        return self.query_one("#runs", RunsTable)

    @property
    def filter_input(self) -> Input:
        return self.query_one("#runs-filter", Input)

    def compose(self) -> ComposeResult:
        yield Static("", id="title")
        with Vertical(id="pipelines-pane"):
            yield Label("Pipelines", classes="section")
            yield PipelineTable(ascii=self.ctx.ascii, id="pipelines", clock=self.ctx.now)
        yield Static("", id="pipeline-errors")
        yield Label("Runs", id="runs-title", classes="section")
        yield RunsTable(ascii=self.ctx.ascii, id="runs")
        yield Input(
            placeholder="filter all runs: words of id/pipeline/state, state:failed, pipeline:ID",
            id="runs-filter",
        )
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.filter_input.display = False
        self.pipelines.show(self.ctx.entries)
        self._show_runs()
        self.set_interval(1.0, self._tick)
        # The pipelines until the runs are known: on a first start (no runs) that is where the
        # work is, and keys typed before the database answers go there either way.
        self.pipelines.focus()

    def target_run(self) -> str | None:
        return self.runs_table.selected_run

    # -- bridge news ------------------------------------------------------------------------------

    def on_runs_listed(self, message: RunsListed) -> None:
        self._runs = message.runs
        self._total = message.total
        self._show_runs()
        first, self._listed = not self._listed, True
        pipelines = self.pipelines
        if first and message.runs and pipelines.has_focus and pipelines.cursor_row == 0:
            # There are runs, and nobody has moved over the pipelines yet: the runs table is
            # what an operator comes back to (a first start keeps the pipelines).
            self.runs_table.focus()

    def on_pipelines_scanned(self, message: PipelinesScanned) -> None:
        self.pipelines.show(message.entries)
        self._show_errors()

    def _tick(self) -> None:
        self._show_runs()
        table = self.runs_table
        if self.bridge.more_runs and table.scroll_y >= table.max_scroll_y - LOAD_AHEAD > 0:
            self._load_more()  # scrolled (the mouse wheel) near the end without the cursor

    def on_screen_resume(self) -> None:
        self._show_runs()  # what was held back while a run was on view

    def _show_runs(self) -> None:
        if not self.in_sight:
            return
        # The store filters every stored run (`tui.bridge.history`): the runs are those that match.
        shown = self._runs
        query = self.bridge.run_filter
        now = self.ctx.now()
        self.runs_table.show(run_views.sort_runs(shown, self._sort, now), now)
        active = sum(1 for r in self._runs if r.own and r.state not in run_views.SETTLED)
        order = run_views.SORT_ORDER.get(self._sort, "")
        total = max(self._total or 0, len(shown))
        title = f"Runs  ({len(shown)} of {total}, sorted by {self._sort}, {order}"
        title += f", filter: {query.describe()})" if query else ")"
        self.query_one("#runs-title", Label).update(title)
        ready = "" if self.bridge.ready else "  | opening the database..."
        here = f" | {active} running here" if active else ""
        self.query_one("#title", Static).update(
            f" Interlock | {self.ctx.db_path.name} | {len(self.ctx.entries)} pipelines"
            f"{here}{ready} | ? help | ctrl+p commands"
        )

    def _show_errors(self) -> None:
        entry = self.pipelines.selected_entry
        errors = self.query_one("#pipeline-errors", Static)
        if entry is None or entry.valid:
            errors.display = False
            return
        errors.display = True
        errors.update(issues_text(entry))

    # -- keys -------------------------------------------------------------------------------------

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table is self.pipelines:
            self._show_errors()
        elif event.cursor_row >= len(self._runs) - LOAD_AHEAD and self.bridge.more_runs:
            self._load_more()

    @work(group="runs-more", exclusive=True, exit_on_error=False)
    async def _load_more(self) -> None:
        """The next older page of runs, as the cursor nears the end of those loaded."""
        await self.bridge.load_more_runs()

    @work(group="runs-filter", exclusive=True, exit_on_error=False)
    async def _filter_runs(self, text: str) -> None:
        await self.bridge.set_run_filter(text)
        self._show_runs()

    async def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table is self.runs_table:
            run_id = self.runs_table.selected_run
            if run_id is not None:
                self.open_run(run_id)
        elif event.data_table is self.pipelines:
            entry = self.pipelines.selected_entry
            if entry is not None and entry.valid:
                await self.app.run_action("launch")
            elif entry is not None:
                self.notify(f"{entry.path.name} does not validate; fix it first", severity="error")

    def action_open(self) -> None:
        run_id = self.runs_table.selected_run
        if run_id is not None:
            self.open_run(run_id)

    def action_back(self) -> None:
        self.action_clear_filter()

    @property
    def highlighted_pipeline(self) -> str | None:
        entry = self.pipelines.selected_entry
        return entry.pipeline.id if entry is not None and entry.pipeline is not None else None

    def action_filter(self) -> None:
        self.filter_input.display = True
        self.filter_input.focus()

    def action_quick_filter(self, key: str) -> None:
        """`1`-`5`: runs in a group of states (active, failed, succeeded, cancelled,
        interrupted); `0`: all runs."""
        query = run_views.QUICK_FILTERS.get(key)
        if query is None:
            self.action_clear_filter()
            return
        self.filter_input.value = query
        self.filter_input.display = True
        self.runs_table.focus()
        self._show_runs()

    def action_clear_filter(self) -> None:
        self.filter_input.value = ""
        self.filter_input.display = False
        self.runs_table.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input is self.filter_input:
            self._filter_runs(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input is self.filter_input:
            if not event.value.strip():
                self.filter_input.display = False
            self.runs_table.focus()

    def action_sort(self) -> None:
        keys = run_views.SORT_KEYS
        self._sort = keys[(keys.index(self._sort) + 1) % len(keys)]
        self._show_runs()
