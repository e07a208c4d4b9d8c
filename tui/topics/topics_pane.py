"""The Topics pane: subscription filter, topic tree with counts and rates, recent messages and payload."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Static, Tree

from engine.console.observer import Message, Snapshot
from tui import keys
from tui.messages import RefreshWanted
from tui.safe_text import markup_text
from tui.topics.payload_view import PayloadView
from tui.topics.topic_tree import TopicTree
from tui.widgets import formatting as fmt
from tui.widgets.palette import palette

PREVIEW = 40


def preview(payload: bytes) -> str:
    head = payload[:PREVIEW]
    text = head.decode("utf-8", errors="replace")
    if any(not (c.isprintable() or c == " ") for c in text):
        return head[:12].hex(" ")
    return text.replace("\n", " ")


class MessagesTable(DataTable[Any]):
    BINDINGS = [Binding("escape", "back", "Tree", show=False)]

    def action_back(self) -> None:
        self.screen.query_one(TopicTree).focus()


class TopicsPane(Vertical):
    BINDINGS = keys.bindings(keys.TOPICS)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Topics"
        self._line: str | None = None
        self._messages: tuple[Message, ...] = ()
        self._selected_seq: int | None = None  # a message picked in the table; None = follow newest
        self._blank_for: tuple[str | None] | None = None  # the tree node the empty list was last shown for
        self._tick = 0

    def compose(self) -> ComposeResult:
        yield Static("", id="topics-filter")
        with Horizontal(id="topics-body"):
            yield TopicTree(id="topic-tree")
            with Vertical(id="topic-detail"):
                table = MessagesTable(id="topic-messages", cursor_type="row")
                table.add_column("time", key="time")
                table.add_column("qos", key="qos")
                table.add_column("R", key="retain")
                table.add_column("size", key="size")
                table.add_column("payload", key="preview")
                yield table
                yield PayloadView(id="payload-view")

    @property
    def tree(self) -> TopicTree:
        return self.query_one(TopicTree)

    @property
    def selected_topic(self) -> str | None:
        """The topic under the tree cursor, if it is a topic that carried messages."""
        path = self.tree.selected_path
        return path if path in self.tree.topic_names else None

    @property
    def messages(self) -> tuple[Message, ...]:
        return self._messages

    def update_snapshot(self, snap: Snapshot, full: bool) -> None:
        """`full`: the snapshot carries the topic list (a few times a second)."""
        self._tick += 1
        line = self._filter_line(snap)
        if line != self._line:
            self._line = line
            self.query_one("#topics-filter", Static).update(line, layout=False)
        subtitle = "[b $text-warning]paused[/]" if snap.paused else ""
        if self.border_subtitle != subtitle:
            self.border_subtitle = subtitle
        if full:
            self.tree.sync(snap.topics, snap.topics_version)
        if self.selected_topic is None:
            self._show_messages(())
        elif snap.messages != self._messages and (full or not self._messages):
            self._show_messages(snap.messages)

    def _filter_line(self, snap: Snapshot) -> str:
        total = sum(t.rate for t in snap.topics)
        parts = [f"filter [b]{markup_text(snap.filter)}[/]"]
        if not snap.subscribed:
            parts[0] += " [$text-warning](not subscribed)[/]"
        parts.append(fmt.plural(snap.topic_count, "topic"))
        if snap.topics:
            parts.append(fmt.rate(total, " msg/s"))
        if snap.topics_dropped:
            parts.append(f"[$text-warning]{fmt.count(snap.topics_dropped)} msgs on untracked topics[/]")
        if snap.paused:
            parts.append(f"[$text-warning]paused, {fmt.count(snap.missed_while_paused)} not shown[/]")
        return " [dim]·[/] ".join(parts)

    def _show_messages(self, messages: tuple[Message, ...]) -> None:
        if messages:
            if messages == self._messages:
                return
            self._blank_for = None
        else:  # nothing to list: once per tree node (each time costs a layout of the whole screen)
            blank_for = (self.tree.selected_path,)
            if not self._messages and blank_for == self._blank_for:
                return
            self._blank_for = blank_for
        self._messages = messages
        table = self.query_one(MessagesTable)
        pal = palette(self.app)
        keep = self._selected_seq
        table.clear()
        newest_first = tuple(reversed(messages))
        for m in newest_first:
            table.add_row(
                Text(fmt.clock(m.t), style=pal.muted),
                str(m.qos),
                Text("R", style=pal.warn) if m.retain else "",
                Text(fmt.size(m.size), justify="right"),
                Text(preview(m.payload), style=pal.muted, no_wrap=True),
                key=str(m.seq),
            )
        index = 0
        if keep is not None:
            for i, m in enumerate(newest_first):
                if m.seq == keep:
                    index = i
                    break
            else:
                self._selected_seq = None
        if newest_first:
            table.move_cursor(row=index, animate=False)
        self._show_payload()

    def _show_payload(self) -> None:
        view = self.query_one(PayloadView)
        if not self._messages:
            path = self.tree.selected_path
            hint = None
            if path is not None and path not in self.tree.topic_names:
                hint = f"[dim]{markup_text(path)}/… has topics below, but no messages of its own[/]"
            view.show(None, hint)
            return
        table = self.query_one(MessagesTable)
        newest_first = tuple(reversed(self._messages))
        row = min(max(table.cursor_row, 0), len(newest_first) - 1)
        view.show(newest_first[row])

    @on(Tree.NodeHighlighted, "#topic-tree")
    def _topic_highlighted(self, _event: Tree.NodeHighlighted[str]) -> None:
        self._selected_seq = None
        self._messages = ()
        self.post_message(RefreshWanted())

    @on(Tree.NodeSelected, "#topic-tree")
    def _topic_selected(self, event: Tree.NodeSelected[str]) -> None:
        if not event.node.children and self.selected_topic is not None:
            self.query_one(MessagesTable).focus()

    @on(DataTable.RowHighlighted, "#topic-messages")
    def _message_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.cursor_row <= 0:
            self._selected_seq = None  # the newest row: keep following new messages
        else:
            key = event.row_key.value
            self._selected_seq = int(key) if key is not None else None
        self._show_payload()
