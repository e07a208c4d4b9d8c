"""An endless results log that renders only the lines on screen (Textual's Line API, as Toolong does).

The rows come from observer snapshots (a bounded ring, newest last) at a steady rate; nothing here
grows with the number of results that went by. While the view is at the bottom it follows the newest
row; scrolled up, it stays on the rows being read even as old ones drop out of the ring.

A cursor picks one row (arrows, or a click); enter or the click posts `Selected`, and the app opens the
result's detail. The cursor belongs to a result, not a line: it stays on it while new rows arrive, and
End lets it go and follows the newest again.
"""

from __future__ import annotations

from typing import ClassVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from engine.console.observer import ResultRow
from engine.untrusted import visible_text
from tui.widgets import formatting as fmt
from tui.widgets.palette import Palette, palette

Column = tuple[str, int, str]  # (title, width, justify)


def columns_for(width: int) -> list[Column]:
    """The columns that fit `width`, most important first kept."""
    if width >= 76:
        cols = [("time", 12, "left"), ("id", 20, "left"), ("pred", 4, "center"), ("label", 5, "center"),
                ("", 1, "left"), ("conf", 5, "right"), ("latency", 9, "right")]
        used = sum(c[1] + 1 for c in cols)
        return [*cols, ("worker", max(6, width - used), "left")]
    if width >= 50:
        cols = [("time", 8, "left"), ("id", 12, "left"), ("pred", 4, "center"), ("label", 5, "center"),
                ("", 1, "left"), ("conf", 5, "right"), ("latency", 8, "right")]
        return cols
    return [("time", 8, "left"), ("pred", 4, "center"), ("label", 5, "center"), ("", 1, "left"),
            ("conf", 5, "right"), ("lat", 8, "right")]


def header_text(width: int) -> str:
    return " ".join(_cell(title, w, j) for title, w, j in columns_for(width))


