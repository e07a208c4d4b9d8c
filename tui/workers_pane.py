"""The Workers pane: one row per infer worker, local or remote, from their retained status messages.

Each row carries two sparklines over the last minutes (up to five, bucketed by time): throughput and
p50 latency, both from the worker's status messages. `g` adds plots of the same with axes below the
table (one line per worker); `z` then gives them the whole screen.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from engine.observer import HISTORY, RoleStatus, Snapshot
from tui import formatting as fmt
from tui.palette import Palette, palette
from tui.worker_charts import WorkerCharts

# (key, title, width): fixed widths, so updating a cell never re-lays out the screen. Most telling first:
# at 120 columns the pane shows up to the latency trend, at 80 up to the throughput trend.
COLUMNS = [
    ("worker", "worker", 15),
    ("state", "state", 9),
    ("done", "done", 8),
    ("rate", "img/s", 6),
    ("trend", "img/s trend", 11),
    ("lat", "p50/p99 ms", 10),
    ("lat_trend", "p50 trend", 11),
    ("batch", "batch", 5),
    ("queue", "queue", 6),
    ("errors", "err", 4),
    ("dropped", "drop", 6),
    ("model", "model", 20),
]
TREND_WIDTH = 11
MIN_WINDOW = 60.0  # a trend spans the time since the worker's first status, from one to five minutes
NO_WORKERS = "[dim]no infer worker on the broker: start one with[/] mnist-tui run infer [dim]--broker URL[/]"


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _lat(lat: Any) -> str:
    if not isinstance(lat, dict):
        return "-"
    p50, p99 = _num(lat.get("p50")), _num(lat.get("p99"))
    if p50 is None:
        return "-"
    return f"{p50:.1f}/{p99:.1f}" if p99 is not None else f"{p50:.1f}/-"


def trend_window(role: RoleStatus, now: float) -> float:
    if not role.history_t:
        return MIN_WINDOW
    span = now - role.history_t[0]
    return float(min(HISTORY, max(MIN_WINDOW, 60 * -(-span // 60))))


def worker_cells(role: RoleStatus, now: float, pal: Palette) -> tuple[Any, ...]:
    d = role.data
    right = "right"
    if not role.online:
        state = Text("offline", style=pal.bad)
    elif role.silent(now):
        state = Text(f"silent {fmt.duration(now - role.received)}", style=pal.warn)
    elif role.state == "running":
        state = Text("running", style=pal.ok)
    else:
        state = Text(role.state, style=pal.warn)
    errors = int(_num(d.get("errors")) or 0)
    dropped = int(_num(d.get("dropped")) or 0)
    queue = _num(d.get("queue"))
    batch = _num(d.get("batch_mean"))
    window = trend_window(role, now)
    rate_trend = fmt.time_sparkline(role.history_t, role.history, now, window, TREND_WIDTH)
    lat_trend = fmt.time_sparkline(role.history_t, role.lat_history, now, window, TREND_WIDTH)
    return (
        Text(fmt.ellipsize_left(role.id, COLUMNS[0][2]), style=pal.muted if not role.online else ""),
        state,
        Text(fmt.count(_num(d.get("processed"))), justify=right),
        Text(fmt.rate(_num(d.get("rate")), unit="") if role.online else "-", justify=right),
        Text(rate_trend, style=pal.accent),
        Text(_lat(d.get("lat_ms")), justify=right),
        Text(lat_trend, style=pal.warn),
        Text(f"{batch:.1f}" if batch is not None else "-", justify=right),
        Text(fmt.count(queue) if queue is not None else "-", justify=right),
        Text(fmt.count(errors), style=pal.bad if errors else "", justify=right),
        Text(fmt.count(dropped), style=pal.bad if dropped else "", justify=right),
        Text(str(d.get("model", "-"))),
    )


class WorkersPane(Vertical):
    """A DataTable of infer workers; cells are updated in place, only when their text changes."""

    BINDINGS = [Binding("g", "toggle_charts", "Charts")]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Workers"
        self._rows: dict[str, tuple[str, ...]] = {}

    def compose(self) -> ComposeResult:
        table: DataTable[Any] = DataTable(id="workers-table", cursor_type="row", zebra_stripes=False)
        for key, label, width in COLUMNS:
            table.add_column(label, key=key, width=width)
        yield table
        yield Static(NO_WORKERS, id="workers-empty")
        yield WorkerCharts(id="workers-charts")

    @property
    def table(self) -> DataTable[Any]:
        return self.query_one("#workers-table", DataTable)

    @property
    def charts_shown(self) -> bool:
        return self.has_class("-charts")

    def action_toggle_charts(self) -> None:
        self.toggle_class("-charts")
        refresh = getattr(self.app, "refresh_from_observer", None)
        if refresh is not None:
            self.call_after_refresh(refresh)

    def update_snapshot(self, snap: Snapshot) -> None:
        workers = snap.roles_of("infer")
        table = self.table
        pal = palette(self.app)
        seen = set()
        for role in workers:
            seen.add(role.id)
            cells = worker_cells(role, snap.time, pal)
            plain = tuple(c.plain + str(c.style) for c in cells)
            old = self._rows.get(role.id)
            if old is None:
                table.add_row(*cells, key=role.id)
            elif old != plain:
                for (key, _label, _w), cell, before, after in zip(COLUMNS, cells, old, plain, strict=True):
                    if before != after:
                        table.update_cell(role.id, key, cell)
            self._rows[role.id] = plain
        for gone in set(self._rows) - seen:
            table.remove_row(gone)
            del self._rows[gone]
        self.set_class(not workers, "-empty")
        if self.charts_shown:
            self.query_one(WorkerCharts).update_snapshot(snap)
        others = [r for r in snap.roles if r.role != "infer" and r.online]
        online = sum(r.online for r in workers)
        subtitle = f"{online} of {len(workers)} online" if workers else ""
        if others:
            kinds = ", ".join(sorted({r.role for r in others}))
            subtitle += (" · " if subtitle else "") + f"also: {kinds}"
        if self.border_subtitle != subtitle:
            self.border_subtitle = subtitle
