"""Beyond the anchors (issue 7): draw a digit, look closer at a result, the confusion matrix, CSV export.

Pilot drives the console against real roles (LocalPipeline: real worker, real model) on a real mosquitto,
shared by the tests of this module (loading the model is the slow part). Each test opens its own console
and observer. Waits poll with a deadline; nothing asserts on timing.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import NO_MOSQUITTO, burst, wait_for
from helpers import pilot_until as until
from PIL import Image
from rich.style import Style
from rich.text import Text
from textual.pilot import Pilot
from textual_plotext import PlotextPlot

from engine.console.export import COLUMNS, write_results_csv
from engine.console.observer import Observer, ResultRow
from engine.console.observer_process import ObserverProcess
from engine.digits.preprocess import decode_png
from engine.mqtt.broker import EmbeddedBroker, find_mosquitto
from engine.protocol import extract_meta
from engine.roles.pipeline import LocalPipeline
from engine.settings import Settings
from tui.app import MnistApp
from tui.chrome.header_bar import BrokerInfo
from tui.draw.draw_canvas import SIDE, DrawCanvas, stamp, stroke
from tui.draw.draw_dialog import DrawDialog, drawing_png
from tui.results.confusion_matrix import LABEL_WIDTH, ConfusionMatrix
from tui.results.confusion_screen import CellList, ConfusionScreen
from tui.results.prob_bars import ProbBars, bar
from tui.results.result_detail import ResultDetail
from tui.results.results_log import ResultsLog
from tui.widgets import formatting as fmt
from tui.workers.worker_charts import WorkerCharts
from tui.workers.workers_pane import WorkersPane


@pytest.fixture(scope="module")
def pipeline() -> Iterator[LocalPipeline]:
    """Broker and the three roles for the whole module; the publisher waits (it is stepped by the tests)."""
    if find_mosquitto() is None:
        pytest.skip(NO_MOSQUITTO)
    broker = EmbeddedBroker(kind="mosquitto")
    broker.start()
    try:
        with LocalPipeline(Settings(rate=20), address=broker.address) as p:
            yield p
    finally:
        broker.stop()


@pytest.fixture
def app(pipeline: LocalPipeline) -> Iterator[MnistApp]:
    observer = Observer(pipeline.address)
    observer.start()
    yield MnistApp(observer, BrokerInfo(pipeline.address.url, "mosquitto", "mosquitto (test)"))
    observer.stop()


async def run(app: MnistApp, body: Callable[[Pilot[Any]], Awaitable[None]], size: tuple[int, int] = (120, 40)) -> None:
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: app.snap is not None and app.snap.subscribed and app.snap.roles_of("input"),
                    "console not connected, or no publisher seen")
        await body(pilot)


async def send_images(app: MnistApp, pilot: Pilot[Any], n: int) -> tuple[ResultRow, ...]:
    """The publisher rewinds and sends its first n digits; returns the n results, once all are shown."""
    app.observer.send_control("input", "reset")
    await until(pilot, lambda: app.snap.roles_of("input")[0].data.get("sent") == 0, "publisher did not rewind")
    app.observer.send_control("input", "step", n=n)
    log = app.screen.query_one(ResultsLog)
    await until(pilot, lambda: len(log.rows) >= n, lambda: f"{len(log.rows)} of {n} results shown")
    return log.rows


# ---- pure pieces -------------------------------------------------------------------------------------


def test_soft_brush_and_strokes() -> None:
    px = np.zeros((SIDE, SIDE), np.float32)
    assert stamp(px, 10.5, 10.5)
    assert px[10, 10] == 255 and 0 < px[10, 11] < 255 and px[10, 12] == 0  # a soft edge, then nothing
    assert not stamp(px, 10.5, 10.5)  # the same dab again changes nothing
    stroke(px, 3.5, 3.5, 3.5, 20.5)
    assert (px[3:21, 3] == 255).all()  # a drag leaves a line, not dots
    stamp(px, 10.5, 10.5, erase=True)
    assert px[10, 10] == 0


def test_drawing_png_is_mnist_framed_with_metadata() -> None:
    img = np.zeros((SIDE, SIDE), np.uint8)
    img[1:6, 1:3] = 255  # a tiny stroke in the top left corner
    png = drawing_png(img, "console-1-draw-1", "console-1", 1_764_108_000.5)
    assert png is not None
    meta = extract_meta(png)
    assert (meta.id, meta.src, meta.label, meta.t) == ("console-1-draw-1", "console-1", None, 1_764_108_000.5)
    framed = np.asarray(Image.open(io.BytesIO(png)))
    rows, cols = np.flatnonzero(framed.any(axis=1)), np.flatnonzero(framed.any(axis=0))
    assert rows[-1] - rows[0] + 1 == 20  # scaled into the 20x20 box...
    assert 10 <= rows.mean() <= 18 and 10 <= cols.mean() <= 18  # ...and centred
    assert (decode_png(png) == framed).all()  # the worker takes it as it is
    assert drawing_png(np.zeros((SIDE, SIDE), np.uint8), "x", "y", 0.0) is None


def test_bar_and_time_sparkline() -> None:
    assert bar(1.0, 4) == "████" and bar(0.0, 4) == "    " and bar(0.5, 3) == "█▌ "
    now = 1000.0
    line = fmt.time_sparkline([940.0, 970.0, 999.0], [1.0, None, 4.0], now, 60.0, 6)
    assert len(line) == 6 and line[0] == "▃" and line[-1] == "█" and line[3] == " "


def test_results_csv(tmp_path: Path) -> None:
    rows = [
        ResultRow(1, 1_764_108_000.25, "in-1", 7, 7, 0.98, 4.5, "w1", None, tuple([0.0] * 7 + [0.98, 0.01, 0.01]),
                  "lenet5@x", False),
        ResultRow(2, 1_764_108_001.0, "in-2", None, None, None, None, "w1", "not a PNG", None, None, False),
    ]
    path = tmp_path / "out.csv"
    assert write_results_csv(rows, path) == 2
    with path.open(newline="") as handle:
        got = list(csv.DictReader(handle))
    assert list(got[0]) == COLUMNS
    assert got[0]["id"] == "in-1" and got[0]["pred"] == "7" and got[0]["correct"] == "1"
    assert got[0]["latency_ms"] == "4.500" and got[0]["p7"] == "0.98" and got[0]["model"] == "lenet5@x"
    assert got[1]["pred"] == "" and got[1]["correct"] == "" and got[1]["error"] == "not a PNG"
    with pytest.raises(Exception, match="exists already"):
        write_results_csv(rows, path)


# ---- the console on a real pipeline -------------------------------------------------------------------


async def drag(pilot: Pilot[Any], cells: list[tuple[int, int]]) -> None:
    """Press the left button on the first cell of the canvas, move through the others, release."""
    await pilot.mouse_down(DrawCanvas, offset=cells[0])
    for cell in cells[1:]:
        await pilot.hover(DrawCanvas, offset=cell)
    await pilot.mouse_up(DrawCanvas, offset=cells[-1])


async def send_and_read(app: MnistApp, pilot: Pilot[Any]) -> ResultRow:
    dialog = app.screen
    assert isinstance(dialog, DrawDialog)
    sent_before = dialog.sent_id
    await pilot.press("enter")
    await until(pilot, lambda: dialog.sent_id != sent_before and dialog.result is not None,
                lambda: f"no result for {dialog.sent_id}")
    row = dialog.result
    assert row is not None and row.id == dialog.sent_id
    return row


@pytest.mark.slow
async def test_draw_a_one_with_the_mouse_big_and_small(app: MnistApp) -> None:
    async def body(pilot: Pilot[Any]) -> None:
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, DrawDialog), "no draw dialog")
        canvas = app.screen.query_one(DrawCanvas)
        assert canvas.scale == 2  # 120x40: a pixel is two cells wide, one high
        # a tall "1" down the middle, slightly slanted, as a hand draws it
        await drag(pilot, [(29 - y // 10, y) for y in range(3, 26)])
        assert canvas.pixels[3:24, 13:16].max(axis=1).min() == 255
        row = await send_and_read(app, pilot)
        assert row.pred == 1 and row.probs is not None and len(row.probs) == 10
        bars = app.screen.query_one(ProbBars)
        assert bars.probs == row.probs
        assert "prediction" in str(app.screen.query_one("#draw-status").render())
        # clear, then a small "1" in the top left corner: framed as MNIST, it is still a 1
        await pilot.press("c")
        assert canvas.empty
        await drag(pilot, [(6, y) for y in range(2, 9)] + [(7, 9)])
        assert not canvas.pixels[12:, :].any() and not canvas.pixels[:, 12:].any()
        row = await send_and_read(app, pilot)
        assert row.pred == 1
        await pilot.press("escape")
        assert not isinstance(app.screen, DrawDialog)

    await run(app, body)


async def test_draw_with_the_keyboard_on_a_small_screen(app: MnistApp) -> None:
    async def body(pilot: Pilot[Any]) -> None:
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, DrawDialog), "no draw dialog")
        canvas = app.screen.query_one(DrawCanvas)
        assert canvas.scale == 1  # 80x24: two pixels to a cell
        await pilot.press("enter")  # nothing drawn: nothing sent
        assert app.screen.sent_id is None
        await pilot.press(*["up"] * 6, "space", *["shift+down"] * 13)  # from (14, 8) down to (14, 21)
        assert canvas.cursor == (14, 21) and (canvas.pixels[8:22, 14] == 255).all()
        row = await send_and_read(app, pilot)
        assert row.pred == 1

    await run(app, body, size=(80, 24))


async def test_result_detail_from_a_click_and_from_enter(app: MnistApp) -> None:
    async def body(pilot: Pilot[Any]) -> None:
        rows = await send_images(app, pilot, 12)
        log = app.screen.query_one(ResultsLog)
        await pilot.click(ResultsLog, offset=(5, 2))  # the third row on screen
        await until(pilot, lambda: isinstance(app.screen, ResultDetail), "no detail for a clicked row")
        detail = app.screen
        row = detail.row
        assert row.id == log.rows[int(log.scroll_y) + 2].id
        await until(pilot, lambda: detail.image_state == "shown", lambda: f"image {detail.image_state}")
        fields = str(detail.query_one("#detail-fields").render())
        assert f"label       {row.label}" in fields and (row.worker or "?") in fields
        assert fmt.ms(row.latency_ms) in fields
        assert detail.query_one(ProbBars).probs == row.probs
        await pilot.press("right")
        assert detail.row.seq == row.seq + 1
        await pilot.press("escape")
        assert not isinstance(app.screen, ResultDetail)
        # keyboard: the cursor stays on the clicked row; up, then enter opens the one above
        assert log.cursor_row is not None and log.cursor_row.seq == row.seq
        await pilot.press("up", "enter")
        await until(pilot, lambda: isinstance(app.screen, ResultDetail), "enter opened nothing")
        assert app.screen.row.seq == row.seq - 1
        assert {r.id for r in rows} >= {row.id}

    await run(app, body)


async def test_confusion_matrix_cell_lists_its_misclassified_digits(app: MnistApp) -> None:
    async def body(pilot: Pilot[Any]) -> None:
        rows = await send_images(app, pilot, 300)
        wrong = [r for r in rows if r.correct is False]
        assert wrong, "the first 300 held-out digits have a few the model gets wrong"
        await pilot.press("m")
        await until(pilot, lambda: isinstance(app.screen, ConfusionScreen), "m opened no matrix")
        screen = app.screen
        matrix = screen.query_one(ConfusionMatrix)
        await until(pilot, lambda: sum(map(sum, matrix.counts)) == app.snap.stats.labelled >= 300,
                    lambda: f"matrix holds {sum(map(sum, matrix.counts))}")
        label, pred = wrong[0].label, wrong[0].pred
        w = matrix.cell_width
        await pilot.click(ConfusionMatrix, offset=(LABEL_WIDTH + pred * w + w - 2, 2 + label))
        await until(pilot, lambda: screen.cell == (label, pred) and screen.listed, "cell not picked")
        assert all(r.label == label and r.pred == pred for r in screen.listed)
        assert {r.id for r in screen.listed} == {r.id for r in wrong if (r.label, r.pred) == (label, pred)}
        table = screen.query_one(CellList)
        assert app.focused is table and table.row_count == len(screen.listed)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ResultDetail), "no detail from the cell list")
        detail = app.screen
        assert detail.row.id == screen.listed[0].id and detail.row.correct is False
        await until(pilot, lambda: detail.image_state == "shown", lambda: f"image {detail.image_state}")
        await pilot.press("escape")  # back to the matrix screen, the list still focused...
        await until(pilot, lambda: app.screen is screen and app.focused is table, "escape did not go back")
        await pilot.press("escape")  # ...and escape backs out once more: the screen closes
        await until(pilot, lambda: not isinstance(app.screen, ConfusionScreen),
                    lambda: f"escape in the cell list left {app.screen} open, focus on {app.focused}", timeout=5)
        await pilot.press("m")  # m opens it again...
        await until(pilot, lambda: isinstance(app.screen, ConfusionScreen), "m opened no matrix")
        await pilot.press("m")  # ...and closes it
        await until(pilot, lambda: not isinstance(app.screen, ConfusionScreen), "m did not close the matrix")

    await run(app, body)


async def test_export_csv_matches_the_results_shown(app: MnistApp, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_DOCUMENTS_DIR", str(tmp_path / "docs"))

    async def body(pilot: Pilot[Any]) -> None:
        await send_images(app, pilot, 25)
        await pilot.press("e")
        path = await until(pilot, lambda: app.last_export, "e exported nothing")
        assert not list(tmp_path.glob("*.csv")), "nothing is written into the current directory"
        assert path.parent == tmp_path / "docs" / "mnist-tui"
        assert path.name.startswith("mnist-results-") and path.suffix == ".csv"
        shown = app.screen.query_one(ResultsLog).rows
        with path.open(newline="") as handle:
            got = list(csv.DictReader(handle))
        assert len(got) == len(app.observer.snapshot(topics=False).results) >= len(shown) >= 25
        by_id = {r["id"]: r for r in got}
        for row in shown:
            line = by_id[row.id]
            assert (line["pred"], line["label"], line["worker"]) == (str(row.pred), str(row.label), row.worker)
            assert line["correct"] == str(int(row.pred == row.label))
            assert [float(line[f"p{i}"]) for i in range(10)] == pytest.approx(row.probs, abs=1e-5)

    await run(app, body)


async def test_worker_charts_follow_the_status(app: MnistApp) -> None:
    async def body(pilot: Pilot[Any]) -> None:
        pane = app.screen.query_one(WorkersPane)
        await until(pilot, lambda: pane.table.row_count >= 1, "no worker in the table")  # hidden until then
        pane.query_one("#workers-table").focus()
        await until(pilot, lambda: app.focused is pane.table, "the workers table took no focus")
        await pilot.press("g")
        assert pane.charts_shown
        charts = pane.query_one(WorkerCharts)
        await until(pilot, lambda: charts.size.height >= 6 and charts.lines == 1, "no plot of the worker")
        await pilot.press("g")
        assert not pane.charts_shown

    await run(app, body)


async def test_zoomed_worker_charts_fill_the_screen_at_24_rows(app: MnistApp) -> None:
    """z on the Workers pane with its charts shown: they kept the 10 rows of the 24-row layout."""
    async def body(pilot: Pilot[Any]) -> None:
        pane = app.screen.query_one(WorkersPane)
        await until(pilot, lambda: pane.table.row_count >= 1, "no worker in the table")
        pane.query_one("#workers-table").focus()
        await until(pilot, lambda: app.focused is pane.table, "the workers table took no focus")
        await pilot.press("g")
        charts = pane.query_one(WorkerCharts)
        await until(pilot, lambda: charts.lines == 1, "no plot of the worker")
        await pilot.press("z")
        await until(pilot, lambda: pane.outer_size.height == 22, f"z did not zoom: {pane.outer_size}")
        await until(pilot, lambda: charts.size.height >= 14, f"the charts stayed small: {charts.size}")

    await run(app, body, size=(80, 24))


async def test_every_theme_renders_the_panes_the_charts_and_the_drawing(app: MnistApp) -> None:
    """Each theme the palette offers, the ANSI ones too (their colours are the terminal's own, `ansi_green`,
    which Rich's parser does not read: picking `ansi-light` once crashed the console at its next refresh)."""
    async def body(pilot: Pilot[Any]) -> None:
        await send_images(app, pilot, 12)
        pane = app.screen.query_one(WorkersPane)
        await until(pilot, lambda: pane.table.row_count >= 1, "no worker in the table")
        pane.query_one("#workers-table").focus()
        await pilot.press("g")
        charts = pane.query_one(WorkerCharts)
        themes = sorted(app.available_themes)
        assert {"ansi-dark", "ansi-light", "textual-light"} <= set(themes)
        for name in themes:
            app.theme = name
            await pilot.pause()
            app.refresh_from_observer(full=True)  # every pane takes its colours from the theme
            await until(pilot, lambda: charts.lines == 1, f"{name}: no plot of the worker")
            lines = _table_lines(pane.table)
            assert "running" in lines[1], f"{name}: {lines}"
            for plot in charts.query(PlotextPlot):
                text = plot.render()
                assert isinstance(text, Text) and text.plain.strip(), f"{name}: an empty chart"
                styles = [span.style for span in text.spans if isinstance(span.style, Style)]
                unreadable = {str(st) for st in styles if st.color is not None and st.color == st.bgcolor}
                assert not unreadable, f"{name}: text in the colour of its background: {unreadable}"
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, DrawDialog), "no draw dialog")
        canvas = app.screen.query_one(DrawCanvas)
        for name in themes:
            app.theme = name
            await pilot.pause()
            paper, ink, cursor = canvas._colours()
            assert paper.ansi is None and ink.ansi is None, f"{name}: {paper!r} {ink!r} cannot be blended"
            assert abs(paper.brightness - ink.brightness) > 0.3, f"{name}: ink {ink} on paper {paper}"
            assert abs(paper.brightness - cursor.brightness) >= 0.2, f"{name}: cursor {cursor} on paper {paper}"
            assert canvas.render_line(0).cell_length == canvas.size.width

    await run(app, body)


