"""Two payloads of one topic side by side in time: what changed, by JSON key or line by line."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from engine.console.observer import Message
from engine.console.payload_diff import DiffLine, payload_diff
from tui.safe_text import markup_text
from tui.widgets import formatting as fmt
from tui.widgets.palette import palette


class DiffScreen(ModalScreen[None]):
    """The older message first; the lines come cleaned from engine/console/payload_diff.py."""

    BINDINGS = [Binding("escape,q,D", "close", "Close")]

    def __init__(self, older: Message, newer: Message) -> None:
        super().__init__()
        self.older, self.newer = older, newer
        self.kind, self.lines = payload_diff(older.payload, newer.payload)

    def compose(self) -> ComposeResult:
        with Vertical(id="diff-dialog", classes="dialog"):
            yield Label(f"Diff on {markup_text(self.newer.topic, 100)}", classes="dialog-title")
            yield Static(f"[dim]{self.kind}: {fmt.clock(self.older.t)} ({fmt.size(self.older.size)}) → "
                         f"{fmt.clock(self.newer.t)} ({fmt.size(self.newer.size)})[/]", id="diff-info")
            with VerticalScroll(id="diff-scroll"):
                yield Static(self._body(self.lines), id="diff-body")
            yield Static("[dim]escape closes[/]", classes="dialog-hint")

    def _body(self, lines: list[DiffLine]) -> Text:
        pal = palette(self.app)
        styles = {"added": pal.ok, "removed": pal.bad, "changed": pal.warn, "info": pal.muted, "same": Style()}
        text = Text()
        for i, line in enumerate(lines):
            if i:
                text.append("\n")
            text.append(line.text, style=styles.get(line.kind, Style()))
        return text

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)

    def action_close(self) -> None:
        self.dismiss(None)
