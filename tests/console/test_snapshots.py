"""How the console looks (pytest-textual-snapshot): the main screen, the help screen, the draw dialog with a
fixed drawing and answer, and the confusion matrix; 120x40 and 80x24.

The flow is stopped and the content fixed: an observer fed a recorded set of messages through the same
parsing path as live ones (`Observer.ingest`), on a frozen clock, in UTC. Update the pictures with
`pytest tests/console/test_snapshots.py --snapshot-update` after a deliberate change, and look at them.
"""

from __future__ import annotations

import base64
import io
import json
import time
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from engine.console.observer import Connection, Observer, ResultRow, Snapshot
from engine.mqtt.address import BrokerAddress
from engine.protocol import embed_meta
from tui.app import MnistApp
from tui.chrome.header_bar import BrokerInfo
from tui.draw.draw_canvas import SIDE, DrawCanvas, stroke
from tui.draw.draw_dialog import DrawDialog

NOW = 1_764_108_000.0  # 2025-11-25 22:00:00 UTC
BROKER = BrokerInfo("mqtt://127.0.0.1:1883", "mosquitto", "mosquitto 2.0.11 (embedded)")


def _digit_png() -> bytes:
    """A hand-drawn 7, white on black, 28x28 (always the same bytes)."""
    img = Image.new("L", (28, 28), 0)
    draw = ImageDraw.Draw(img)
    draw.line([(7, 7), (21, 7), (13, 23)], fill=255, width=3)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=False)
    return out.getvalue()


class FrozenObserver(Observer):
    """An observer that never connects; its clock is frozen and it reports a live connection."""

    def snapshot(self, *args: Any, **kwargs: Any) -> Snapshot:
        snap = super().snapshot(*args, **kwargs)
        return snap._replace(connection=Connection("connected", NOW - 60, None, None, 5, self.address.url),
                             subscribed=True)


def _status(role: str, cid: str, **fields: Any) -> bytes:
    base = {"role": role, "id": cid, "state": "stopped", "host": "lab", "pid": 4242, "ts": NOW,
            "uptime": 61.0, "connected": True}
    return json.dumps(base | fields).encode()


def make_observer() -> FrozenObserver:
    obs = FrozenObserver(BrokerAddress(port=1883), clock=lambda: NOW, client_id="console-test")
    png = _digit_png()
    obs.ingest("mnist/status/input/input-lab-1", _status(
        "input", "input-lab-1", dataset="assets/mnist_images", size=1000, sent=1234, rate=20.0, rate_actual=0.0,
        qos=0, order="sequential", loop=True, remaining=None, errors=0,
        last={"id": "input-lab-1-1234", "label": 7, "name": "7.png", "png": base64.b64encode(png).decode()}),
        qos=1, retain=True)
    obs.ingest("mnist/status/infer/infer-lab-1", _status(
        "infer", "infer-lab-1", state="running", model="lenet5@3f2a9c1d", processed=1230, errors=1, rate=0.0,
        queue=0, queue_max=10000, dropped=0, batch_mean=3.2, max_batch=64, max_delay_ms=2.0,
        lat_ms={"p50": 1.8, "p90": 3.0, "p99": 6.4, "max": 9.1}), qos=1, retain=True)
    obs.ingest("mnist/status/infer/infer-far-2", _status(
        "infer", "infer-far-2", state="offline", connected=False, model="lenet5@3f2a9c1d", processed=400,
        errors=0, queue=0, dropped=3, batch_mean=1.0, lat_ms={"p50": 2.5, "p99": 8.0}), qos=1, retain=True)
    obs.ingest("mnist/status/output/output-lab-1", _status(
        "output", "output-lab-1", state="running", received=1230, accuracy=0.99), qos=1, retain=True)
    labels = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9, 0, 6, 9, 0, 1, 5, 9, 7, 3, 4]
    for i, label in enumerate(labels):
        pred = 7 if i == 8 else label  # one wrong answer
        result = {"id": f"input-lab-1-{1200 + i}", "pred": pred, "conf": 0.9871, "label": label,
                  "worker": "infer-lab-1", "model": "lenet5@3f2a9c1d", "t_sent": NOW - 0.0042}
        obs.ingest("result", json.dumps(result).encode())
    obs.ingest("result", json.dumps({"id": "infer-lab-1:17", "error": "not a PNG image (starts with 0x48 0x65)",
                                     "worker": "infer-lab-1", "t_sent": None}).encode())
    obs.ingest("mnist", embed_meta(png, {"id": "input-lab-1-1234", "label": 7, "t": NOW, "src": "input-lab-1"}))
    obs.ingest("sensors/lab/temperature", b"21.5", qos=1, retain=True)
    return obs


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
def test_main_screen(snap_compare: Any, size: tuple[int, int]) -> None:
    app = MnistApp(make_observer(), BROKER)

    async def settle(pilot: Any) -> None:
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
def test_help_screen(snap_compare: Any, size: tuple[int, int]) -> None:
    app = MnistApp(make_observer(), BROKER)
    assert snap_compare(app, terminal_size=size, press=["question_mark"])


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
def test_draw_dialog(snap_compare: Any, size: tuple[int, int]) -> None:
    """A "1" drawn with the soft brush, and the answer as a worker gave it (fixed, no broker needed)."""
    app = MnistApp(make_observer(), BROKER)

    async def draw(pilot: Any) -> None:
        await pilot.press("d")
        dialog = app.screen
        assert isinstance(dialog, DrawDialog)
        pixels = np.zeros((SIDE, SIDE), np.float32)
        stroke(pixels, 15.5, 4.5, 13.5, 23.5)
        stroke(pixels, 15.5, 4.5, 12.5, 7.5)
        dialog.query_one(DrawCanvas).load(pixels)
        probs = (0.002, 0.962, 0.004, 0.002, 0.011, 0.001, 0.002, 0.009, 0.005, 0.002)
        dialog.show_result(ResultRow(1, NOW, "console-test-draw-1", 1, None, 0.962, 12.5, "infer-lab-1", None,
                                     probs, "lenet5@3f2a9c1d", False))
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=size, run_before=draw)


