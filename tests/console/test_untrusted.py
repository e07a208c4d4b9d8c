"""Hostile broker content: it never crashes, hijacks or fools the console (engine/untrusted.py, tui/safe_text.py).

Statuses, results, replies and topic names another client wrote go through a real mosquitto (or the
Python broker, which lets control characters into topic names) to the real console under Pilot.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import MqttProbe, record_notifications, wait_for
from helpers import pilot_until as until
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from rich.cells import cell_len

from engine.console.export import write_results_csv
from engine.console.observer import Message, Observer, ResultRow
from engine.console.observer_process import ObserverProcess
from engine.errors import ConfigError
from engine.mqtt.address import BrokerAddress
from engine.mqtt.broker import EmbeddedBroker
from engine.protocol import parse_result
from engine.recorder import open_new_file
from engine.untrusted import clean_number, clean_status, clean_text, loads_json, visible_text
from tui.app import MnistApp
from tui.chrome.header_bar import BrokerInfo
from tui.publisher.publisher_pane import PublisherPane
from tui.results.result_detail import ResultDetail
from tui.safe_text import single_cell_text
from tui.topics.payload_view import render_payload
from tui.topics.topic_tree import TopicTree

UNSAFE = [chr(c) for c in (*range(0x00, 0x20), *range(0x7F, 0xA0))] + ["\u202e", "\u2066", "\u200f"]
OSC_TITLE = "\x1b]2;PWN\x1b\\"
OSC_CLIPBOARD = "\x1b]52;c;ZWNobyBQV05FRA==\x07"


def screen_text(app: MnistApp) -> str:
    """Every character the console would put on the terminal now (the top screen, toasts included)."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(seg.text for seg in strip) for strip in strips)


def assert_clean_screen(app: MnistApp) -> None:
    text = screen_text(app)
    bad = sorted({f"U+{ord(c):04X}" for c in text if c in UNSAFE and c != "\n"})
    assert not bad, f"control or bidi characters on the screen: {bad}"


def publish_all(address: BrokerAddress, messages: list[tuple[str, bytes, bool]]) -> None:
    probe = MqttProbe(address, [])
    try:
        for topic, payload, retain in messages:
            probe.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)
    finally:
        probe.close()


def make_app(observer: Any, kind: str = "mosquitto") -> MnistApp:
    return MnistApp(observer, BrokerInfo(observer.address.url, kind, f"{kind} (test)"))


@pytest.fixture
def started() -> Iterator[Any]:
    made: list[Any] = []

    def start(observer: Any) -> Any:
        observer.start()
        made.append(observer)
        return observer

    yield start
    for observer in made:
        observer.stop()


# ---- the boundary itself ---------------------------------------------------------------------------


def test_clean_text_removes_every_control_escape_and_bidi_character() -> None:
    for c in UNSAFE:
        assert clean_text(f"a{c}b") == "ab"
    assert clean_text(OSC_TITLE) == "]2;PWN\\"
    assert clean_text("x" * 1000, 50) == "x" * 49 + "…"
    assert clean_text("line\nnext", multiline=True) == "line\nnext"
    assert clean_text(12) == "12"


HIDDEN = UNSAFE + ["\u200b", "\u200d", "\ufeff", "\u00ad", "\u2060", "\u2028", "\u3164", "\U000e0041",
                   "\U0001f3fb", "\U0001f3fd", "\U0001f3ff"]


def test_visible_text_shows_every_hidden_character_as_an_escape() -> None:
    for c in HIDDEN:
        shown = visible_text(f"a{c}b")
        assert shown.startswith("a\\") and shown.endswith("b") and shown.isprintable() and shown.isascii(), repr(c)
    assert visible_text("infer\u200b-1") == "infer\\u200b-1"
    assert visible_text(OSC_TITLE) == "\\x1b]2;PWN\\x1b\\"
    # a skin-tone modifier: the layout counted 👍🏽 as two cells, tmux drew four and the row's border moved
    assert visible_text("\U0001f44d\U0001f3fd") == "\U0001f44d\\U0001f3fd"
    assert cell_len(visible_text("\U0001f3fd")) == len("\\U0001f3fd")
    for text in ("infer-1", "全角😀ワーカー", "a\u00a0b", "disk [/] full"):  # nothing hidden: as it is
        assert visible_text(text) == text
    assert visible_text("x" * 1000, 50) == "x" * 49 + "…"
    for n in range(40, 50):  # an escape the limit cuts in half goes whole
        assert visible_text("a" * n + "\u200b" * 5, 50).rstrip("…").endswith(("a", "\\u200b")), n


