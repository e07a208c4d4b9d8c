"""Messages the panes and dialogs post to the app instead of reaching into it (handled in tui/app.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from textual.message import Message

from engine.console.observer import ResultRow


@dataclass
class RefreshWanted(Message):
    """Something the next refresh shows changed (a topic picked, charts shown): refresh now, not at the tick."""

    full: bool = True


@dataclass
class OpenResult(Message):
    """Show `rows[index]` up close (with the image the console keeps for it)."""

    rows: Sequence[ResultRow]
    index: int
