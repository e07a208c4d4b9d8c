"""A PlotextPlot whose drawing cannot take the console down.

plotext raises on some numbers it is given (an overflow to infinity near 1e308, a NaN from a range it
cannot divide), and it draws in `render`, where an exception ends the app. The numbers come from the
broker; the plot screen scales them first (engine.console.series.for_plot), and this is the guard for
whatever still slips through: a line that says the numbers cannot be drawn, and a log line.
"""

from __future__ import annotations

import logging

from rich.text import Text
from textual.app import RenderResult
from textual_plotext import PlotextPlot

log = logging.getLogger(__name__)


class SafePlot(PlotextPlot):
    def render(self) -> RenderResult:
        try:
            return super().render()
        except Exception as exc:  # plotext's own arithmetic on data from the broker: shown, never raised
            log.warning("plot %s: plotext could not draw it: %s: %s", self.id, type(exc).__name__, exc)
            return Text(f"these numbers cannot be drawn ({type(exc).__name__})", style="dim")
