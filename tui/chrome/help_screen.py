"""The `?` help screen: every key, grouped by the pane it belongs to, and how the console works."""

from __future__ import annotations

from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
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


class KeysTable:
    """One section's keys in two columns: a long description wraps inside its own column, never under the keys.

    What a two-column `rich.table.Table` grid shows, drawn directly: the table measured and rendered every
    cell of every section again on each layout, most of the time the first `?` took."""

    GAP = 2

    def __init__(self, keys: list[tuple[str, str]], key_width: int) -> None:
        self.keys = keys
        self.key_width = key_width

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        widest = max((len(d) for _k, d in self.keys), default=0)
        return Measurement(self.key_width + self.GAP + 1, min(options.max_width, self.key_width + self.GAP + widest))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = max(1, options.max_width - self.key_width - self.GAP)
        blank = Text(" " * (self.key_width + self.GAP))
        for key, description in self.keys:
            head = Text(key[: self.key_width].ljust(self.key_width), style="bold") + Text(" " * self.GAP)
            for i, line in enumerate(Text(description).wrap(console, width, overflow="fold")):
                yield (head if i == 0 else blank) + line


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q,question_mark,f1", "close", "Close"),
    ]

    def __init__(self, sections: list[Section]) -> None:
        super().__init__()
        self.sections = sections
        self._styled_for: tuple[object, ...] | None = None

    def update_node_styles(self, animate: bool = True) -> None:
        """Style the screen and every node on it again only when something they depend on changed.

        Textual restyles a screen's whole tree each time it is shown. The help is kept and shown again
        unchanged; restyling its few dozen nodes was a third of what opening it cost beside a busy pipeline
        (docs/PERFORMANCE.md). A theme, the ANSI colour mode or the screen's own classes (the width
        breakpoints) changing since it was last styled still restyles it.

        The theme counts through the app's CSS generation (`_css_update_count`, one more for each theme or ANSI
        theme set), not its name: Textual restyles the help without this method when a theme is chosen while the
        help is open (the palette opens over it), so a theme's name going back to the one recorded here did not
        mean the help still had that theme's styles."""
        app = self.app
        key = (app._css_update_count, app.theme, app.ansi_color, frozenset(self.classes), id(app.stylesheet))
        if key == self._styled_for and self.is_attached:
            return
        self._styled_for = key
        super().update_node_styles(animate)

    def compose(self) -> ComposeResult:
        with Vertical(id="help", classes="dialog"):
            yield Label("mnist-tui: keys", classes="dialog-title")
            width = max((len(key) for _title, keys in self.sections for key, _d in keys), default=6)
            with VerticalScroll(id="help-body"):
                for title, keys in self.sections:
                    yield Static(title, classes="help-section", markup=False)
                    yield Static(KeysTable(keys, width), classes="help-keys")
                yield Static(ABOUT, id="help-about", classes="dialog-hint")
            yield Static("↑ ↓ pgup pgdn scroll · escape or ? closes", classes="dialog-hint")

    def on_mount(self) -> None:
        # the arrows and page keys scroll what is below the fold; focused now, not after the keys typed right
        # after `?` (see keys.Key.binding)
        self.set_focus(self.query_one("#help-body"))

    def action_close(self) -> None:
        self.dismiss(None)
