"""The topic tree of the Topics pane: one node per topic level, with message counts and rates."""

from __future__ import annotations

import bisect

from rich.style import Style
from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from engine.console.observer import TopicInfo
from tui.safe_text import plain
from tui.widgets import formatting as fmt
from tui.widgets.palette import Palette, palette

EXPAND_ALL_UP_TO = 60  # topics; with more, new nodes start folded below the first level
_MIN_NAME = 6  # cells a shortened level name keeps, ellipsis included: it stays recognisable


class TopicTree(Tree[str]):
    """Node data is the topic path of the node (a prefix for inner levels)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("topics", id=id)
        self.show_root = False
        self.guide_depth = 2
        self._path_nodes: dict[str, TreeNode[str]] = {}
        self._topics: set[str] = set()
        self._labels: dict[str, str] = {}
        self._version = -1
        self._query = ""  # the search: paths that contain it (any case) are highlighted
        self._last_topics: tuple[TopicInfo, ...] = ()
        self._relabel_pending = False
        self._summed: tuple[tuple[TopicInfo, ...], dict[str, TopicInfo], dict[str, list[float]]] | None = None
        self.start_at: str | None = None  # where the cursor goes first (else the first line)

    @property
    def topic_names(self) -> set[str]:
        return self._topics

    @property
    def selected_path(self) -> str | None:
        node = self.cursor_node
        return node.data if node is not None else None

    @property
    def query(self) -> str:
        return self._query

    def matches(self) -> list[str]:
        """The paths that match the search, in tree order (depth first, as sorted on screen)."""
        if not self._query:
            return []
        needle = self._query.casefold()
        return sorted((p for p in self._path_nodes if needle in p.casefold()), key=lambda p: p.split("/"))

    def search(self, query: str) -> int:
        """Highlight the paths that contain `query` and move to the first one; returns how many match."""
        self._query = query
        self._labels.clear()
        self._relabel(self._last_topics)
        found = self.matches()
        if found:
            self.select_path(found[0])
        return len(found)

    def next_match(self, step: int) -> str | None:
        """Move to the next (+1) or previous (-1) match after the cursor, wrapping around."""
        found = self.matches()
        if not found:
            return None
        here = self.selected_path
        key = here.split("/") if here is not None else []
        if step > 0:
            after = [p for p in found if p.split("/") > key]
            target = after[0] if after else found[0]
        else:
            before = [p for p in found if p.split("/") < key]
            target = before[-1] if before else found[-1]
        self.select_path(target)
        return target

    def has_path(self, path: str) -> bool:
        return path in self._path_nodes

    def select_path(self, path: str) -> None:
        """Put the cursor on `path`, opening the levels above it."""
        node = self._path_nodes.get(path)
        if node is None:
            return
        parent = node.parent
        while parent is not None and parent is not self.root:
            parent.expand()
            parent = parent.parent
        self._move_to(node)
        self.call_after_refresh(self._move_to, node)  # and again once the tree has settled

    def _move_to(self, node: TreeNode[str]) -> None:
        # A node's line is -1 until the tree counts its lines again (after a new label, a level opened):
        # last_line makes it count them first; moving to line -1 would put the cursor on the first line.
        if self.last_line >= 0 and node.line >= 0:
            self.move_cursor(node)

    def expand_everything(self) -> None:
        self.root.expand_all()

    def collapse_everything(self) -> None:
        for child in self.root.children:
            child.collapse_all()

    def sync(self, topics: tuple[TopicInfo, ...], version: int) -> None:
        """Add new topics (or rebuild after a filter change) and refresh the labels."""
        names = {t.name for t in topics}
        if version != self._version:
            self._version = version
            if not self._topics <= names:  # the tree was reset (filter change): start over
                selected = self.selected_path
                self.clear()
                self._path_nodes.clear()
                self._topics = set()
                self._labels.clear()
                for name in sorted(names):
                    self._add_topic(name, len(names))
                self._reselect(selected)
            else:
                for name in sorted(names - self._topics):
                    self._add_topic(name, len(names))
            self._topics = names
            if self.cursor_line < 0 and names:
                if self.start_at is not None and self.start_at in self._path_nodes:
                    self.select_path(self.start_at)
                else:
                    self.cursor_line = 0
        self._relabel(topics)

    def _add_topic(self, name: str, total: int) -> None:
        parent = self.root
        levels = name.split("/")
        path = ""
        for depth, level in enumerate(levels):
            path = level if depth == 0 else f"{path}/{level}"
            node = self._path_nodes.get(path)
            if node is None:
                siblings = [str(child.data).rsplit("/", 1)[-1] for child in parent.children]
                index = bisect.bisect(siblings, level)
                node = parent.add(
                    plain(level or "∅", 200), data=path, before=index if index < len(siblings) else None,
                    expand=total <= EXPAND_ALL_UP_TO or depth == 0, allow_expand=False,
                )
                self._path_nodes[path] = node
            if depth < len(levels) - 1 and not node.allow_expand:
                node.allow_expand = True
            parent = node
        self._topics.add(name)

    def _reselect(self, path: str | None) -> None:
        node = self._path_nodes.get(path) if path else None
        if node is not None:
            self.move_cursor(node)

    def on_resize(self) -> None:
        self._labels.clear()  # the room for level names changed
        self._relabel(self._last_topics)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        # The lines drawn start at scroll_offset, the rounded scroll_y (what Textual compares too): an animated
        # scroll (the scrollbar, page keys) passes through fractions, and 4.6 to 4.4 moves the view a line
        # without changing int(scroll_y), which left the line that came into view without its figures.
        if round(old_value) != round(new_value):
            self._relabel_soon()  # the lines that came into view show today's figures

    def on_tree_node_expanded(self) -> None:
        self._relabel_soon()  # the levels just opened (the message goes on to the pane)

    def on_tree_node_collapsed(self) -> None:
        self._relabel_soon()  # a folded level shows what is below it

    def _relabel_soon(self) -> None:
        """Once, after the tree has settled: opening every level (]) sends a message for each of thousands."""
        if not self._relabel_pending:
            self._relabel_pending = True
            self.call_after_refresh(self._relabel_now)

    def _relabel_now(self) -> None:
        self._relabel_pending = False
        self._relabel(self._last_topics)

    def _on_screen_lines(self) -> list[TreeNode[str]]:
        """The nodes on the lines in view: only they are labelled. With thousands of topics a label for every
        node took 0.3 s a refresh, and each new label a message of Textual's (seconds with the tree open)."""
        top = self.scroll_offset.y
        nodes = []
        for line in range(top, top + max(self.size.height, 1)):
            node = self.get_node_at_line(line)
            if node is None:
                break
            nodes.append(node)
        return nodes

    def _summaries(self, topics: tuple[TopicInfo, ...]) -> tuple[dict[str, TopicInfo], dict[str, list[float]]]:
        """Each topic by name, and for each inner level what is below it: [messages, rate, topics]; made once a
        snapshot (scrolling labels the new lines from the same ones)."""
        if self._summed is not None and self._summed[0] is topics:
            return self._summed[1], self._summed[2]
        below: dict[str, list[float]] = {}
        for t in topics:
            parts = t.name.split("/")
            for i in range(1, len(parts)):
                acc = below.setdefault("/".join(parts[:i]), [0, 0.0, 0])
                acc[0] += t.count
                acc[1] += t.rate
                acc[2] += 1
        own = {t.name: t for t in topics}
        self._summed = (topics, own, below)
        return own, below

    def _relabel(self, topics: tuple[TopicInfo, ...]) -> None:
        self._last_topics = topics
        if not self.is_mounted:
            return
        pal = palette(self.app)
        needle = self._query.casefold()
        own, below = self._summaries(topics)
        width = self.scrollable_content_region.width
        for node in self._on_screen_lines():
            path = node.data
            if path is None:
                continue
            level = path.rsplit("/", 1)[-1] or "∅"
            label = plain(level, 200)
            if needle and needle in path.casefold():
                start = label.plain.casefold().find(needle)
                if start >= 0:
                    label.stylize(pal.warn + Style(bold=True, reverse=True), start, start + len(needle))
                else:  # the match spans levels: mark the whole name
                    label.stylize(pal.warn + Style(underline=True))
            info = own.get(path)
            sub = below.get(path)
            summary = sub if sub is not None and not node.is_expanded else None
            figures = _figures(pal, info, summary, with_rate=True)
            # A long level name gives way to its figures (ellipsis), so the counts are never cut. The rate goes
            # first where that leaves the name whole (a worker's status topic: which worker is worth more than
            # its 1.0/s), or where even a recognisable name (6 cells) and the count leave no room for it.
            guides = _indent(node, self.guide_depth)
            room = width - guides - figures.cell_len
            if width > 0 and label.cell_len > room and info is not None and info.rate > 0:
                bare = _figures(pal, info, summary, with_rate=False)
                bare_room = width - guides - bare.cell_len
                if label.cell_len <= bare_room or room < _MIN_NAME:
                    figures, room = bare, bare_room
            if width > 0 and label.cell_len > room:
                label = _shortened(label, max(room, _MIN_NAME))
            label.append_text(figures)
            key = label.markup
            if self._labels.get(path) != key:
                self._labels[path] = key
                node.set_label(label)