def _cell(text: str, width: int, justify: str) -> str:
    """`text` in exactly `width` cells: cut with an ellipsis when longer (counting wide characters as two)."""
    if cell_len(text) > width:
        text = set_cell_size(text, width - 1) + "…" if width > 1 else set_cell_size(text, width)
    pad = width - cell_len(text)
    if justify == "right":
        return " " * pad + text
    if justify == "center":
        return " " * (pad // 2) + text + " " * (pad - pad // 2)
    return text + " " * pad


def row_segments(row: ResultRow, cols: list[Column], pal: Palette, line_width: int | None = None) -> list[Segment]:
    """One result as styled cells of the given columns; an error's reason fills the line to `line_width` (default:
    to the last column) and no further."""
    out: list[Segment] = []
    millis = cols[0][1] >= 12
    for i, (title, width, justify) in enumerate(cols):
        style: Style | None = None
        if title == "time":
            text = fmt.clock(row.t, millis=millis)
            style = pal.muted
        elif title == "id":
            # visible_text: a skin-tone modifier or a variation selector made the row narrower or wider on a
            # terminal than the layout counted (the detail view shows the same escapes)
            text = fmt.ellipsize_left(visible_text(row.id) if row.id else ("(legacy)" if row.legacy else "-"), width)
        elif row.error is not None and title in ("pred", "label") and i == next(
            j for j, c in enumerate(cols) if c[0] == "pred"
        ):
            # The reason takes the columns from pred to the end, cut to fit them: the columns before it hold.
            rest = sum(c[1] + 1 for c in cols[i:]) - 1
            if line_width is not None:
                rest = max(rest, line_width - sum(cell_len(seg.text) for seg in out) - (1 if i else 0))
            if i:
                out.append(Segment(" "))
            out.append(Segment(_cell(f"error: {row.error}", rest, "left"), pal.bad))
            break
        elif title == "pred":
            text = "-" if row.pred is None else str(row.pred)
            style = pal.bold
        elif title == "label":
            text = "-" if row.label is None else str(row.label)
        elif title == "":
            ok = row.correct
            text = "✓" if ok else ("✗" if ok is False else "·")
            style = pal.ok if ok else (pal.bad if ok is False else pal.muted)
        elif title == "conf":
            text = "-" if row.conf is None else f"{row.conf:.3f}"[:width]
        elif title in ("latency", "lat"):
            text = fmt.ms(row.latency_ms)
        elif title == "worker":
            text = visible_text(row.worker) if row.worker else "-"
            style = pal.muted
        else:
            text = ""
        if i:
            out.append(Segment(" "))
        out.append(Segment(_cell(text, width, justify), style))
    return out


CACHED_LINES = 256  # rendered rows kept; pruned to the rows in view beyond that


def _virtual_height(rows: int) -> int:
    """Grow the virtual height in steps: each change of it costs a layout of the whole screen."""
    return rows if rows < 256 else -(-rows // 512) * 512


class ResultsLog(ScrollView, can_focus=True):
    """Rows of results; call `set_rows` with each snapshot's rows."""

    DEFAULT_CSS = """
    ResultsLog { height: 1fr; overflow-x: hidden; }
    ResultsLog > .results-log--cursor {
        background: $block-cursor-blurred-background;
        color: $block-cursor-blurred-foreground;
    }
    ResultsLog:focus > .results-log--cursor {
        background: $block-cursor-background;
        color: $block-cursor-foreground;
        text-style: $block-cursor-text-style;
    }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {"results-log--cursor"}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "cursor_page(-1)", "Page up", show=False),
        Binding("pagedown", "cursor_page(1)", "Page down", show=False),
        Binding("home", "cursor_home", "Oldest", show=False),
        Binding("end", "follow", "Newest", show=False),
        Binding("enter", "select", "Open"),
    ]

    class Selected(Message):
        """A row was picked (enter or click): `rows` is the log's rows then, `index` the row's place."""

        def __init__(self, log: ResultsLog, rows: tuple[ResultRow, ...], index: int) -> None:
            super().__init__()
            self.log = log
            self.rows = rows
            self.index = index

        @property
        def row(self) -> ResultRow:
            return self.rows[self.index]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._rows: tuple[ResultRow, ...] = ()
        self._cache: dict[int, Strip] = {}
        self._cache_key: tuple[int, str] | None = None
        self._follow = True
        self._moving = False
        self._cursor: int | None = None  # the seq of the row under the cursor

    @property
    def cursor_row(self) -> ResultRow | None:
        index = self._cursor_index()
        return self._rows[index] if index is not None else None

    def _cursor_index(self) -> int | None:
        if self._cursor is None or not self._rows:
            return None
        index = self._cursor - self._rows[0].seq  # seqs are consecutive within the ring...
        if 0 <= index < len(self._rows) and self._rows[index].seq == self._cursor:
            return index
        for i, row in enumerate(self._rows):  # ...unless results were cleared in between
            if row.seq == self._cursor:
                return i
        return None

    def move_cursor(self, index: int) -> None:
        """Put the cursor on row `index` (clamped) and scroll it into view; following stops."""
        if not self._rows:
            return
        index = max(0, min(len(self._rows) - 1, index))
        self._cursor = self._rows[index].seq
        self._follow = False
        height = self.scrollable_content_region.height
        top = int(self.scroll_y)
        if index < top:
            self._scroll_quietly(index)
        elif index >= top + height:
            self._scroll_quietly(index - height + 1)
        self.refresh()

    def action_cursor(self, step: int) -> None:
        index = self._cursor_index()
        if index is None:  # no cursor yet: start at the bottom line in view
            bottom = int(self.scroll_y) + self.scrollable_content_region.height - 1
            self.move_cursor(min(bottom, len(self._rows) - 1))
            return
        self.move_cursor(index + step)

    def action_cursor_page(self, direction: int) -> None:
        index = self._cursor_index()
        height = max(1, self.scrollable_content_region.height - 1)
        base = index if index is not None else int(self.scroll_y) + height
        self.move_cursor(base + direction * height)

    def action_cursor_home(self) -> None:
        self.move_cursor(0)

    def action_follow(self) -> None:
        self._cursor = None
        self.follow()
        self.refresh()

    def action_select(self) -> None:
        index = self._cursor_index()
        if index is None:
            if not self._rows:
                return
            index = len(self._rows) - 1  # enter with no cursor: the newest result
            self.move_cursor(index)
        self.post_message(self.Selected(self, self._rows, index))

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        index = int(self.scroll_y) + offset.y
        if 0 <= index < len(self._rows):
            self.focus()
            self.move_cursor(index)
            self.post_message(self.Selected(self, self._rows, index))

    @property
    def rows(self) -> tuple[ResultRow, ...]:
        return self._rows

    @property
    def max_scroll_y(self) -> int:
        """Scroll no further than the last row (the virtual height may be a step larger)."""
        return max(0, len(self._rows) - self.scrollable_content_region.height)

    @property
    def following(self) -> bool:
        """At the bottom: new rows scroll into view."""
        return self._follow

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if not self._moving and self._cursor is None:  # scrolled: follow again once back at the bottom
            self._follow = new_value >= self.max_scroll_y - 0.5

    def on_resize(self) -> None:
        if self._follow:
            self._scroll_quietly(self.max_scroll_y)

    def _scroll_quietly(self, y: float) -> None:
        self._moving = True
        try:
            self.scroll_to(y=y, animate=False, force=True, immediate=True)
        finally:
            self._moving = False

    def follow(self) -> None:
        self._follow = True
        self._scroll_quietly(self.max_scroll_y)

    def set_rows(self, rows: tuple[ResultRow, ...]) -> None:
        old = self._rows
        if rows is old or (
            rows and old and len(rows) == len(old) and rows[-1].seq == old[-1].seq and rows[0].seq == old[0].seq
        ):
            return
        shift = 0
        if old and rows and not self._follow:
            shift = rows[0].seq - old[0].seq  # rows that dropped out of the ring above the view
        self._rows = rows
        if self._cursor is not None and (not rows or rows[0].seq > self._cursor):
            self._cursor = None  # its row dropped out of the ring (or the results were cleared)
        self.virtual_size = Size(self.scrollable_content_region.width, _virtual_height(len(rows)))
        if self._follow:
            self._scroll_quietly(self.max_scroll_y)
        elif shift:
            self._scroll_quietly(max(0, self.scroll_y - shift))
        if len(self._cache) > CACHED_LINES:
            self._prune_cache()
        self.refresh()

    def _prune_cache(self) -> None:
        """Keep the rendered lines of the rows in view only. Each cached line is a few dozen Python objects,
        and the console's pauses for garbage collection grow with every object it holds: with thousands of
        lines kept, a full collection took 0.2-0.3 s, and a key waited for it."""
        top = int(self.scroll_y)
        seqs = {row.seq for row in self._rows[top: top + self.scrollable_content_region.height]}
        self._cache = {seq: strip for seq, strip in self._cache.items() if seq in seqs}

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.scrollable_content_region.width
        if index >= len(self._rows):
            return Strip.blank(width, self.rich_style)
        key = (width, self.app.theme)
        if key != self._cache_key:
            self._cache_key = key
            self._cache.clear()
            self._cols = columns_for(width)
            self._pal = palette(self.app)
        row = self._rows[index]
        strip = self._cache.get(row.seq)
        if strip is None:
            base = self.rich_style
            segments = [Segment(text, base + style if style else base) for text, style, _c in
                        row_segments(row, self._cols, self._pal, width)]
            used = sum(cell_len(seg.text) for seg in segments)
            if used < width:
                segments.append(Segment(" " * (width - used), base))
            strip = Strip(segments, max(used, width))
            self._cache[row.seq] = strip
        if row.seq == self._cursor:
            cursor = self.get_component_rich_style("results-log--cursor")
            strip = Strip(Segment.apply_style(list(strip), post_style=cursor), strip.cell_length)
        return strip if scroll_x == 0 and strip.cell_length == width else strip.crop(scroll_x, scroll_x + width)
