"""The Workers pane: one row per infer worker, local or remote, from their retained status messages.

The columns follow the pane's width: at 80 columns the figures that matter (state, images/s, p99
latency, queue, batch, dropped/errors); wider, p50 latency too and sparklines over the last minutes (up
to five, bucketed by time) of throughput and p50 latency, from the worker's status messages. `g` adds
plots of the same with axes below the table (one line per worker); `z` then gives them the whole screen.
`l` loads another model on the selected worker (the `load` command: docs/PROTOCOL.md).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from rich.cells import cell_len
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from engine.console.observer import HISTORY, RoleStatus, Snapshot
from engine.errors import MnistError
from tui import keys
from tui.messages import RefreshWanted
from tui.widgets import formatting as fmt
from tui.widgets.palette import Palette, palette
from tui.workers.load_dialog import LoadModelDialog
from tui.workers.worker_charts import WorkerCharts


class Column(NamedTuple):
    """One column of the table: `width` includes the one-cell gap to its neighbour (the table's own cell
    padding is 0, so that 80 columns hold every figure that matters). Number columns (right-aligned) keep
    the gap on their left; a text column keeps it on its right, unless a number column follows."""

    key: str
    title: str
    width: int
    rank: int  # the lower, the longer it stays as the pane narrows
    right: bool = True


ESSENTIAL = 10  # ranks below this are shown at any width (in the compact layout when the wide one does not fit)

# Two layouts in display order. The wide one (120 columns: the pane has 82 cells) shows every figure that
# matters plus the throughput trend; wider panes add what is done, the latency trend and the model. The
# compact one (80 columns: 50 cells) keeps the figures that matter, with shorter cells: p99 latency only,
# dropped and errors in one column.
WIDE: tuple[Column, ...] = (
    Column("worker", "worker", 16, 0, right=False),
    Column("state", "state", 11, 1, right=False),
    Column("done", "done", 9, 11),
    Column("rate", "img/s", 7, 2),
    Column("trend", "img/s trend", 12, 10),
    Column("lat", "p50/p99 ms", 12, 3),
    Column("lat_trend", "p50 trend", 12, 12),
    Column("batch", "batch", 6, 5),
    Column("queue", "queue", 6, 4),
    Column("errors", "err", 6, 7),
    Column("dropped", "drop", 6, 6),
    Column("model", "model", 21, 13, right=False),
)
COMPACT: tuple[Column, ...] = (
    Column("worker", "worker", 9, 0, right=False),
    Column("state", "state", 7, 1, right=False),
    Column("done", "done", 7, 11),
    Column("rate", "img/s", 6, 2),
    Column("trend", "img/s trend", 12, 10),
    Column("p99", "p99 ms", 7, 3),
    Column("queue", "queue", 6, 4),
    Column("batch", "batch", 6, 5),
    Column("lost", "drop/err", 9, 6),
)
TREND_WIDTH = 11
MIN_WINDOW = 60.0  # a trend spans the time since the worker's first status, from one to five minutes
NO_WORKERS = "[dim]no infer worker on the broker: start one with[/] mnist-tui run infer [dim]--broker URL[/]"


def layout(width: int) -> tuple[Column, ...]:
    """The columns for a table `width` cells wide: the wide layout when its essential columns fit, else the
    compact one; then the other columns of that layout, most telling first, as long as they fit."""
    essential = sum(c.width for c in WIDE if c.rank < ESSENTIAL)
    columns = WIDE if essential <= width else COMPACT
    chosen = [c for c in columns if c.rank < ESSENTIAL]
    used = sum(c.width for c in chosen)
    for column in sorted((c for c in columns if c.rank >= ESSENTIAL), key=lambda c: c.rank):
        if used + column.width <= width:
            chosen.append(column)
            used += column.width
    return tuple(c for c in columns if c in chosen)


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _lat(lat: Any) -> str:
    if not isinstance(lat, dict):
        return "-"
    p50, p99 = _num(lat.get("p50")), _num(lat.get("p99"))
    if p50 is None:
        return "-"
    return f"{_ms(p50)}/{_ms(p99)}" if p99 is not None else f"{_ms(p50)}/-"


def _ms(value: float) -> str:
    """Milliseconds in at most 5 characters (a backlog's seconds still fit the column): from a second on, in
    seconds with their unit (`1.6s`), as the Results pane says them, not 1565."""
    if value < 999.5:
        return f"{value:.1f}" if value < 99.95 else f"{value:.0f}"
    seconds = value / 1000
    if seconds < 9.95:
        return f"{seconds:.1f}s"
    if seconds < 999.5:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.0f}m" if seconds < 999.5 * 60 else "long"


def _p99(lat: Any) -> str:
    p99 = _num(lat.get("p99")) if isinstance(lat, dict) else None
    if p99 is None:
        return "-"
    return _ms(p99)


def _short_id(worker_id: str, room: int) -> str:
    """The id in `room` cells: without its "infer-" (every row here is an infer worker) when the whole id does
    not fit, then cut in the middle, so that both the host and the pid (`infer-myhost-12345`: `myh…2345` at 80
    columns) still tell workers apart."""
    if cell_len(worker_id) <= room:
        return worker_id
    return fmt.middle(worker_id.removeprefix("infer-"), room)


def trend_window(role: RoleStatus, now: float) -> float:
    if not role.history_t:
        return MIN_WINDOW
    span = now - role.history_t[0]
    return float(min(HISTORY, max(MIN_WINDOW, 60 * -(-span // 60))))


def worker_cells(role: RoleStatus, now: float, pal: Palette, columns: tuple[Column, ...] = WIDE) -> tuple[Text, ...]:
    """The row of one worker, one Text per column of `columns`."""
    d = role.data
    errors = int(_num(d.get("errors")) or 0)
    # not answered: dropped or shed when the queue was full, or expired (MQTT 5 expiry, --max-wait)
    dropped = int(_num(d.get("dropped")) or 0) + int(_num(d.get("expired")) or 0)
    # An offline worker's trends end at its last status: they hold still instead of sliding on without data.
    at = now if role.online or not role.history_t else role.history_t[-1]
    window = trend_window(role, at)

    def state(room: int) -> Text:
        if not role.online:
            return Text("offline", style=pal.bad)
        if role.silent(now):
            text = f"silent {fmt.duration(now - role.received)}"
            return Text(text if len(text) <= room else "silent", style=pal.warn)
        if role.state == "error":
            return Text("error", style=pal.bad)
        lost_sessions = _num(d.get("sessions_lost"))
        if lost_sessions:  # a durable session the broker lost: what was queued for it is gone
            return Text("sess lost", style=pal.warn)
        if role.state == "running":
            if d.get("queue_full") is True:  # its queue reached its bound since its last status: overloaded,
                return Text("full", style=pal.warn)  # dropping (and at QoS 0 leaving its subscription) or held back
            return Text("running", style=pal.ok)
        return Text(role.state, style=pal.warn)

    def number(value: float | None) -> str:
        return fmt.short_count(value) if value is not None else "-"

    def batch() -> str:
        value = _num(d.get("batch_mean"))
        return f"{value:.1f}" if value is not None else "-"

    def lost() -> Text:
        text = Text(fmt.short_count(dropped), style=pal.bad if dropped else "")
        text.append("/", style=pal.muted)
        text.append(fmt.short_count(errors), style=pal.bad if errors else "")
        return text

    makers: dict[str, Any] = {
        "worker": lambda w: Text(_short_id(role.id, w), style=pal.muted if not role.online else ""),
        "state": state,
        "done": lambda _w: Text(number(_num(d.get("processed")))),
        "rate": lambda _w: Text(fmt.rate(_num(d.get("rate")), unit="") if role.online else "-"),
        "trend": lambda _w: Text(fmt.time_sparkline(role.history_t, role.history, at, window, TREND_WIDTH),
                                 style=pal.accent),
        "lat": lambda _w: Text(_lat(d.get("lat_ms"))),
        "p99": lambda _w: Text(_p99(d.get("lat_ms"))),
        "lat_trend": lambda _w: Text(fmt.time_sparkline(role.history_t, role.lat_history, at, window,
                                                        TREND_WIDTH), style=pal.warn),
        "batch": lambda _w: Text(batch()),
        "queue": lambda _w: Text(number(_num(d.get("queue")))),
        "errors": lambda _w: Text(fmt.short_count(errors), style=pal.bad if errors else ""),
        "dropped": lambda _w: Text(fmt.short_count(dropped), style=pal.bad if dropped else ""),
        "lost": lambda _w: lost(),
        "model": lambda _w: Text(str(d.get("model", "-"))),
    }
    cells = []
    for i, column in enumerate(columns):
        lead, room = _room(columns, i)
        cell: Text = makers[column.key](room)
        cells.append(_fit(cell, column, lead, room))
    return tuple(cells)


def _room(columns: tuple[Column, ...], i: int) -> tuple[int, int]:
    """(blank cells before the text, room for the text) in column i."""
    column = columns[i]
    if column.right:
        return 0, column.width - 1
    lead = int(i > 0 and columns[i - 1].right)  # after a number: the gap is on neither's side
    trail = int(i + 1 < len(columns) and not columns[i + 1].right)
    return lead, column.width - lead - trail


def _fit(text: Text, column: Column, lead: int, room: int) -> Text:
    text.truncate(room, overflow="ellipsis")
    if lead:
        text = Text(" " * lead) + text
    text.justify = "right" if column.right else "left"
    return text


def header(columns: tuple[Column, ...]) -> list[Text]:
    return [_fit(Text(c.title), c, *_room(columns, i)) for i, c in enumerate(columns)]


class WorkersPane(Vertical):
    """A DataTable of infer workers; cells are updated in place, only when their text changes.

    The columns follow the pane's width (see `layout`): they are set again only when the width changes
    which columns fit, so updating a cell never re-lays out the screen.
    """

    BINDINGS = keys.bindings(keys.WORKERS)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Workers"
        self._rows: dict[str, tuple[str, ...]] = {}
        self.columns: tuple[Column, ...] = ()
        self._snap: Snapshot | None = None
        self._cursor: int | None = None  # the cursor row to put back once the rows are there again

    def compose(self) -> ComposeResult:
        yield DataTable(id="workers-table", cursor_type="row", zebra_stripes=False, cell_padding=0)
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
        self.call_after_refresh(self.post_message, RefreshWanted(full=False))

    def selected_worker(self) -> str | None:
        """The id of the worker under the table's cursor."""
        table = self.table
        if not table.row_count:
            return None
        row = min(max(table.cursor_row, 0), table.row_count - 1)
        key = table.ordered_rows[row].key.value
        return key if isinstance(key, str) else None

    def action_load_model(self) -> None:
        """Ask for a model path and send `load` to the selected worker (its answer comes as a reply)."""
        if self.app.not_started():  # type: ignore[attr-defined]  # says "not yet", not "no worker"
            return
        worker = self.selected_worker()
        if worker is None:
            self.notify("no worker to load a model on", severity="warning")
            return

        def send(path: str | None) -> None:
            if path is None:
                return
            try:
                self.app.observer.send_control("infer", "load", worker, path=path)  # type: ignore[attr-defined]
            except MnistError as exc:
                self.notify(str(exc), title="load not sent", severity="error")

        self.app.push_screen(LoadModelDialog(worker), send)

    def on_resize(self) -> None:
        if self._set_columns() and self._snap is not None:
            self.update_snapshot(self._snap)

    def _set_columns(self) -> bool:
        """Lay the table out for the pane's width; True when its columns changed (the rows are gone then)."""
        columns = layout(self.content_size.width)
        if columns == self.columns:
            return False
        self.columns = columns
        table = self.table
        cursor = table.cursor_row
        table.clear(columns=True)
        for column, label in zip(columns, header(columns), strict=True):
            table.add_column(label, key=column.key, width=column.width)
        self._rows.clear()
        self._cursor = cursor
        return True

    def update_snapshot(self, snap: Snapshot) -> None:
        self._snap = snap
        if not self.columns:
            self._set_columns()
        workers = snap.roles_of("infer")
        table = self.table
        pal = palette(self.app)
        columns = self.columns
        seen = set()
        for role in workers:
            seen.add(role.id)
            cells = worker_cells(role, snap.time, pal, columns)
            plain = tuple(c.plain + str(c.style) + "".join(str(s.style) for s in c.spans) for c in cells)
            old = self._rows.get(role.id)
            if old is None:
                table.add_row(*cells, key=role.id)
            elif old != plain:
                for column, cell, before, after in zip(columns, cells, old, plain, strict=True):
                    if before != after:
                        table.update_cell(role.id, column.key, cell)
            self._rows[role.id] = plain
        for gone in set(self._rows) - seen:
            table.remove_row(gone)
            del self._rows[gone]
        if self._cursor is not None and table.row_count:
            table.move_cursor(row=min(self._cursor, table.row_count - 1), animate=False)
            self._cursor = None
        self.set_class(not workers, "-empty")
        if self.charts_shown:
            self.query_one(WorkerCharts).update_snapshot(snap)
        others = [r for r in snap.roles if r.role != "infer" and r.online]
        silent = sum(r.silent(snap.time) for r in workers)  # a status kept at the broker after its role died
        failed = sum(r.online and r.state == "error" and not r.silent(snap.time) for r in workers)
        online = sum(r.online for r in workers) - silent - failed  # a worker in error is connected, not working
        subtitle = (f"{online} of {len(workers)} online" + (f" · {silent} silent" if silent else "")
                    + (f" · {failed} failed" if failed else "")) if workers else ""
        if others:
            kinds = ", ".join(sorted({r.role for r in others}))
            subtitle += (" · " if subtitle else "") + f"also: {kinds}"
        if self.border_subtitle != subtitle:
            self.border_subtitle = subtitle