def test_a_results_row_is_as_wide_as_its_columns_whatever_the_id() -> None:
    """A skin-tone modifier in a result's id or worker made the Results row 4 cells short of its border on a
    terminal that does not join it; a variation selector made it 2 cells long. They are escapes now."""
    from rich.text import Text as RichText
    from textual.app import App

    from engine.console.observer import ResultRow
    from tui.results.results_log import columns_for, row_segments
    from tui.widgets.palette import palette

    cols = columns_for(116)
    pal = palette(App())
    for text in ("skin\U0001f44b\U0001f3fd", "vs\u263a\ufe0f", "plain-id"):
        row = ResultRow(1, 0.0, text, 3, 3, 0.9, 2.0, text, None, None, None, False)
        segments = row_segments(row, cols, pal)
        line = "".join(seg.text for seg in segments)
        assert cell_len(line) == sum(w for _t, w, _j in cols) + len(cols) - 1, repr(line)
        assert "\U0001f3fd" not in line and "\ufe0f" not in line, repr(line)
        assert RichText(line).cell_len == cell_len(line)


def test_chart_labels_take_one_cell_per_character() -> None:
    """plotext counts a legend's characters as cells: a wide worker id shifted the rest of its chart row."""
    for worker in ("全角😀ワーカー-1", "infer\u200b-\x1b[31m-2", "a" * 100):
        label = single_cell_text(worker)
        assert cell_len(label) == len(label) <= 24, label
    assert single_cell_text("infer-vm-1") == "infer-vm-1"


def test_clean_number_refuses_what_no_float_holds() -> None:
    """10**400 parses as JSON; float() of it raised OverflowError through every caller with no upper bound
    (the topic plot, the metrics exporter)."""
    assert clean_number(10**400) is None and clean_number(-(10**400)) is None
    assert clean_number(2**63) == float(2**63) and clean_number(5, 0.0, 9.0) == 5.0
    assert clean_number(True) is None and clean_number(math.nan) is None


def test_json_without_nan_infinity_or_deep_nesting() -> None:
    for bad in (b'{"a": NaN}', b'{"a": Infinity}', b"[-Infinity]", b"[" * 100_000 + b"]" * 100_000):
        with pytest.raises(ValueError):
            loads_json(bad)


PUBLISHER_FIELDS = ["sent", "rate", "rate_actual", "size", "remaining", "errors", "order", "qos", "loop",
                    "no_subscriber"]
WORKER_FIELDS = ["errors", "dropped", "queue", "processed", "received", "batch_mean", "lat_ms", "stages_ms",
                 "shed", "expired", "max_wait", "loads", "warmup_ms"]
BAD_VALUES = ["lots", math.inf, -math.inf, math.nan, -1, [1], {"x": 1}, 10**400]


@pytest.mark.parametrize("field", sorted(set(PUBLISHER_FIELDS + WORKER_FIELDS)))
@pytest.mark.parametrize("value", BAD_VALUES, ids=repr)
def test_a_wrong_typed_status_field_is_dropped_and_counted(field: str, value: Any) -> None:
    """The finding's 48 field/type combinations (and more): dropped, counted, never raised."""
    if field in ("order",) and isinstance(value, str):
        pytest.skip("any text is a valid order (shown escaped)")
    if field in ("lat_ms", "stages_ms") and isinstance(value, dict):
        value = {"p50": "slow"}
    data, bad = clean_status({"role": "input", "state": "running", field: value})
    assert field not in data and bad == 1
    assert data["state"] == "running"