def _table_lines(table: Any) -> list[str]:
    """The lines the Workers table shows (the header, then the rows), as text."""
    return [table.render_line(y).text for y in range(table.size.height)]


@pytest.mark.parametrize(("size", "other"), [((80, 24), (120, 40)), ((120, 40), (80, 24))])
async def test_workers_table_shows_the_figures_that_matter(app: MnistApp, size: tuple[int, int],
                                                           other: tuple[int, int]) -> None:
    """Worker, state, img/s, p99 latency, queue, batch, dropped and errors, at 80x24 and at 120x40, with
    nothing cut off (no horizontal scrolling), also after the terminal changes size."""
    figures = ("worker", "state", "img/s", "p99", "queue", "batch", "drop", "err")

    async def body(pilot: Pilot[Any]) -> None:
        pane = app.screen.query_one(WorkersPane)
        table = pane.table
        for width, height in (size, other):
            await pilot.resize_terminal(width, height)
            await until(pilot, lambda w=width: app.size.width == w and table.row_count == 1
                        and table.size.width == pane.content_size.width,
                        lambda: f"{app.size}, {table.row_count} rows")
            await pilot.pause()
            lines = _table_lines(table)
            assert table.max_scroll_x == 0, f"{width}x{height}: the table is cut off: {lines}"
            assert all(name in lines[0] for name in figures), f"{width}x{height}: {lines[0]!r}"
            cells = [str(c).strip() for c in table.get_row_at(0)]
            shown = lines[1]
            assert all(c in shown for c in cells), f"{width}x{height}: {cells} not all in {shown!r}"
            assert len(cells) == len(table.columns) >= len(figures) - 1  # drop/err may share a column

    await run(app, body, size=size)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
