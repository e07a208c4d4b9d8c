"""Theme colours for Rich text built in code (DataTable cells, Line API strips): follows the app's theme."""

from __future__ import annotations

from typing import NamedTuple

from rich.style import Style
from textual.app import App


class Palette(NamedTuple):
    ok: Style
    bad: Style
    warn: Style
    accent: Style
    muted: Style
    bold: Style


def palette(app: App) -> Palette:
    """Styles from the current theme's success / error / warning / accent colours, in their text variants
    (`text-success`, ...), which the theme makes readable on its background, light or dark."""
    v = app.theme_variables
    return Palette(
        ok=Style.parse(v.get("text-success", v.get("success", "green"))),
        bad=Style.parse(v.get("text-error", v.get("error", "red"))),
        warn=Style.parse(v.get("text-warning", v.get("warning", "yellow"))),
        accent=Style.parse(v.get("text-accent", v.get("accent", "blue"))),
        muted=Style(dim=True),
        bold=Style(bold=True),
    )