def test_status_text_fields_lose_escapes_and_keep_types() -> None:
    data, bad = clean_status({"state": OSC_TITLE, "dataset": OSC_CLIPBOARD, "sent": 5, "rate": 2.5,
                              "qos": 1, "last": {"label": "7", "png": 3}, "future": [{"x": OSC_TITLE}]})
    assert bad == 0
    assert "\x1b" not in json.dumps(data, ensure_ascii=False)
    assert data["sent"] == 5 and data["rate"] == 2.5 and data["last"]["label"] is None and data["last"]["png"] is None


def test_results_with_non_numeric_probs_or_escapes_are_cleaned() -> None:
    r = parse_result(json.dumps({"id": "a", "pred": 3, "probs": ["x"] * 10, "conf": "high"}).encode())
    assert r.probs is None and r.conf is None
    r = parse_result(json.dumps({"id": "b", "error": OSC_CLIPBOARD + "[/]"}).encode())
    assert r.error is not None and "\x1b" not in r.error and "\x07" not in r.error
    with pytest.raises(ValueError):
        parse_result(b'{"id": "c", "pred": 1, "probs": [NaN, 0, 0, 0, 0, 0, 0, 0, 0, 0]}')
    with pytest.raises(ValueError):
        parse_result(b'{"id": "d", "pred": true}')


def test_a_json_payload_shows_the_characters_it_hides() -> None:
    """A JSON value with U+200B kept it raw; with U+202E, lost it without a mark (text holding them is shown
    in hex)."""
    payload = json.dumps({"k": "infer\u200b-1", "m": "b\u202ec"}, ensure_ascii=False).encode()
    r = render_payload(Message(1, time.time(), "evil", 0, False, len(payload), payload))
    assert r.kind == "json" and r.body is not None
    assert "infer\\u200b-1" in r.body.plain and "b\\u202ec" in r.body.plain, r.body.plain


@pytest.mark.parametrize("depth", [900, 30_000])
def test_deep_json_payloads_render_as_bounded_text(depth: int) -> None:
    payload = b"[" * depth + b"]" * depth
    started = time.process_time()
    r = render_payload(Message(1, time.time(), "deep", 0, False, len(payload), payload))
    assert r.kind == "text" and r.body is not None
    assert time.process_time() - started < 5  # a guard against the old freeze, not a speed figure


# ---- files ---------------------------------------------------------------------------------------


def test_csv_export_neutralises_formulas_and_is_private(tmp_path) -> None:
    rows = []
    for i, (ident, error) in enumerate([("=HYPERLINK(\"http://e.vil\")", None), ("@SUM(A1)", "+1"), ("ok", "-2")]):
        payload = {"id": ident, "worker": "=cmd|' /C calc'!A0", "model": "m"}
        payload.update({"error": error} if error else {"pred": 1, "probs": ["x"] * 10})
        r = parse_result(json.dumps(payload).encode())
        rows.append(ResultRow(i, time.time(), r.id, r.pred, r.label, r.conf, None, r.worker, r.error, r.probs,
                              r.model, False))
    path = tmp_path / "out.csv"
    assert write_results_csv(rows, path) == 3
    text = path.read_text()
    for line in text.splitlines()[1:]:
        for cell in line.split(",")[1:]:
            assert not cell.lstrip('"').startswith(("=", "+", "-", "@")), line
    assert "'=HYPERLINK" in text and "'@SUM" in text and "'+1" in text
    assert os.stat(path).st_mode & 0o777 == 0o600
    link = tmp_path / "link.csv"
    link.symlink_to(tmp_path / "target.csv")
    with pytest.raises(ConfigError):
        write_results_csv(rows, link)
    assert not (tmp_path / "target.csv").exists()


def test_record_file_refuses_to_overwrite_and_never_follows_a_symlink(tmp_path) -> None:
    existing = tmp_path / "rec.ndjson"
    existing.write_text("keep me")
    with pytest.raises(ConfigError, match="--force"):
        open_new_file(existing)
    assert existing.read_text() == "keep me"
    target = tmp_path / "victim"
    target.write_text("precious")
    link = tmp_path / "link.ndjson"
    link.symlink_to(target)
    for overwrite in (False, True):
        with pytest.raises(ConfigError):
            open_new_file(link, overwrite=overwrite)
    assert target.read_text() == "precious"
    with open_new_file(existing, overwrite=True) as handle:
        handle.write("new")
    assert existing.read_text() == "new" and os.stat(existing).st_mode & 0o777 == 0o600
    with open_new_file(tmp_path / "fresh.ndjson") as handle:
        handle.write("x")
    assert os.stat(tmp_path / "fresh.ndjson").st_mode & 0o777 == 0o600


