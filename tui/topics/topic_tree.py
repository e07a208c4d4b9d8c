"""The topic tree of the Topics pane: one node per topic level, with message counts and rates."""

from __future__ import annotations

import bisect

from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from engine.console.observer import TopicInfo
from tui.safe_text import plain
from tui.widgets import formatting as fmt
from tui.widgets.palette import palette

EXPAND_ALL_UP_TO = 60  # topics; with more, new nodes start folded below the first level


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

    @property
    def topic_names(self) -> set[str]:
        return self._topics

    @property
    def selected_path(self) -> str | None:
        node = self.cursor_node
        return node.data if node is not None else None

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

    def _relabel(self, topics: tuple[TopicInfo, ...]) -> None:
        pal = palette(self.app)
        below: dict[str, list[float]] = {}
        for t in topics:
            parts = t.name.split("/")
            for i in range(1, len(parts)):
                acc = below.setdefault("/".join(parts[:i]), [0, 0.0, 0])
                acc[0] += t.count
                acc[1] += t.rate
                acc[2] += 1
        own = {t.name: t for t in topics}
        for path, node in self._path_nodes.items():
            level = path.rsplit("/", 1)[-1] or "∅"
            label = plain(level, 200)
            info = own.get(path)
            if info is not None:
                label.append(f"  {fmt.count(info.count)}", style=pal.accent)
                if info.rate > 0:
                    label.append(f" {fmt.rate(info.rate)}", style=pal.muted)
                if info.retained:
                    label.append(" R", style=pal.warn)
            sub = below.get(path)
            if sub is not None and not node.is_expanded:
                label.append(f"  [{fmt.plural(int(sub[2]), 'topic')}, {fmt.count(sub[0])}]", style=pal.muted)
            key = label.markup
            if self._labels.get(path) != key:
                self._labels[path] = key
                node.set_label(label)
