"""The rate dialog (`r`): type the publishing rate, images per second or `max`."""

from __future__ import annotations

import re

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from engine.errors import ConfigError
from engine.roles.publisher import MAX_RATE, MIN_RATE, underflows, valid_rate
from tui.toasts import clear_passing

HINT = ("images per second (0.5, 20, 1500), or [b]0[/] or [b]max[/]: as fast as the workers take; "
        "[b]+[/] and [b]-[/] step it")


THOUSANDS = re.compile(r"[+-]?[1-9]\d{0,2}(,\d{3})+(\.\d*)?")  # not "0,500": a decimal comma


def parse_rate(text: str) -> float:
    """A typed rate: what the engine takes (`valid_rate`, as `--rate` does): MIN_RATE to MAX_RATE, or 0 (also
    typed as max), which means as fast as it can."""
    word = text.strip().lower().removesuffix("/s").strip()
    if word == "max":
        return 0.0
    if "," in word and not THOUSANDS.fullmatch(word):  # "1,5" was read as 15/s
        raise ConfigError(f"not a rate: {text.strip()[:40]!r} (a comma groups thousands, as in 1,500; "
                          "a decimal takes a point: 1.5)")
    number = word.replace(",", "").replace("_", "")
    try:
        value = float(number)
    except ValueError:
        raise ConfigError(f"not a rate: {text.strip()[:40]!r} (a number of images per second, or max)") from None
    if not valid_rate(value) or underflows(number, value):
        raise ConfigError(f"a rate is 0 or max (as fast as the workers take), or from {MIN_RATE:g} to "
                          f"{MAX_RATE:,g}/s")
    return value or 0.0  # -0.0 too


class RateDialog(ModalScreen[float | None]):
    """Returns the new rate (0: as fast as it can), or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, current: str = "") -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="rate-dialog", classes="dialog"):
            yield Label("Publishing rate", classes="dialog-title")
            yield Input(self.current, placeholder="e.g. 50 or max", id="rate-input", select_on_focus=True)
            yield Static(HINT, classes="dialog-hint")
            yield Static("", id="rate-error", classes="dialog-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Set", variant="primary", id="rate-set")
                yield Button("Cancel", id="rate-cancel")

    def on_mount(self) -> None:
        clear_passing(self.app)  # toasts would cover its input and buttons; it shows its own errors inline
        self.set_focus(self.query_one(Input))  # now, not after the keys typed right after `r` (see keys.Key.binding)

    @on(Input.Submitted)
    @on(Button.Pressed, "#rate-set")
    def apply(self) -> None:
        try:
            rate = parse_rate(self.query_one(Input).value)
        except ConfigError as exc:
            self.query_one("#rate-error", Static).update(str(exc))
            return
        self.dismiss(rate)

    @on(Button.Pressed, "#rate-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
