"""The Topics pane: subscription filter, topic tree with counts and rates, recent messages and payload."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message as TextualMessage
from textual.widgets import DataTable, Input, Static, Tree

from engine.console.observer import Message, Snapshot
from engine.console.payload_file import default_name, write_payload
from engine.errors import MnistError
from engine.untrusted import is_clean
from tui import keys
from tui.messages import RefreshWanted
from tui.safe_text import markup_text
from tui.topics.diff_screen import DiffScreen
from tui.topics.payload_view import PayloadView
from tui.topics.plot_screen import PlotScreen
from tui.topics.publish_dialog import PublishDialog
from tui.topics.topic_tree import TopicTree
from tui.widgets import formatting as fmt
from tui.widgets.palette import palette

PREVIEW = 40
MAIN_ROWS = 30
# Cells of the message list below which it takes compact columns: the full ones need 28 to show a size
# (time 12, qos 3, R 1, "size" 4, a space either side of each); the inspector's list has 23 at 80 columns.
COMPACT_BELOW = 28


def preview(payload: bytes) -> str:
    head = payload[:PREVIEW]
    text = head.decode("utf-8", errors="replace")
    if any(not (c.isprintable() or c == " ") for c in text):
        return head[:12].hex(" ")
    return text.replace("\n", " ")


def add_columns(table: MessagesTable, sizes: Sequence[str] = (), previews: Sequence[str] = (),
                compact: bool = False) -> None:
    """The message list's columns, as wide as the `sizes` and `previews` about to be shown need.

    Set here rather than measured by the table when it is next idle: a column it measures only ever grows
    (so one topic's wide sizes stayed on the next), and a frame drawn before it measures shows the new rows
    in the columns' bare label widths.

    `compact` (a list under COMPACT_BELOW cells, as the inspector's at 80 columns): the time to the second, qos
    as `q`, a short size and no payload (the payload view beside it shows that), so that every column fits.
    """
    def fit(label: str, cells: Sequence[str]) -> int:
        return max([cell_len(label), *map(cell_len, cells)])

    table.compact = compact
    table.add_column("time", key="time", width=8 if compact else 12)  # 14:03:07 or 14:03:07.123
    table.add_column("q" if compact else "qos", key="qos", width=1 if compact else 3)
    table.add_column("R", key="retain", width=1)
    table.add_column("size", key="size", width=fit("size", sizes))
    if not compact:
        table.add_column("payload", key="preview", width=fit("payload", previews))


class MessagesTable(DataTable[Any]):
    BINDINGS = [Binding("escape", "back", "Tree", show=False)]

    class Refit(TextualMessage):
        """The list's width now calls for the other set of columns (`add_columns`)."""

    compact = False  # the columns are the compact set

    def wants_compact(self) -> bool:
        """Too narrow for the full columns (not yet laid out: it has no width, and gets the full ones)."""
        return 0 < self.content_size.width < COMPACT_BELOW

    def on_resize(self) -> None:
        if self.wants_compact() != self.compact:
            self.post_message(self.Refit())

    def action_back(self) -> None:
        self.screen.query_one(TopicTree).focus()


class TopicSearch(Input):
    """The incremental search of the topic tree: enter keeps the highlights, escape drops them."""

    BINDINGS = [Binding("escape", "cancel", "Cancel search", show=False)]

    def action_cancel(self) -> None:
        self.value = ""
        pane = next(a for a in self.ancestors if isinstance(a, TopicsPane))
        pane.end_search()


class TopicsPane(Vertical):
    """`inspector`: the pane fills the inspector screen (three columns; i or escape goes back)."""

    BINDINGS = keys.bindings(keys.TOPICS)

    def __init__(self, *, id: str | None = None, inspector: bool = False) -> None:
        super().__init__(id=id, classes="inspector" if inspector else "")
        self.inspector = inspector
        self.border_title = "Inspector" if inspector else "Topics"
        self.base_seq: int | None = None  # the message marked with b, the older side of a diff
        self.save_dir: Path | None = None  # where w saves (None: the current directory)
        # Rows listed: the pane the newest 30, the inspector every message the observer keeps (100). The table is
        # filled anew at each new message of the topic: 100 rows took 2.5-3x as long as 20 or 30
        # (python -m tools.topic_table; docs/PERFORMANCE.md).
        self.max_rows: int | None = None if inspector else MAIN_ROWS
        self._line: str | None = None
        self._messages: tuple[Message, ...] = ()
        self._selected_seq: int | None = None  # a message picked in the table; None = follow newest
        self._blank_for: tuple[str | None] | None = None  # the tree node the empty list was last shown for
        self._tick = 0

    def compose(self) -> ComposeResult:
        yield Static("", id="topics-filter")
        search = TopicSearch(placeholder="search topics: enter keeps it, n/N next/previous, escape drops it",
                             id="topic-search")
        search.display = False
        yield search
        with Horizontal(id="topics-body"):
            yield TopicTree(id="topic-tree")
            with Vertical(id="topic-detail"):
                table = MessagesTable(id="topic-messages", cursor_type="row")
                add_columns(table)
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
        self._fill_table()

    @on(MessagesTable.Refit)
    def _fill_table(self) -> None:
        """The message list anew from `_messages`, in the columns its width calls for."""
        table = self.query_one(MessagesTable)
        pal = palette(self.app)
        keep = self._selected_seq
        newest_first = tuple(reversed(self._messages))[: self.max_rows]
        compact = table.wants_compact()
        sizes = [(fmt.short_size if compact else fmt.size)(m.size) for m in newest_first]
        previews = [] if compact else [preview(m.payload) for m in newest_first]
        table.clear(columns=True)
        add_columns(table, sizes, previews, compact)
        for i, (m, size) in enumerate(zip(newest_first, sizes, strict=True)):
            cells: list[Any] = [
                Text(fmt.clock(m.t, millis=not compact), style=pal.muted),
                str(m.qos),
                Text("R", style=pal.warn) if m.retain else "",
                Text(size, justify="right"),
            ]
            if not compact:
                cells.append(Text(previews[i], style=pal.muted, no_wrap=True))
            table.add_row(*cells, key=str(m.seq))
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
        view.show(self.selected_message)

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

    # ----- search and the tree -----
    def action_search(self) -> None:
        # `/` is a priority binding, run as the key arrives, and the box takes the focus here and now (focus()
        # would wait for the next idle moment): keys typed in the same burst (`/qx `) are text in the box,
        # not a quit, an unretain and a start/stop handled by the panes before the box was focused.
        search = self.query_one(TopicSearch)
        search.display = True
        self.screen.set_focus(search)

    @on(Input.Changed, "#topic-search")
    def _search_changed(self, event: Input.Changed) -> None:
        self.tree.search(event.value)

    @on(Input.Submitted, "#topic-search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        count = len(self.tree.matches())
        if event.value and not count:
            self.notify(f"no topic contains {event.value!r}", severity="warning", timeout=3)
        self.end_search()

    def end_search(self) -> None:
        search = self.query_one(TopicSearch)
        if not search.value:
            self.tree.search("")
        search.display = False
        self.tree.focus()

    async def action_next_match(self, step: int) -> None:
        if not self.tree.query:
            if step > 0:  # n keeps its meaning everywhere else: send one image
                await self.run_action("app.step")
            else:
                self.notify("no search: / starts one", severity="warning", timeout=3)
            return
        if self.tree.next_match(step) is None:
            self.notify("no topic matches the search", severity="warning", timeout=3)

    def action_expand_all(self) -> None:
        self.tree.expand_everything()

    def action_collapse_all(self) -> None:
        self.tree.collapse_everything()

    # ----- the selected message -----
    @property
    def selected_message(self) -> Message | None:
        if not self._messages:
            return None
        table = self.query_one(MessagesTable)
        newest_first = tuple(reversed(self._messages))[: self.max_rows]
        return newest_first[min(max(table.cursor_row, 0), len(newest_first) - 1)]

    def _need_message(self) -> Message | None:
        message = self.selected_message
        if message is None:
            self.notify("select a topic with messages first", severity="warning", timeout=3)
        return message

    def action_mark_base(self) -> None:
        message = self._need_message()
        if message is not None:
            self.base_seq = message.seq
            self.notify(f"diff base: the message of {fmt.clock(message.t)}; pick another and press D", timeout=4)

    def action_diff(self) -> None:
        newer = self._need_message()
        if newer is None:
            return
        older = next((m for m in self._messages if m.seq == self.base_seq and m.topic == newer.topic), None)
        if older is None or older.seq == newer.seq:
            earlier = [m for m in self._messages if m.seq < newer.seq]
            if not earlier:
                self.notify("no earlier message to compare with: mark one with b", severity="warning", timeout=4)
                return
            older = earlier[-1]
        if older.seq > newer.seq:
            older, newer = newer, older
        self.app.push_screen(DiffScreen(older, newer))

    def action_copy(self) -> None:
        message = self._need_message()
        if message is None:
            return
        try:
            text, how = message.payload.decode("utf-8"), "text"
        except UnicodeDecodeError:
            text, how = "", "base64"
        # control or bidi characters (CRLF line ends aside) would be pasted into a shell as they are
        if how == "base64" or not is_clean(text.replace("\r\n", "\n")):
            text, how = base64.b64encode(message.payload).decode("ascii"), "base64"
        self.app.copy_to_clipboard(text)
        cut = " (the part kept)" if message.truncated else ""
        self.notify(f"copied {fmt.size(len(message.payload))} as {how}{cut}", timeout=3)

    def action_save(self) -> None:
        message = self._need_message()
        if message is None:
            return
        directory = self.save_dir or Path.cwd()
        target = (directory / default_name(message.topic, message.payload, message.t)).absolute()
        try:
            write_payload(message.payload, target)
        except MnistError as exc:
            self.notify(str(exc), title="Not saved", severity="error")
            return
        cut = f" (the first {fmt.size(len(message.payload))} of {fmt.size(message.size)})" if message.truncated else ""
        self.notify(f"{fmt.size(len(message.payload))} to {target}{cut}", title="Saved", timeout=8)

    def republish_dialog(self) -> PublishDialog | None:
        """The publish dialog filled in with the selected message (`R`: the app opens it), or None (told why)."""
        message = self._need_message()
        if message is None:
            return None
        if message.truncated:
            self.notify(f"only the first {fmt.size(len(message.payload))} of {fmt.size(message.size)} were kept: "
                        "not re-published", severity="warning")
            return None
        return PublishDialog.from_message(message)

    def action_plot(self) -> None:
        topic = self.selected_topic
        if topic is None:
            self.notify("select a topic with messages first", severity="warning", timeout=3)
            return
        self.app.push_screen(PlotScreen(topic, self._messages))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """In the inspector, `i` is the screen's (back), not this pane's door to it: left out of its footer."""
        return not (action == "inspector" and self.inspector)

    def action_inspector(self) -> None:
        if self.inspector:
            self.screen.dismiss(None)
            return
        from tui.topics.inspector_screen import InspectorScreen  # the screen holds a pane of this class

        self.app.push_screen(InspectorScreen(self.tree.selected_path))
