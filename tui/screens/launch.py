"""The launch dialog: pick a pipeline, edit its params (pre-filled with defaults), start it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from tui import format as fmt

if TYPE_CHECKING:
    from textual.app import ComposeResult

    from engine.spec import Pipeline
    from tui.pipeline_folder import PipelineEntry


def simulate_label(on: bool) -> str:
    # Spelled out: a checkbox's mark is only a colour on some terminals.
    if on:
        return "simulate: ON (work nodes do not run; their outputs are stand-ins)"
    return "simulate: off (the work really runs)"


class SimulateBox(Checkbox, inherit_bindings=False):
    """The simulate checkbox: `space` toggles it, never `enter` (which starts the run): two
    enters must not turn a real run into a simulated one."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle_button", "Toggle", show=False),
    ]
    mark = "X"  # drawn only when ticked: without colour (NO_COLOR, --ascii) a mark is a tick
    BUTTON_INNER = " "  # unticked, as it starts

    def watch_value(self) -> None:
        self.BUTTON_INNER = self.mark if self.value else " "
        super().watch_value()

    def set_mark(self, left: str, mark: str, right: str) -> None:
        self.BUTTON_LEFT, self.mark, self.BUTTON_RIGHT = left, mark, right
        self.BUTTON_INNER = mark if self.value else " "
        self.refresh()


@dataclass(frozen=True)
class LaunchRequest:
    pipeline: Pipeline
    params: dict[str, Any]
    simulate: bool


class LaunchScreen(ModalScreen[LaunchRequest | None]):
    """`enter` (in a param, on the simulate box or the Start button), `ctrl+s` from anywhere,
    starts the run; `escape` closes without starting. `enter` on the pipeline picker opens it."""

    CSS_PATH = "launch.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "start", "Start", priority=True),
        Binding("enter", "start", "Start", show=False),
        Binding("escape", "close", "Close"),
    ]

    def __init__(
        self, entries: list[PipelineEntry], selected: str | None = None, *, ascii: bool = False
    ) -> None:
        super().__init__()
        self._ascii = ascii
        self._pipelines = {e.pipeline.id: e.pipeline for e in entries if e.pipeline is not None}
        first = next(iter(self._pipelines), None)
        self._selected = selected if selected in self._pipelines else first
        self._inputs: dict[str, Input] = {}

    @property
    def picker(self) -> Select[str]:
        return self.query_one("#launch-pipeline", Select)

    @property
    def form(self) -> Vertical:
        return self.query_one("#launch-params", Vertical)

    def compose(self) -> ComposeResult:
        with Vertical(id="launch-dialog"):
            yield Label("Launch a run", id="launch-title")
            options = [(f"{p.id}: {p.label}", p.id) for p in self._pipelines.values()]
            yield Select(
                options, value=self._selected or Select.NULL, allow_blank=False, compact=True,
                id="launch-pipeline",
            ) if options else Static("no valid pipeline found")
            yield Static("", id="launch-about")
            with VerticalScroll(id="launch-scroll", can_focus=False):
                yield Vertical(id="launch-params")
            yield SimulateBox(simulate_label(False), compact=True, id="launch-simulate")
            with Horizontal(id="launch-buttons"):
                yield Button("Start (enter)", id="launch-start", variant="primary", compact=True)
                yield Button("Close (esc)", id="launch-close", compact=True)

    async def on_mount(self) -> None:
        await self._show_params()
        self._focus_first()
        if self._ascii:
            from tui.ascii import ASCII_TOGGLE, asciify_selects

            self.query_one(SimulateBox).set_mark(*ASCII_TOGGLE)
            asciify_selects(self)

    async def on_select_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str) and event.value != self._selected:
            self._selected = event.value
            await self._show_params()
            self._focus_first()

    def _focus_first(self) -> None:
        """The first param to edit; with none, the Start button (enter launches)."""
        inputs = self.form.query(Input)
        if inputs:
            inputs.first().focus()
        elif self._pipelines:
            # Enter launches: on the picker it would open the list of pipelines instead.
            self.query_one("#launch-start", Button).focus()

    async def _show_params(self) -> None:
        pipeline = self._pipelines.get(self._selected or "")
        await self.form.remove_children()
        self._inputs = {}
        about = self.query_one("#launch-about", Static)
        if pipeline is None:
            about.update("")
            return
        about.update(pipeline.description or "")
        if not pipeline.params:
            await self.form.mount(Static("this pipeline takes no params", classes="muted"))
            return
        for name, spec in pipeline.params.items():
            label = name + (f": {spec.description}" if spec.description else "")
            await self.form.mount(Label(label, classes="param-label"))
            safe = name.replace("-", "_").isidentifier()
            field = Input(
                fmt.show_param(spec.default), compact=True, id=f"param-{name}" if safe else None
            )
            self._inputs[name] = field
            await self.form.mount(field)

    def params(self) -> dict[str, Any]:
        return {name: fmt.parse_param(field.value) for name, field in self._inputs.items()}

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        event.checkbox.label = simulate_label(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_start()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "launch-start":
            self.action_start()
        else:
            self.dismiss(None)

    def action_start(self) -> None:
        pipeline = self._pipelines.get(self._selected or "")
        if pipeline is None:
            self.notify("no pipeline to start", severity="error")
            return
        simulate = self.query_one("#launch-simulate", Checkbox).value
        try:
            params = self.params()
        except ValueError as exc:  # a param the form cannot read: said, and the form stays
            self.notify(str(exc), title="Not started", severity="error")
            return
        self.dismiss(LaunchRequest(pipeline, params, simulate))

    def action_close(self) -> None:
        self.dismiss(None)
