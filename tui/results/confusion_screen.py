"""The confusion matrix of every labelled result so far (`m` opens and closes it), live.

The counts are the observer's, over all results since the last clear. Picking a cell lists its results
(for a cell off the diagonal: the misclassified digits), newest first, from the results the console
still holds (the newest 10,000); enter on one opens it up close.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from engine.console.observer import ResultRow, Snapshot
from tui.messages import OpenResult
from tui.results.confusion_matrix import ConfusionMatrix
from tui.safe_text import plain
from tui.widgets import formatting as fmt
from tui.widgets.palette import palette

HINT = "[dim]arrows + enter or a click: pick a cell, then a digit · [/]m[dim] or [/]escape[dim] closes[/]"


def worst_cell(counts: tuple[tuple[int, ...], ...]) -> tuple[int, int] | None:
    """The most frequent confusion (label, pred), or None when nothing was misclassified."""
    best, cell = 0, None
    for label, row in enumerate(counts):
        for pred, n in enumerate(row):
            if label != pred and n > best:
                best, cell = n, (label, pred)
    return cell


def cell_rows(results: tuple[ResultRow, ...], label: int, pred: int) -> list[ResultRow]:
    """The results of one cell, newest first."""
    return [r for r in reversed(results) if r.label == label and r.pred == pred and r.error is None]


class CellList(DataTable[Any]):
    """The results of the picked cell. Escape here closes the screen, as it does on the matrix: the list is
    always in view, so giving the focus back to the matrix would look like escape did nothing (tab, shift+tab
    or a click move between the two)."""


class ConfusionScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,m", "close", "Close")]

    def __init__(self, snap: Snapshot | None = None) -> None:
        super().__init__()
        self._first_snap = snap
        self.cell: tuple[int, int] | None = None
        self.listed: list[ResultRow] = []
        self._listed_key: tuple[Any, ...] | None = None
        self._results: tuple[ResultRow, ...] = ()

    def compose(self) -> ComposeResult:
        with Vertical(id="confusion", classes="dialog"):
            yield ConfusionMatrix(id="cm-matrix")
            yield Static("", id="cm-cell")
            table = CellList(id="cm-list", cursor_type="row")
            for key, title in (("time", "time"), ("id", "id"), ("pred", "pred"), ("label", "label"),
                               ("conf", "conf"), ("worker", "worker")):
                table.add_column(title, key=key)
            yield table
            yield Static(HINT, classes="dialog-hint")

    @property
    def matrix(self) -> ConfusionMatrix:
        return self.query_one(ConfusionMatrix)

    def on_mount(self) -> None:
        box = self.query_one("#confusion", Vertical)
        box.border_title = "Confusion matrix"
        snap, self._first_snap = self._first_snap, None
        if snap is not None:
            self.update_snapshot(snap)
            start = worst_cell(snap.stats.confusion)
            if start is not None:
                self.matrix.cursor = start
        self._list(*self.matrix.cursor)
        self.set_focus(self.matrix)  # now, not after the keys typed right after `m` (see keys.Key.binding)

    def on_resize(self) -> None:
        self._fit()

    def _fit(self) -> None:
        """Counts grow: so does the dialog, up to the screen's width; past it the matrix shortens them."""
        frame = 4  # the dialog's border and padding
        self.matrix.set_room(self.size.width - frame if self.size.width else None)
        width = min(max(76, self.matrix.needed_width + frame), max(self.size.width, 20))
        box = self.query_one("#confusion", Vertical)
        if box.styles.width is None or box.styles.width.value != width:
            box.styles.width = width

    def update_snapshot(self, snap: Snapshot) -> None:
        stats = snap.stats
        self.matrix.set_counts(stats.confusion)
        self._fit()
        box = self.query_one("#confusion", Vertical)
        acc = fmt.percent(stats.accuracy) if stats.accuracy is not None else "-"
        subtitle = f"{fmt.count(stats.labelled)} labelled results · accuracy {acc}"
        if stats.counted_only:  # engine/console/sampling.py: at high rates the matrix is of a sample
            subtitle += f" · a sample of {fmt.count(stats.received)}"
        if box.border_subtitle != subtitle:
            box.border_subtitle = subtitle
        self._results = snap.results
        if self.cell is not None:
            self._list(*self.cell)

    def _list(self, label: int, pred: int) -> None:
        rows = cell_rows(self._results, label, pred)
        total = self.matrix.counts[label][pred]
        key = (label, pred, total, rows[0].seq if rows else None, len(rows))
        if key == self._listed_key:
            return
        self._listed_key = key
        self.cell = (label, pred)
        self.listed = rows
        what = "correct" if label == pred else "misclassified"
        held = "" if len(rows) == total else f" [dim]({fmt.count(len(rows))} still held)[/]"
        self.query_one("#cm-cell", Static).update(
            f"label [b]{label}[/] predicted as [b]{pred}[/]: {fmt.count(total)} {what}{held}")
        table = self.query_one(CellList)
        keep = table.cursor_row
        pal = palette(self.app)
        table.clear()
        for row in rows[:500]:
            table.add_row(
                # a str cell is read as markup by DataTable: the result's id and worker are the broker's text
                Text(fmt.clock(row.t), style=pal.muted), plain(row.id or "-"),
                Text(str(row.pred), style=pal.ok if label == pred else pal.bad), str(row.label),
                f"{row.conf:.3f}" if row.conf is not None else "-", plain(row.worker or "-", style=pal.muted),
            )
        if rows:
            table.move_cursor(row=min(keep, len(rows) - 1), animate=False)

    @on(ConfusionMatrix.CellHighlighted)
    def _highlighted(self, event: ConfusionMatrix.CellHighlighted) -> None:
        self._list(event.label, event.pred)

    @on(ConfusionMatrix.CellSelected)
    def _selected(self, event: ConfusionMatrix.CellSelected) -> None:
        if type(event) is not ConfusionMatrix.CellSelected:
            return
        self._list(event.label, event.pred)
        if self.listed:
            self.query_one(CellList).focus()

    @on(DataTable.RowSelected, "#cm-list")
    def _open(self, event: DataTable.RowSelected) -> None:
        index = event.cursor_row
        if 0 <= index < len(self.listed):
            self.post_message(OpenResult(tuple(self.listed), index))

    def action_close(self) -> None:
        self.dismiss(None)
