"""The `?` help screen: every key, grouped by the pane it belongs to, and how the console works."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

Section = tuple[str, list[tuple[str, str]]]

ABOUT = (
    "The console learns everything from the broker: the roles' retained status messages and the "
    "[b]result[/] topic. It steers the roles only through their control topics, so roles on other "
    "machines work exactly like the ones it started itself. Errors show up as notifications."
)


def keys_table(keys: list[tuple[str, str]], key_width: int) -> Table:
    """One section's keys in two columns: a long description wraps inside its own column, never under the keys."""
    table = Table.grid(padding=(0, 2))
    table.add_column(width=key_width, no_wrap=True, style="bold")
    table.add_column(ratio=1, overflow="fold")
    for key, description in keys:
        table.add_row(Text(key), Text(description))
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q,question_mark,f1", "close", "Close"),
    ]

    def __init__(self, sections: list[Section]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with Vertical(id="help", classes="dialog"):
            yield Label("mnist-tui: keys", classes="dialog-title")
            width = max((len(key) for _title, keys in self.sections for key, _d in keys), default=6)
            with VerticalScroll(id="help-body"):
                for title, keys in self.sections:
                    yield Static(title, classes="help-section", markup=False)
                    yield Static(keys_table(keys, width), classes="help-keys")
                yield Static(ABOUT, id="help-about", classes="dialog-hint")
            yield Static("↑ ↓ pgup pgdn scroll · escape or ? closes", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#help-body").focus()  # the arrows and page keys scroll what is below the fold

    def action_close(self) -> None:
        self.dismiss(None)