async def test_a_long_worker_id_keeps_its_start_and_its_end(size: tuple[int, int]) -> None:
    """`infer-<host>-<pid>` too long for the worker column: at 80 columns it kept only its end (`…t-12345`), so
    workers of two hosts with like pids looked alike; it is cut in the middle, so the host's start and the pid's
    end both show, and at 120 columns a host-pid that fits shows whole."""
    from test_snapshots import BROKER, _status, make_observer

    obs = make_observer()
    ids = ("infer-myhost-12345", "infer-myhost-12346", "infer-raspberrypi-4021")
    for cid in ids:
        obs.ingest(f"mnist/status/infer/{cid}", _status("infer", cid, state="running"), qos=1, retain=True)
    app = MnistApp(obs, BROKER)
    async with app.run_test(size=size) as pilot:
        pane = app.screen.query_one(WorkersPane)
        table = pane.table
        await until(pilot, lambda: table.row_count == 5, lambda: f"{table.row_count} rows")
        shown = {cid: str(table.get_row(cid)[0]).strip() for cid in ids}
        room = pane.columns[0].width - 1
        expected = {(80, 24): ["myh…2345", "myh…2346", "ras…4021"],
                    (120, 40): ["myhost-12345", "myhost-12346", "raspber…pi-4021"]}[size]
        assert list(shown.values()) == expected, shown
        assert all(len(text) <= room for text in shown.values()), (room, shown)

