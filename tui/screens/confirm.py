"""Small modal questions: a yes/no confirmation, and a reason typed by the operator."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

if TYPE_CHECKING:
    from textual.app import ComposeResult


class ConfirmScreen(ModalScreen[bool]):
    """Asks before doing something that cannot be undone: `y`/`enter` yes, `n`/`escape` no."""

    CSS_PATH = "confirm.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(
        self,
        title: str,
        body: str,
        *,
        yes: str = "Yes",
        no: str = "No",
        no_key: str = "esc",
        body_id: str | None = None,
    ) -> None:
        super().__init__()
        self._title = title
        self._body = body
        self._yes = yes
        self._no = f"{no} ({no_key})"
        self._body_id = body_id

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self._title, classes="dialog-title")
            yield Static(self._body, id=self._body_id, classes="dialog-body")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self._yes} (enter)", id="yes", variant="error", compact=True)
                yield Button(self._no, id="no", compact=True)

    def on_mount(self) -> None:
        # Enter does the main action (as in every dialog); tab then enter, `n` or escape say no.
        self.query_one("#yes", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class ReasonScreen(ModalScreen[str | None]):
    """Asks for a reason (recorded in the run's events); `enter` sends, `escape` gives up."""

    CSS_PATH = "confirm.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "give_up", "Cancel")]

    def __init__(
        self, title: str, body: str, *, required: bool = False, send: str = "Send (enter)"
    ) -> None:
        super().__init__()
        self._send_label = send
        self._title = title
        self._body = body
        self._required = required

    @property
    def reason_input(self) -> Input:
        return self.query_one("#reason", Input)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self._title, classes="dialog-title")
            yield Static(self._body, classes="dialog-body")
            yield Input(placeholder="reason", id="reason", compact=True)
            yield Static("", id="reason-error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self._send_label, id="send", variant="error", compact=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)

    def on_input_submitted(self) -> None:
        self._send()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "send":
            self._send()
        else:
            self.dismiss(None)

    def _send(self) -> None:
        text = self.reason_input.value.strip()
        if self._required and not text:
            self.query_one("#reason-error", Static).update("a reason is required")
            return
        self.dismiss(text)

    def action_give_up(self) -> None:
        self.dismiss(None)
