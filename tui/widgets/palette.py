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


PlotColour = str | tuple[int, int, int]  # a plotext colour: a name ("blue") or RGB


def plot_colours(app: App, names: tuple[str, ...]) -> list[PlotColour]:
    """Line colours for a plotext chart: the theme's variables `names` as RGB, or, in a theme of the terminal's
    own colours (ANSI), plotext's names for those, which the terminal maps to its palette as it does the rest."""
    if app.current_theme.ansi:
        return ["blue", "green", "red", "cyan", "magenta", "yellow"][: max(1, len(names))]
    variables = app.theme_variables
    return [solid_colour(app, name, default="#0080ff").rgb for name in names if name in variables] or [(0, 128, 255)]


def plot_theme(app: App) -> str:
    """The plotext theme for a chart (its canvas, axes and labels): "auto", made from the app's theme by
    textual-plotext, except in an ANSI theme, whose `ansi_default` colours that would read as black on black:
    there "clear", the terminal's own foreground and background."""
    return "clear" if app.current_theme.ansi else "auto"


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
