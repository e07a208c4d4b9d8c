"""The topic filter dialog: a subscription filter, checked before it is used."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from engine.console.observer import validate_watch_filter
from engine.errors import ConfigError
from tui.toasts import clear_passing

EXAMPLES = "examples: [b]#[/] everything · [b]mnist/#[/] · [b]result[/] · [b]mnist/status/+/+[/] · [b]$SYS/#[/]"


class FilterDialog(ModalScreen[str | None]):
    """Returns the new filter, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, current: str) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label("Topic filter", classes="dialog-title")
            yield Input(self.current, placeholder="#", id="filter-input")
            yield Static(EXAMPLES, classes="dialog-hint")
            yield Static("", id="filter-error", classes="dialog-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Apply", variant="primary", id="apply")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        clear_passing(self.app)  # toasts would cover its input and buttons; it shows its own errors inline
        self.set_focus(self.query_one(Input))  # now, not after the keys typed right after `f` (see keys.Key.binding)

    @on(Input.Submitted)
    @on(Button.Pressed, "#apply")
    def apply(self) -> None:
        text = self.query_one(Input).value.strip()
        try:
            validate_watch_filter(text)
        except ConfigError as exc:
            self.query_one("#filter-error", Static).update(str(exc))
            return
        self.dismiss(text)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
