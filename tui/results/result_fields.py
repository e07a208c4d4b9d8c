"""A result's facts, one per line, a long value wrapped under itself (the result detail's side)."""

from __future__ import annotations

import textwrap

from textual.events import Resize
from textual.widgets import Static

from engine.console.observer import ResultRow
from tui.safe_text import markup_text
from tui.widgets import formatting as fmt

KEY_WIDTH = 12  # "prediction" and two spaces


def fields_markup(row: ResultRow, width: int = 0) -> str:
    """The result's facts, one per line; with `width`, an error that does not fit goes on under its own
    start, not under the names (an error result's reason is the one long value)."""
    label = "-" if row.label is None else str(row.label)
    if row.error is not None:
        text = f"error: {row.error}"
        room = width - KEY_WIDTH
        parts = textwrap.wrap(text, room, break_long_words=True) if room >= 10 else [text]
        verdict = f"\n{' ' * KEY_WIDTH}".join(f"[$text-error]{markup_text(part)}[/]" for part in parts)
    else:
        mark = {True: " [$text-success]✓ correct[/]", False: " [$text-error]✗ wrong[/]", None: ""}[row.correct]
        conf = f" [dim]·[/] {row.conf * 100:.1f}%" if row.conf is not None else ""
        verdict = f"[b]{row.pred if row.pred is not None else '-'}[/]{mark}{conf}"
    lines = [
        f"label       [b]{label}[/]",
        f"prediction  {verdict}",
        f"worker      {markup_text(row.worker or '-')}",
        f"latency     {fmt.ms(row.latency_ms)}",
        f"model       {markup_text(row.model or '-')}",
        f"time        {fmt.clock(row.t)}",
    ]
    return "\n".join(lines)


class ResultFields(Static):
    """`show(row)`; laid out again for its width when that changes."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.row: ResultRow | None = None

    def show(self, row: ResultRow) -> None:
        self.row = row
        self.update(fields_markup(row, self.content_size.width))

    def on_resize(self, event: Resize) -> None:
        if self.row is not None:
            self.update(fields_markup(self.row, event.size.width))