def test_observer_process_hands_out_kept_images(pipeline: LocalPipeline) -> None:
    """The console's observer runs in a child process: images come back on request, by id."""
    from helpers import wait_for

    observer = ObserverProcess(pipeline.address)
    observer.start()
    try:
        wait_for(lambda: observer.snapshot(topics=False).subscribed, message="observer not subscribed")
        observer.send_control("input", "step", n=3)
        rows = wait_for(lambda: observer.snapshot(topics=False).results[-3:]
                        if len(observer.snapshot(topics=False).results) >= 3 else None, message="no results")
        ids = [r.id for r in rows]
        images = observer.images([*ids, "no-such-id"])
        assert sorted(images) == sorted(ids)
        assert all(extract_meta(png).id == i for i, png in images.items())
        assert observer.image("no-such-id") is None
    finally:
        observer.stop()


async def test_a_typed_rate_reaches_the_publisher(app: MnistApp) -> None:
    """r opens the rate field; 250 (typed) becomes the publisher's rate, max means 0 (as fast as it can)."""
    from textual.widgets import Input

    from tui.publisher.rate_dialog import RateDialog

    def rate() -> Any:
        return app.snap.roles_of("input")[0].data.get("rate")

    async def body(pilot: Pilot[Any]) -> None:
        for typed, wanted in (("250", 250), ("max", 0), ("20", 20)):
            await pilot.press("r")
            await until(pilot, lambda: isinstance(app.screen, RateDialog), "r opened no rate field")
            app.screen.query_one(Input).value = typed
            await pilot.press("enter")
            await until(pilot, lambda wanted=wanted: rate() == wanted,
                        lambda typed=typed: f"typed {typed}, publisher says {rate()}")
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, RateDialog), "r opened no rate field")
        app.screen.query_one(Input).value = "fast"
        await pilot.press("enter")
        error = app.screen.query_one("#rate-error")
        await until(pilot, lambda: "not a rate" in str(error.render()), "a bad rate got no answer")
        await pilot.press("escape")
        assert rate() == 20

    await run(app, body)