# ---- the observer ------------------------------------------------------------------------------------


@pytest.mark.needs_mosquitto
def test_observer_drops_bad_fields_and_forgets_long_offline_roles(mosquitto_broker: EmbeddedBroker, started) -> None:
    publish_all(mosquitto_broker.address, [
        ("mnist/status/input/bad", b'{"role":"input","state":"running","sent":"lots","errors":Infinity}', True),
        ("mnist/status/infer/gone", b'{"role":"infer","state":"offline","reason":"disk [/] full"}', True),
        ("mnist/status/infer/junk", b"[1, 2", True),
    ])
    obs = started(Observer(mosquitto_broker.address))
    def seen() -> Any:
        snap = obs.snapshot()
        return snap if len(snap.roles) == 2 and snap.ignored >= 3 else None

    snap = wait_for(seen, message="statuses not seen")
    bad = next(r for r in snap.roles if r.id == "bad")
    assert bad.state == "running" and "sent" not in bad.data and "errors" not in bad.data
    obs.forget_after = 0.0
    obs._rate_mark_t = 0.0  # the next snapshot sweeps
    wait_for(lambda: not obs.snapshot().roles, message="offline roles not forgotten")


# ---- the console -------------------------------------------------------------------------------------


HOSTILE_STATUSES: list[tuple[str, dict[str, Any]]] = [
    ("mnist/status/input/pub", {"role": "input", "state": OSC_TITLE, "sent": "lots", "rate": 5, "qos": 0,
                                 "order": "[@click=app.quit]CLICK TO RESUME[/]", "dataset": OSC_CLIPBOARD,
                                 "errors": 1e400, "rate_actual": [1], "size": {"a": 1}, "remaining": -3}),
    ("mnist/status/infer/[red]M[link=https:e.vil]k", {"role": "infer", "state": "running", "errors": "x",
                                                       "dropped": None, "queue": "deep", "processed": 1.5}),
    ("mnist/status/infer/w2", {"role": "infer", "state": "offline", "reason": "disk [/] full" + OSC_TITLE}),
]


@pytest.mark.needs_mosquitto
@pytest.mark.parametrize("observer_class", [Observer, ObserverProcess])
async def test_console_starts_and_stays_up_on_hostile_retained_statuses(
        mosquitto_broker: EmbeddedBroker, started, observer_class: type) -> None:
    address = mosquitto_broker.address
    body = [(t, json.dumps(d).replace("1e+400", "Infinity").encode(), True) for t, d in HOSTILE_STATUSES]
    body.append(("deep/json", b"[" * 900 + b"]" * 900, True))
    publish_all(address, body)
    observer = started(observer_class(address))
    app = make_app(observer)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.snap is not None and len(app.snap.roles) == 3, "statuses not shown")
        # A hostile role goes offline with a markup reason while the console watches.
        publish_all(address, [("mnist/status/infer/[red]M[link=https:e.vil]k",
                               json.dumps({"state": "offline", "reason": "[/] " + OSC_CLIPBOARD}).encode(), True)])
        await until(pilot, lambda: sum(r.state == "offline" for r in app.snap.roles) == 2, "offline not seen")
        await pilot.pause(0.3)
        pane = app.screen.query_one(PublisherPane)
        shown = screen_text(app)
        assert "[@click=app.quit]CL" in shown and pane is not None  # shown as written, not a link
        assert_clean_screen(app)
        await pilot.click(PublisherPane)  # the order text is no link: the app stays
        tree = app.screen.query_one(TopicTree)
        tree.focus()
        await until(pilot, lambda: "deep/json" in tree.topic_names, "deep topic not in the tree")
        for _ in range(12):
            await pilot.press("down")
            await pilot.pause(0.05)
        await pilot.pause(0.3)
        assert_clean_screen(app)
        assert app.is_running