def _indent(node: TreeNode[str], guide_depth: int) -> int:
    """The cells before a node's name (the root hidden): a guide for each level above it, and the ▶/▼ of a
    level that opens (a topic with none below has none)."""
    return str(node.data).count("/") * guide_depth + (2 if node.allow_expand else 0)


def _shortened(label: Text, cells: int) -> Text:
    """`label` in `cells` (at least 3): its start and its end around an ellipsis, so that ids that differ at
    the end (`infer-vm-6597`, `infer-vm-6598`) still do (`infer…6597`); counted in cells, wide characters
    (CJK, emoji) whole (`fmt.middle_cut`). The search's highlight stays on the parts kept."""
    head, tail = fmt.middle_cut(label.plain, cells)
    return Text.assemble(label[:head], "…", label[tail:])


def _figures(pal: Palette, info: TopicInfo | None, summary: list[float] | None, *, with_rate: bool) -> Text:
    """What follows a level's name: its count, rate and retained mark, and for a folded inner level
    the number of topics and messages below it."""
    figures = Text()
    if info is not None:
        figures.append(f"  {fmt.count(info.count)}", style=pal.accent)
        if with_rate and info.rate > 0:
            figures.append(f" {fmt.rate(info.rate)}", style=pal.muted)
        if info.retained:
            figures.append(" R", style=pal.warn)
    if summary is not None:
        figures.append(f"  [{fmt.plural(int(summary[2]), 'topic')}, {fmt.count(summary[0])}]", style=pal.muted)
    return figures