def test_confusion_matrix(snap_compare: Any) -> None:
    """m: the one wrong answer of the recorded results (a 5 taken for a 7) is picked and listed."""
    app = MnistApp(make_observer(), BROKER)
    assert snap_compare(app, terminal_size=(80, 24), press=["m"])


async def _settle(pilot: Any) -> None:
    await pilot.pause(0.3)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
@pytest.mark.parametrize("pane", ["publisher", "workers", "results", "topics"])
def test_zoom_fills_the_screen(snap_compare: Any, size: tuple[int, int], pane: str) -> None:
    """z on any pane: that pane alone, as wide and tall as the screen."""
    app = MnistApp(make_observer(), BROKER)
    presses = {"publisher": [], "workers": ["tab"], "results": ["tab", "tab"], "topics": ["shift+tab"]}[pane]
    assert snap_compare(app, terminal_size=size, press=[*presses, "z"], run_before=_settle)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
def test_topics_pane_focused(snap_compare: Any, size: tuple[int, int]) -> None:
    """The Topics pane's keys in the footer, ? Help and q Quit still in it at 80 columns."""
    app = MnistApp(make_observer(), BROKER)
    assert snap_compare(app, terminal_size=size, press=["shift+tab"], run_before=_settle)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
def test_light_theme(snap_compare: Any, size: tuple[int, int]) -> None:
    """textual-light: the unfocused panes' borders are visible."""
    app = MnistApp(make_observer(), BROKER)

    async def light(pilot: Any) -> None:
        app.theme = "textual-light"
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=size, run_before=light)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
def test_publish_dialog(snap_compare: Any, size: tuple[int, int]) -> None:
    """The retain checkbox inside the dialog."""
    app = MnistApp(make_observer(), BROKER)
    assert snap_compare(app, terminal_size=size, press=["p"], run_before=_settle)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
def test_rate_dialog(snap_compare: Any, size: tuple[int, int]) -> None:
    app = MnistApp(make_observer(), BROKER)
    assert snap_compare(app, terminal_size=size, press=["r"], run_before=_settle)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
async def test_an_error_row_keeps_the_columns(size: tuple[int, int]) -> None:
    """A long reason (wide characters too) is cut with an ellipsis at the pane's edge, one space after the
    time (and id) columns: it never runs into them or past the pane."""
    from rich.cells import cell_len

    from tui.results.results_log import ResultsLog, columns_for

    obs = make_observer()
    reason = "模型 " + "cannot decode this payload because it is far too long for any column " * 3
    obs.ingest("result", json.dumps({"id": "input-lab-1-9999", "error": reason, "worker": "infer-lab-1"}).encode())
    app = MnistApp(obs, BROKER)
    async with app.run_test(size=size) as pilot:
        log = app.screen.query_one(ResultsLog)
        await pilot.pause(0.3)
        width = log.scrollable_content_region.width
        lines = ["".join(seg.text for seg in log.render_line(y)) for y in range(log.size.height)]
        row = next((line for line in lines if "cannot decode" in line), None)
        assert row is not None, lines
        assert cell_len(row) == width, (cell_len(row), width, row)
        before = sum(w + 1 for title, w, _j in columns_for(width) if title in ("time", "id"))
        assert row[before:].startswith("error: 模型 cannot"), row
        assert row[before - 1] == " " and row.rstrip().endswith("…"), row
        assert row[:8] == "22:00:00", row
