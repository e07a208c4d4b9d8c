"""Toasts that give way to a dialog: the passing ones go, errors stay (they are said nowhere else)."""

from __future__ import annotations

from typing import Any

from textual.app import App


def clear_passing(app: App[Any]) -> None:
    """Remove every toast that is not an error. A dialog calls this as it opens: at 80x24 a toast is half
    the screen wide and sat on its input and buttons. Textual offers only clearing them all, so this
    walks its collection (`_notifications`, `_unnotify`)."""
    notes = getattr(app, "_notifications", None)
    if notes is None:
        return
    for note in list(notes):
        if note.severity != "error":
            app._unnotify(note, refresh=False)
    app._refresh_notifications()