async def test_a_rate_typed_in_one_burst_with_r_reaches_the_publisher(app: MnistApp) -> None:
    """`r 2 5 enter` in one burst (a paste, a fast typist, tmux send-keys): the keys after r go into the rate
    field and enter sets 25/s. They went to the main screen's pane while the dialog opened, and enter then
    submitted the rate the dialog showed. `r 7 escape` in one burst cancels."""
    from tui.publisher.rate_dialog import RateDialog

    def rate() -> Any:
        return app.snap.roles_of("input")[0].data.get("rate")

    async def body(pilot: Pilot[Any]) -> None:
        assert rate() != 25
        await burst(app, "r", "2", "5", "enter")
        await until(pilot, lambda: rate() == 25, lambda: f"typed 25 in a burst, publisher says {rate()}")
        assert not isinstance(app.screen, RateDialog)
        await burst(app, "r", "7", "escape")
        await until(pilot, lambda: app.screen is app.main, "escape in the burst left the rate dialog open")
        await pilot.pause(0.5)  # a 7 sent by mistake would have reached the publisher by now
        assert rate() == 25

    await run(app, body)


@pytest.mark.parametrize("key,pane", [("f", "publisher"), ("p", "publisher"), ("l", "workers-table")])
async def test_keys_typed_in_one_burst_with_a_dialog_key_go_into_its_field(app: MnistApp, key: str,
                                                                           pane: str) -> None:
    """The filter (f), publish (p) and load-model (l) dialogs take the text typed in the same burst as their
    key, in order; enter then submits it as any enter does (the rate dialog's test above)."""
    from textual.widgets import Input

    async def body(pilot: Pilot[Any]) -> None:
        main = app.main
        assert main is not None
        main.query_one(f"#{pane}").focus()
        await until(pilot, lambda: app.focused is main.query_one(f"#{pane}"), f"{pane} not focused")
        await burst(app, key, *"ab.c")
        field = await until(pilot, lambda: app.screen is not main and isinstance(app.focused, Input)
                            and app.focused, f"{key} opened no dialog with a field")
        await until(pilot, lambda: field.value.endswith("ab.c"), lambda: f"{key}: the field holds {field.value!r}")
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is main, "escape did not close the dialog")

    await run(app, body)


