"""Throughput and latency of every infer worker over the last minutes, as two plots side by side.

One line per worker, from the rate and p50 latency in its status messages (about one a second; the
observer keeps the last five minutes of them). The x axis is seconds before now. Line colours come
from the theme, so they stay readable on light and dark ones. Redrawn when a status arrives, not on
every screen refresh.
"""

from __future__ import annotations

import math

from textual.app import ComposeResult
from textual.containers import Horizontal

from engine.console.observer import HISTORY, RoleStatus, Snapshot
from tui.safe_text import single_cell_text
from tui.widgets.palette import PlotColour, plot_colours, plot_theme
from tui.widgets.safe_plot import SafePlot

WINDOW = float(HISTORY)  # seconds shown (a status a second)
COLOUR_VARIABLES = ("text-primary", "text-success", "text-warning", "text-error", "text-secondary", "text-accent")


def nice_ticks(top: float, most: int = 5) -> list[float]:
    """Evenly spaced axis ticks from 0 to at least `top`, on a step of 1, 2 or 5 times a power of ten."""
    if not top > 0 or not math.isfinite(top):
        return [0.0, 1.0]
    rough = top / (most - 1)
    power = 10.0 ** math.floor(math.log10(rough))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= rough)
    n = math.ceil(top / step - 1e-9)
    return [round(i * step, 10) for i in range(n + 1)]


class WorkerCharts(Horizontal):
    """Two plots (SafePlot): images/s and p50 latency (ms) per worker."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._key: tuple[object, ...] | None = None
        self.lines = 0  # workers in the plots drawn last

    def compose(self) -> ComposeResult:
        yield SafePlot(id="chart-rate")
        yield SafePlot(id="chart-latency")

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._redraw_later())

    def _redraw_later(self) -> None:
        self._key = None

    def _colours(self) -> list[PlotColour]:
        theme = plot_theme(self.app)
        for plot in self.query(SafePlot):
            plot.theme = theme  # type: ignore[assignment]
        return plot_colours(self.app, COLOUR_VARIABLES)

    def update_snapshot(self, snap: Snapshot) -> None:
        workers = [r for r in snap.roles_of("infer") if r.history_t]
        key = (tuple((r.id, r.received) for r in workers), self.size)
        if key == self._key:
            return
        self._key = key
        colours = self._colours()
        self.lines = len(workers)
        self._plot("#chart-rate", "images/s", workers, snap.time, colours, latency=False)
        self._plot("#chart-latency", "p50 latency ms", workers, snap.time, colours, latency=True)

    def _plot(self, selector: str, title: str, workers: list[RoleStatus], now: float,
              colours: list[PlotColour], latency: bool) -> None:
        widget = self.query_one(selector, SafePlot)
        plt = widget.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(title)
        plt.xlim(-WINDOW, 0)
        top = 0.0
        for i, role in enumerate(workers):
            values = role.lat_history if latency else role.history
            points = [(t - now, v) for t, v in zip(role.history_t, values, strict=False)
                      if v is not None and now - t <= WINDOW]
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            top = max(top, *ys)
            label = single_cell_text(role.id) if len(workers) > 1 else None
            plt.plot(list(xs), list(ys), color=colours[i % len(colours)], marker="braille", label=label)
        ticks = nice_ticks(top)
        plt.ylim(0, ticks[-1])
        plt.yticks(ticks, [f"{t:g}" for t in ticks])
        plt.xticks([-300, -240, -180, -120, -60, 0], ["-5m", "-4m", "-3m", "-2m", "-1m", "now"])
        widget.refresh()
