"""Theme colours for Rich text built in code (DataTable cells, Line API strips): follows the app's theme.

A theme's variables are Textual colours, and the ANSI themes (`ansi-dark`, `ansi-light`) name the
terminal's own palette (`ansi_green`, `ansi_default`), which Rich's parser does not read: every colour
here goes through Textual's `Color.parse`.
"""

from __future__ import annotations

from typing import NamedTuple

from rich.style import Style
from textual.app import App
from textual.color import Color, ColorParseError


class Palette(NamedTuple):
    ok: Style
    bad: Style
    warn: Style
    accent: Style
    muted: Style
    bold: Style


def theme_colour(app: App, *names: str, default: str) -> Color:
    """The first of the theme's variables `names` that is set and parses, else `default`."""
    variables = app.theme_variables
    for name in names:
        value = variables.get(name)
        if value:
            try:
                return Color.parse(value)
            except ColorParseError:
                continue
    return Color.parse(default)


def solid_colour(app: App, *names: str, default: str) -> Color:
    """Like `theme_colour`, as plain RGB to blend with: the terminal's default colour (`ansi_default`, whose
    RGB is unknown) gives `default`, and an ANSI colour its usual RGB (blending keeps one side's ANSI number)."""
    colour = theme_colour(app, *names, default=default)
    if colour.ansi == -1:
        return Color.parse(default)
    return Color(*colour.rgb) if colour.ansi is not None else colour


def palette(app: App) -> Palette:
    """Styles from the current theme's success / error / warning / accent colours, in their text variants
    (`text-success`, ...), which the theme makes readable on its background, light or dark."""

    def style(name: str, default: str) -> Style:
        return Style(color=theme_colour(app, f"text-{name}", name, default=default).rich_color)

    return Palette(
        ok=style("success", "green"),
        bad=style("error", "red"),
        warn=style("warning", "yellow"),
        accent=style("accent", "blue"),
        muted=Style(dim=True),
        bold=Style(bold=True),
    )
