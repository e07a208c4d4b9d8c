"""The Workers pane: one row per infer worker, local or remote, from their retained status messages."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from engine.observer import RoleStatus, Snapshot
from tui import formatting as fmt
from tui.palette import Palette, palette

# (key, title, width): fixed widths, so updating a cell never re-lays out the screen
COLUMNS = [
    ("worker", "worker", 18),
    ("state", "state", 9),
    ("done", "done", 9),
    ("rate", "img/s", 6),
    ("trend", "trend", 10),
    ("batch", "batch", 5),
    ("queue", "queue", 6),
    ("lat", "p50/p99 ms", 11),
    ("errors", "err", 4),
    ("dropped", "drop", 6),
    ("model", "model", 20),
]
TREND_WIDTH = 10
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
    return (
        Text(fmt.ellipsize_left(role.id, COLUMNS[0][2]), style=pal.muted if not role.online else ""),
        state,
        Text(fmt.count(_num(d.get("processed"))), justify=right),
        Text(fmt.rate(_num(d.get("rate")), unit="") if role.online else "-", justify=right),
        Text(fmt.sparkline(role.history, TREND_WIDTH).ljust(TREND_WIDTH), style=pal.accent),
        Text(f"{batch:.1f}" if batch is not None else "-", justify=right),
        Text(fmt.count(queue) if queue is not None else "-", justify=right),
        Text(_lat(d.get("lat_ms")), justify=right),
        Text(fmt.count(errors), style=pal.bad if errors else "", justify=right),
        Text(fmt.count(dropped), style=pal.bad if dropped else "", justify=right),
        Text(str(d.get("model", "-"))),
    )


class WorkersPane(Vertical):
    """A DataTable of infer workers; cells are updated in place, only when their text changes."""

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

    @property
    def table(self) -> DataTable[Any]:
        return self.query_one("#workers-table", DataTable)

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
        others = [r for r in snap.roles if r.role != "infer" and r.online]
        online = sum(r.online for r in workers)
        subtitle = f"{online} of {len(workers)} online" if workers else ""
        if others:
            kinds = ", ".join(sorted({r.role for r in others}))
            subtitle += (" · " if subtitle else "") + f"also: {kinds}"
        if self.border_subtitle != subtitle:
            self.border_subtitle = subtitle