async def test_a_key_typed_before_a_dialog_key_in_the_same_burst_acts_first(app: MnistApp) -> None:
    """`z m` at once: z zooms the focused pane, then m opens the confusion matrix over it. z was lost: m, a key
    that opens a screen, ran as the app took it, while z was still on its way up from the pane, and z then
    reached the app with the matrix on top, where it means nothing."""

    async def body(pilot: Pilot[Any]) -> None:
        main = app.main
        assert main is not None
        main.query_one("#publisher").focus()
        await until(pilot, lambda: app.focused is main.query_one("#publisher"), "publisher not focused")
        await burst(app, "z", "m")
        await until(pilot, lambda: isinstance(app.screen, ConfusionScreen) and app.screen.is_mounted,
                    "m opened no confusion matrix")
        await until(pilot, lambda: main.zoomed == "publisher", lambda: f"z before m: zoomed {main.zoomed}")
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is main, "escape did not close the matrix")

    await run(app, body)


@pytest.mark.parametrize("closing", [("escape",), ("ctrl+u", "#", "enter")], ids=["escape", "enter"])
async def test_keys_typed_after_a_dialog_closes_in_the_same_burst_act_on_the_main_screen(
        app: MnistApp, closing: tuple[str, ...]) -> None:
    """`f x escape z` at once: the dialog opens, takes the x, closes, and z zooms the pane below (as with enter,
    which applies the filter typed). z went into the dialog's field: the app had routed it there before the
    escape came back up to the app and closed the dialog."""
    from tui.topics.filter_dialog import FilterDialog

    async def body(pilot: Pilot[Any]) -> None:
        main = app.main
        assert main is not None
        main.query_one("#publisher").focus()
        await until(pilot, lambda: app.focused is main.query_one("#publisher"), "publisher not focused")
        await burst(app, "f", "x", *closing, "z")
        await until(pilot, lambda: main.zoomed == "publisher",
                    lambda: f"z after the dialog closed: zoomed {main.zoomed}, on top {app.screen}, "
                            f"focused {app.focused}")
        assert app.screen is main and not isinstance(app.screen, FilterDialog)
        assert app.observer.filter == "#"

    await run(app, body)