@pytest.mark.needs_mosquitto
async def test_an_error_status_whose_reason_is_not_text_says_it_failed_and_why(
        mosquitto_broker: EmbeddedBroker, started) -> None:
    """`{"state": "error", "reason": 42}` said "failed: no reason given" and at once "is online": it says it
    failed with the reason's JSON (escaped, cut), and nothing of being online."""
    observer = started(Observer(mosquitto_broker.address))
    app = make_app(observer)
    notes = record_notifications(app)
    reason = {"disk": "[/] full" + OSC_TITLE, "n": list(range(500))}
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.snap is not None and app.snap.subscribed, "not connected")
        publish_all(mosquitto_broker.address, [
            ("mnist/status/infer/w9", b'{"state": "error", "reason": 42}', False),
            ("mnist/status/infer/w8", json.dumps({"state": "error", "reason": reason}).encode(), False),
            ("mnist/status/infer/w7", b'{"state": "running"}', False),  # online, said after the two above
        ])
        await until(pilot, lambda: any("w7 is online" in n for n in notes), lambda: str(notes))
        assert "infer w9 failed: 42" in notes, notes
        w8 = next((n for n in notes if "infer w8 failed: " in n), "")
        assert w8.startswith('infer w8 failed: {"disk": "[/] full\\u001b]2;PWN'), notes
        assert w8.endswith("…") and len(w8) < 300, w8
        assert not [n for n in notes if "w9 is" in n or "w8 is" in n or "no reason" in n], notes
        pane = app.screen.query_one("#workers")  # the two in error are not counted as online ("3 of 3 online")
        await until(pilot, lambda: str(pane.border_subtitle).startswith("1 of 3 online · 2 failed"),
                    lambda: str(pane.border_subtitle))
        await pilot.pause(0.3)
        assert_clean_screen(app)


LOOK_ALIKES = ["infer-1", "infer\u200b-1", "infer\u202e-1", "infer\ufeff-1", "infer-1\u034f", "infer-1\ufe0f",
               "infer\\u200b-1", "w" * 290 + "A" * 10, "w" * 290 + "B" * 10]


@pytest.mark.needs_mosquitto
async def test_a_worker_id_that_differs_by_an_invisible_character_looks_different(
        mosquitto_broker: EmbeddedBroker, started) -> None:
    """`infer` + U+200B + `-1` was shown as `infer-1`, and one with U+202E (removed) was taken for it."""
    address = mosquitto_broker.address
    publish_all(address, [(f"mnist/status/infer/{wid}", json.dumps({"role": "infer", "state": "running",
                                                                    "ts": time.time()}).encode(), True)
                          for wid in LOOK_ALIKES])
    observer = started(Observer(address))
    app = make_app(observer)
    async with app.run_test(size=(120, 40)) as pilot:
        # one row each: a typed-out escape or two long ids alike in their first 290 characters were one row
        await until(pilot, lambda: app.snap is not None and len(app.snap.roles) == len(LOOK_ALIKES),
                    lambda: f"{len(app.snap.roles) if app.snap else 0} workers shown")
        shown = {r.id for r in app.snap.roles}
        looks = {"infer-1", "infer\\u200b-1", "infer\\u202e-1", "infer\\ufeff-1", "infer-1\\u034f",
                 "infer-1\\ufe0f", "infer\\\\u200b-1"}
        assert looks < shown
        await pilot.pause(0.3)
        text = screen_text(app)
        for wid in looks - {"infer\\\\u200b-1"}:  # (the typed-out one is shown as typed)
            assert wid in text, wid
        assert_clean_screen(app)
        with pytest.raises(ConfigError, match="cannot be steered"):  # its control topic names another role
            observer.send_control("infer", "load", "infer\\u200b-1", path="m.pt")
        observer.send_control("infer", "ping", "infer-1")


