"""The load-model dialog: the path of a model file, on the selected worker's machine."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from tui.toasts import clear_passing

HINT = ("[dim]a LeNet-5 state_dict (or TorchScript where the worker allows it), read by the worker; "
        "it keeps its model if the file cannot be used, and keeps every image it holds[/]")


class LoadModelDialog(ModalScreen[str | None]):
    """Returns the path to load, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, worker: str) -> None:
        super().__init__()
        self.worker = worker

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label(f"Load a model on worker {self.worker}", classes="dialog-title", markup=False)
            yield Input(placeholder="path/to/model.pt", id="load-path")
            yield Static(HINT, classes="dialog-hint")
            yield Static("", id="load-error", classes="dialog-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Load", variant="primary", id="load")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        clear_passing(self.app)  # toasts would cover its input and buttons; it shows its own errors inline
        self.set_focus(self.query_one(Input))  # now, not after the keys typed right after `l` (see keys.Key.binding)

    @on(Input.Submitted)
    @on(Button.Pressed, "#load")
    def submit(self) -> None:
        path = self.query_one(Input).value.strip()
        if not path:
            self.query_one("#load-error", Static).update("give the path of a model file")
            return
        self.dismiss(path)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