@pytest.mark.parametrize("keys,wanted", [
    (("ctrl+u", "x", "y"), "xy"),
    (("backspace", "a", "b", "backspace", "c"), "ac"),
    (("home", "a", "end", "b"), "a#b"),
], ids=["ctrl+u", "backspace", "home-end"])
async def test_editing_keys_typed_in_a_burst_act_between_the_characters(app: MnistApp, keys: tuple[str, ...],
                                                                       wanted: str) -> None:
    """In the filter dialog (holding `#`), keys typed at once with `f`: backspace, ctrl+u, home and end act
    where they were typed. They acted after every character: Textual runs a field's own bindings once the key
    has come back up from the field to the app, and by then the characters behind it were in the field."""
    from textual.widgets import Input

    from tui.topics.filter_dialog import FilterDialog

    async def body(pilot: Pilot[Any]) -> None:
        assert app.observer.filter == "#"
        await burst(app, "f", *keys)
        field = await until(pilot, lambda: isinstance(app.screen, FilterDialog) and isinstance(app.focused, Input)
                            and app.focused, "f opened no filter dialog")
        await until(pilot, lambda: field.value == wanted, lambda: f"the field holds {field.value!r}, not {wanted!r}")
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.main, "escape did not close the dialog")

    await run(app, body)


async def test_quit_says_it_drains_and_a_second_q_quits_at_once(app: MnistApp) -> None:
    app.owns_roles = True  # as when the console started the roles itself
    async def body(pilot: Pilot[Any]) -> None:
        await pilot.press("space")
        await until(pilot, lambda: app.snap.roles_of("input")[0].state == "running", "publisher did not start")
        await pilot.press("q")
        notices = [n.message for n in app._notifications]
        assert any(m.startswith("stopping: draining") and "q again" in m for m in notices), notices
        assert app.return_code is None, "the first q waits for the workers"
        await pilot.press("q")
        await until(pilot, lambda: app.return_code is not None, "the second q did not quit")

    await run(app, body)
    wait_for(lambda: app.observer.snapshot(topics=False).roles_of("input")[0].state != "running", timeout=10,
             message="q did not stop publishing")


@pytest.mark.parametrize("size,top", [((80, 24), 123_456), ((120, 40), 123_456), ((90, 30), 9_876)],
                         ids=["80x24", "120x40", "90x30"])