@pytest.mark.needs_mosquitto
async def test_result_ids_with_markup_in_the_confusion_matrix_cell_list(mosquitto_broker: EmbeddedBroker,
                                                                         started) -> None:
    """The cell list's DataTable read a str cell as markup: `[/]` raised, `[@click=app.quit]` made a link."""
    from tui.results.confusion_matrix import LABEL_WIDTH, ConfusionMatrix
    from tui.results.confusion_screen import CellList, ConfusionScreen

    observer = started(Observer(mosquitto_broker.address))
    app = make_app(observer)
    ids = ["[@click=app.quit]img-7[/]", "[/]", "a[b"]
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.snap is not None and app.snap.subscribed, "not connected")
        publish_all(mosquitto_broker.address, [
            ("result", json.dumps({"id": i, "pred": 3, "label": 3, "conf": 0.9, "probs": [0.01] * 10,
                                   "worker": "[/]w"}).encode(), False) for i in ids])
        await until(pilot, lambda: app.snap.stats.labelled == 3, "results not counted")
        await pilot.press("m")
        await until(pilot, lambda: isinstance(app.screen, ConfusionScreen), "m opened no matrix")
        screen = app.screen
        matrix = screen.query_one(ConfusionMatrix)
        w = matrix.cell_width
        await pilot.click(ConfusionMatrix, offset=(LABEL_WIDTH + 3 * w + w - 2, 2 + 3))
        await until(pilot, lambda: screen.cell == (3, 3) and len(screen.listed) == 3, "cell not listed")
        table = screen.query_one(CellList)
        await until(pilot, lambda: table.row_count == 3, "rows not in the list")
        await pilot.pause(0.3)
        shown = screen_text(app)
        for i in ids:
            assert i in shown, i
        assert "[/]w" in shown
        assert_clean_screen(app)
        await pilot.click(CellList, offset=(20, 1))  # the id is no link: the console stays
        await pilot.pause(0.2)
        assert app.is_running


async def test_topic_names_with_escapes_and_markup_on_the_python_broker(python_broker: EmbeddedBroker,
                                                                        started) -> None:
    address = python_broker.address
    observer = started(Observer(address))
    app = make_app(observer, "python")
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.snap is not None and app.snap.subscribed, "not connected")
        publish_all(address, [(f"evil/{OSC_TITLE}/[b]x[/]", b"1", False),
                              (f"evil/{OSC_CLIPBOARD}[@click=app.quit]", b"2", False)])
        tree = app.screen.query_one(TopicTree)
        await until(pilot, lambda: len(tree.topic_names) >= 2, "topics not in the tree")
        await pilot.pause(0.3)
        assert_clean_screen(app)
        assert app.is_running


@pytest.mark.needs_mosquitto
async def test_result_detail_with_non_numeric_probs(mosquitto_broker: EmbeddedBroker, started) -> None:
    observer = started(Observer(mosquitto_broker.address))
    app = make_app(observer)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.snap is not None and app.snap.subscribed, "not connected")
        publish_all(mosquitto_broker.address, [
            ("result", json.dumps({"id": "r1", "pred": 2, "probs": ["a"] * 10, "conf": "x",
                                   "worker": "w", "error": None}).encode(), False),
            ("result", json.dumps({"id": "r2", "error": "[/]" + OSC_CLIPBOARD}).encode(), False),
        ])
        await until(pilot, lambda: len(app.snap.results) == 2, "results not shown")
        app.push_screen(ResultDetail(list(app.snap.results), 0, app.observer))
        await pilot.pause(0.3)
        assert_clean_screen(app)
        await pilot.press("right")
        await pilot.pause(0.2)
        assert_clean_screen(app)
        assert app.is_running


# ---- the topic tree matches the count ----------------------------------------------------------------


@pytest.mark.needs_mosquitto
def test_child_observer_always_sends_the_topics_it_counts(mosquitto_broker: EmbeddedBroker, started) -> None:
    obs = started(ObserverProcess(mosquitto_broker.address, push_hz=50))
    wait_for(lambda: obs.snapshot().subscribed, message="not subscribed")
    probe = MqttProbe(mosquitto_broker.address, [])
    mismatches = []
    try:
        for i in range(30):
            probe.client.publish(f"planted/{i}", b"x", qos=1).wait_for_publish(10)
            for _ in range(3):
                snap = obs.snapshot()
                if len(snap.topics) != snap.topic_count:
                    mismatches.append((snap.topic_count, len(snap.topics)))
                time.sleep(0.01)  # paces the loop only: nothing waits on it
        wait_for(lambda: obs.snapshot().topic_count >= 30, message="topics missing")
        snap = obs.snapshot()
        assert {f"planted/{i}" for i in range(30)} <= {t.name for t in snap.topics}
    finally:
        probe.close()
    assert not mismatches, f"count without its topics: {mismatches[:5]}"


