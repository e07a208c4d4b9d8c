"""The `?` help screen: every key, grouped by the pane it belongs to, and how the console works."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import Label, Static

Section = tuple[str, list[tuple[str, str]]]

ABOUT = (
    "The console learns everything from the broker: the roles' retained status messages and the "
    "[b]result[/] topic. It steers the roles only through their control topics, so roles on other "
    "machines work exactly like the ones it started itself. Errors show up as notifications."
)


def keys_markup(sections: list[Section]) -> str:
    width = max((len(key) for _title, keys in sections for key, _d in keys), default=6) + 2
    lines: list[str] = []
    for title, keys in sections:
        if lines:
            lines.append("")
        lines.append(f"[b $text-accent]{escape(title)}[/]")
        for key, description in keys:
            lines.append(f"  [b]{escape(key.ljust(width))}[/]{escape(description)}")
    return "\n".join(lines)


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
            with VerticalScroll(id="help-body"):
                yield Static(keys_markup(self.sections), id="help-keys")
                yield Static(ABOUT, id="help-about", classes="dialog-hint")
            yield Static("[dim]escape or ? closes[/]", classes="dialog-hint")

    def action_close(self) -> None:
        self.dismiss(None)
