"""A 10x10 confusion matrix (rows: true label, columns: prediction) with a cell cursor.

Arrows move the cursor, enter or a click picks a cell (`CellSelected`). Correct answers sit on the
diagonal in the theme's success colour, confusions off it in the error colour; a zero is a dot.
Each row ends with the label's recall (correct / all with that label). Where the counts in full do not
fit the room it is given (`room`, an 80-column terminal once a cell passes 1,000), they are shortened
(1.2k, 12k, 1.2M).
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widget import Widget

from tui import keys
from tui.widgets.palette import palette

LABEL_WIDTH = 7  # "label 7"
RECALL_WIDTH = 8


def cell_width(counts: Sequence[Sequence[int]]) -> int:
    """Columns a cell takes with its count in full (12,345) and two spaces before it."""
    top = max((max(row) for row in counts), default=0)
    return max(4, len(f"{top:,}") + 2)


SHORT_CELL = 5  # a shortened count (at most four characters) and a space


def short(n: int) -> str:
    """At most four characters: 999, 1.2k, 12k, 123k, 1.2M, 12M, 123M, 1.2G ..."""
    if n < 1_000:
        return str(n)
    for unit, scale in (("k", 1_000), ("M", 1_000_000), ("G", 1_000_000_000), ("T", 1_000_000_000_000)):
        value = n / scale
        if value < 9.95:
            return f"{value:.1f}{unit}"
        if value < 999.5:
            return f"{value:.0f}{unit}"
    return "many"


class ConfusionMatrix(Widget, can_focus=True):
    """`counts[label][pred]`; `cursor` is (label, pred)."""

    DEFAULT_CSS = """
    ConfusionMatrix { height: 12; width: auto; }
    """

    BINDINGS = [
        *keys.arrow_bindings("move({}, {})", swap=True),
        Binding("enter", "pick", "Show digits"),
    ]

    class CellSelected(Message):
        def __init__(self, matrix: ConfusionMatrix, label: int, pred: int) -> None:
            super().__init__()
            self.matrix = matrix
            self.label = label
            self.pred = pred

        @property
        def control(self) -> ConfusionMatrix:
            return self.matrix

    class CellHighlighted(CellSelected):
        """The cursor moved to a cell."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.counts: tuple[tuple[int, ...], ...] = tuple((0,) * 10 for _ in range(10))
        self.cursor = (0, 0)
        self.room: int | None = None  # columns it may take (None: as many as it needs)

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.refresh())

    def set_counts(self, counts: Sequence[Sequence[int]]) -> None:
        new = tuple(tuple(int(v) for v in row) for row in counts)
        if new != self.counts:
            before = self.cell_width
            self.counts = new
            self.refresh(layout=self.cell_width != before)

    def set_room(self, room: int | None) -> None:
        if room != self.room:
            before = self.cell_width
            self.room = room
            self.refresh(layout=self.cell_width != before)

    @property
    def shortened(self) -> bool:
        """The counts do not fit the room in full: each is shown in at most four characters."""
        full = LABEL_WIDTH + 10 * cell_width(self.counts) + RECALL_WIDTH
        return self.room is not None and full > self.room and cell_width(self.counts) > SHORT_CELL

    @property
    def cell_width(self) -> int:
        return SHORT_CELL if self.shortened else cell_width(self.counts)

    @property
    def needed_width(self) -> int:
        return LABEL_WIDTH + 10 * self.cell_width + RECALL_WIDTH

    def get_content_width(self, container: object, viewport: object) -> int:
        return self.needed_width

    def get_content_height(self, container: object, viewport: object, width: int) -> int:
        return 12

    def move_to(self, label: int, pred: int) -> None:
        label, pred = max(0, min(9, label)), max(0, min(9, pred))
        if (label, pred) != self.cursor:
            self.cursor = (label, pred)
            self.refresh()
            self.post_message(self.CellHighlighted(self, label, pred))

    def action_move(self, dl: int, dp: int) -> None:
        self.move_to(self.cursor[0] + dl, self.cursor[1] + dp)

    def action_pick(self) -> None:
        self.post_message(self.CellSelected(self, *self.cursor))

    def cell_at(self, x: int, y: int) -> tuple[int, int] | None:
        """The (label, pred) cell at content offset (x, y), if any."""
        w = self.cell_width
        label, pred = y - 2, (x - LABEL_WIDTH) // w if x >= LABEL_WIDTH else -1
        if 0 <= label <= 9 and 0 <= pred <= 9:
            return label, pred
        return None

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        cell = self.cell_at(offset.x, offset.y) if offset is not None else None
        if cell is not None:
            self.focus()
            self.move_to(*cell)
            self.post_message(self.CellSelected(self, *cell))

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    def render(self) -> Text:
        pal = palette(self.app)
        w = self.cell_width
        count = short if self.shortened else "{:,}".format
        out = Text(no_wrap=True, overflow="crop")
        out.append(" " * LABEL_WIDTH + "prediction".center(10 * w) + "\n", pal.muted)
        out.append("label".ljust(LABEL_WIDTH), pal.muted)
        for pred in range(10):
            out.append(f"{pred}".rjust(w - 1) + " ", pal.bold)
        out.append("recall".rjust(RECALL_WIDTH) + "\n", pal.muted)
        cursor_style = Style(reverse=True, bold=True) if self.has_focus else Style(underline=True, bold=True)
        for label in range(10):
            row = self.counts[label]
            out.append(f"{label}".rjust(3).ljust(LABEL_WIDTH), pal.bold)
            for pred in range(10):
                n = row[pred]
                text = count(n) if n else "·"
                if not n:
                    style = pal.muted
                elif label == pred:
                    style = pal.ok
                else:
                    style = pal.bad + pal.bold
                if (label, pred) == self.cursor:
                    out.append(" " * (w - 1 - len(text)))
                    out.append(text, style + cursor_style)
                    out.append(" ")
                else:
                    out.append(text.rjust(w - 1) + " ", style)
            total = sum(row)
            recall = f"{row[label] / total * 100:.1f}%" if total else "-"
            out.append(recall.rjust(RECALL_WIDTH), pal.muted if not total else Style())
            if label < 9:
                out.append("\n")
        return out