# ---- fuzz: random statuses, results, replies and topics through the real console ---------------------


_hostile_text = st.one_of(
    st.text(max_size=24),
    st.sampled_from([OSC_TITLE, OSC_CLIPBOARD, "[/]", "[@click=app.quit]x[/]", "[red]", "\u202eevil", "\x9b31m",
                     "[link=https://e.vil]a[/link]", "\x1b[2J"]),
)
_json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10**20) | st.floats(allow_nan=True, allow_infinity=True)
    | _hostile_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_hostile_text, inner, max_size=4),
    max_leaves=8,
)
_fields = st.sampled_from(["state", "sent", "rate", "rate_actual", "size", "remaining", "errors", "order", "qos",
                           "loop", "dataset", "last", "dropped", "queue", "processed", "lat_ms", "model",
                           "reason", "batch_mean", "confusion", "sessions_lost"])
_status = st.dictionaries(_fields | _hostile_text, _json_value, max_size=8)
def _noncharacter(c: str) -> bool:
    """U+FDD0-U+FDEF and U+xFFFE/U+xFFFF: mosquitto closes the connection of a client that names a topic with one."""
    return 0xFDD0 <= ord(c) <= 0xFDEF or ord(c) & 0xFFFE == 0xFFFE


_topic_level = st.text(st.characters(blacklist_categories=["Cc", "Cs"], blacklist_characters="/+#\0")
                       .filter(lambda c: not _noncharacter(c)),
                       min_size=1, max_size=12) | st.sampled_from(["[/]", "[@click=app.quit]x", "\u202eab"])
_result = st.fixed_dictionaries({}, optional={"id": _json_value, "pred": _json_value, "probs": _json_value,
                                              "conf": _json_value, "error": _json_value, "worker": _json_value,
                                              "label": _json_value, "t_sent": _json_value})


@pytest.mark.needs_mosquitto
@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), phases=[Phase.generate])
@given(statuses=st.lists(st.tuples(st.sampled_from(["input", "infer", "output"]), _topic_level, _status),
                         min_size=1, max_size=6),
       results=st.lists(_result, max_size=6),
       replies=st.lists(_json_value, max_size=3),
       topics=st.lists(st.tuples(_topic_level, _json_value), max_size=4))
@pytest.mark.slow
def test_fuzzed_broker_content_never_crashes_or_reaches_the_terminal(statuses, results, replies, topics) -> None:
    import asyncio

    asyncio.run(_fuzz_once(statuses, results, replies, topics))


async def _fuzz_once(statuses: list, results: list, replies: list, topics: list) -> None:
    broker = EmbeddedBroker(kind="mosquitto")
    broker.start()
    observer = Observer(broker.address)
    try:
        observer.start()
        app = make_app(observer)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.snap is not None and app.snap.subscribed, "not connected")
            reqs = [observer.send_control("infer", "ping", "fuzz") for _ in replies]
            messages = [(f"mnist/status/{role}/{cid}", json.dumps(data).encode(), True)
                        for role, cid, data in statuses]
            messages += [("result", json.dumps(r).encode(), False) for r in results]
            messages += [("mnist/reply/infer/fuzz", json.dumps({"req": req, "ok": False, "cmd": "ping",
                                                                "error": err}).encode(), False)
                         for req, err in zip(reqs, replies, strict=True)]
            messages += [(f"fuzz/{level}", json.dumps(value).encode(), False) for level, value in topics]
            before = observer.snapshot().inspected
            publish_all(broker.address, messages)
            await until(pilot, lambda: observer.snapshot().inspected >= before + len(messages), "messages not seen")
            tree = app.screen.query_one(TopicTree)
            tree.focus()
            for _ in range(len(topics) + 3):
                await pilot.press("down")
            await pilot.pause(0.25)
            assert app.is_running
            assert_clean_screen(app)
    finally:
        observer.stop()
        broker.stop()
