"""The full-screen inspector: the topic tree, the topic's message history and the payload side by side.

It is a Topics pane of its own (with its own tree cursor), laid out in three columns by app.tcss; every key
of the Topics pane works here too. The app hands it each snapshot, for the topic it wants (`topic_wanted`).
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer

from engine.console.observer import Snapshot
from tui.topics.topic_tree import TopicTree
from tui.topics.topics_pane import TopicsPane


class InspectorScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "close", "Back"),
        Binding("i", "close", "Back", show=False),  # as it came in
        Binding("question_mark,f1", "app.help", "Help", key_display="?"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self, start_at: str | None = None) -> None:
        super().__init__()
        self.start_at = start_at
        self._tries = 0

    def compose(self) -> ComposeResult:
        yield TopicsPane(id="inspector", inspector=True)
        yield Footer()

    @property
    def pane(self) -> TopicsPane:
        return self.query_one(TopicsPane)

    @property
    def topic_wanted(self) -> str | None:
        return self.pane.selected_topic

    def on_mount(self) -> None:
        tree = self.query_one(TopicTree)
        tree.start_at = self.start_at
        # now, not after the keys typed right after `i`: until then the first focusable widget, the hidden search
        # box, had the focus and took them (see keys.Key.binding)
        self.set_focus(tree)

    def on_resize(self) -> None:
        # Under 100 columns the footer drops the padding around each key, so that ? Help and q Quit still fit.
        self.query_one(Footer).compact = self.size.width < 100

    def update_snapshot(self, snap: Snapshot) -> None:
        tree = self.pane.tree
        self.pane.update_snapshot(snap, True)
        if self.start_at is not None and tree.topic_names:  # open where the Topics pane was, once it is there
            self._tries += 1
            if tree.selected_path == self.start_at or not tree.has_path(self.start_at) or self._tries > 20:
                self.start_at = None
            else:
                tree.select_path(self.start_at)

    def action_close(self) -> None:
        self.dismiss(None)