async def test_a_confusion_matrix_of_big_counts_fits_the_screen(size: tuple[int, int], top: int) -> None:
    """Past 1,000 in a cell the counts in full (1,234) made the dialog wider than 80 columns and cut its last
    columns and the recall off; where they do not fit, they are shortened (1.2k), and a click still picks
    the cell under it."""
    from test_snapshots import make_observer
    from textual.app import App

    import tui.app as tui_app

    class Host(App[None]):
        CSS_PATH = Path(tui_app.__file__).with_name("app.tcss")  # the dialog's limits (max-width) are there

    snap = make_observer().snapshot()
    confusion = tuple(tuple(top if p == label else 1_234 * (p == (label + 1) % 10) for p in range(10))
                      for label in range(10))
    snap = snap._replace(stats=snap.stats._replace(confusion=confusion, labelled=sum(map(sum, confusion))))
    app = Host()
    async with app.run_test(size=size) as pilot:
        await app.push_screen(ConfusionScreen(snap))
        screen = app.screen
        matrix = screen.query_one(ConfusionMatrix)
        await until(pilot, lambda: matrix.counts == confusion, "counts not set")
        await pilot.pause(0.1)
        box = screen.query_one("#confusion")
        assert box.region.right <= size[0] and matrix.region.right <= box.region.right - 1, \
            f"dialog {box.region} matrix {matrix.region} on a screen {size[0]} wide"
        lines = matrix.render().plain.splitlines()
        assert max(len(line) for line in lines) <= matrix.region.width, "the recall column is cut off"
        if size[0] == 80:
            assert matrix.shortened and "123k" in lines[2] and "1.2k" in lines[2] and "1,234" not in lines[2]
        else:
            assert not matrix.shortened and f"{top:,}" in lines[2] and "1,234" in lines[2]
        assert lines[2].rstrip().endswith("%"), lines[2]  # the recall, whole
        w = matrix.cell_width
        await pilot.click(ConfusionMatrix, offset=(LABEL_WIDTH + 4 * w + w - 2, 2 + 3))
        await until(pilot, lambda: screen.cell == (3, 4), lambda: f"picked {screen.cell}")


def test_worker_latencies_past_a_second_are_said_in_seconds() -> None:
    """The Workers pane showed 1565/1804 under "p50/p99 ms" where the Results pane said p99 1.8 s."""
    from tui.workers.workers_pane import _lat, _p99

    assert _lat({"p50": 5.25, "p99": 557.4}) == "5.2/557"
    assert _lat({"p50": 1565.0, "p99": 18_040.0}) == "1.6s/18s"
    assert _p99({"p99": 999.4}) == "999" and _p99({"p99": 1000.0}) == "1.0s" and _p99({"p99": 2e6}) == "33m"
    assert all(len(_p99({"p99": v})) <= 5 for v in (0.0, 99.96, 999.6, 9_960.0, 999_600.0, 59_990_000.0, 1e12))


def test_a_probability_bar_shows_the_percentage_written_beside_it() -> None:
    """0.24% and 0.16% are both written 0.2%: one had a sliver of a bar and the other none."""
    from rich.style import Style

    from tui.results.prob_bars import bars_text

    styles = {name: Style() for name in ("accent", "ok", "bad", "bold", "plain", "muted")}
    probs = [0.0024, 0.0016, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.996]
    lines = bars_text(probs, 9, None, 40, styles).plain.splitlines()
    assert lines[0].endswith("0.2%") and lines[1].endswith("0.2%")
    assert lines[0] == "0" + lines[1][1:], lines[:2]


async def test_a_long_error_in_the_result_detail_wraps_under_itself(app: MnistApp) -> None:
    """An error result's reason went on under the names ("4,000,000 bytes (limit ..." below "prediction")."""
    error = "image too big: 4,000,000 bytes (limit 1,048,576); the worker answers it with this error result"
    row = ResultRow(1, 0.0, "x-1", None, 3, None, 12.5, "infer-w1", error, None, None, False)

    async def body(pilot: Pilot[Any]) -> None:
        app.push_screen(ResultDetail([row], 0))
        await until(pilot, lambda: isinstance(app.screen, ResultDetail) and app.screen.query("#detail-fields"),
                    "no detail")
        fields = app.screen.query_one("#detail-fields")
        names = ("label", "prediction", "worker", "latency", "model", "time")

        def lines() -> list[str]:
            return [strip.text.rstrip() for strip in (fields.render_line(y) for y in range(fields.size.height))]

        await until(pilot, lambda: len([ln for ln in lines() if ln.strip()]) > len(names), lambda: f"{lines()}")
        shown = [ln for ln in lines() if ln.strip()]
        assert all(ln.startswith(names) or ln.startswith(" " * 12) for ln in shown), shown
        assert " ".join(ln.strip() for ln in shown if not ln.startswith(names[2:])).count("1,048,576") == 1

    await run(app, body, size=(80, 24))

