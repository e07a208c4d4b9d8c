"""The topic inspector (issue #14, items 3 and 4): search, history and diff, copy and save, re-publish,
expand/collapse, retained marks, MQTT 5 properties, plots, and the full-screen inspector.

Pure parts are tested on their own; the screen on a real mosquitto through Pilot, with a real MQTT 5 client
publishing what the console inspects.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import MqttProbe, burst, make_client, pilot_until
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from rich.cells import cell_len
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Input, Static
from textual_plotext import PlotextPlot

from engine.console.message_props import MessageProps, message_props
from engine.console.observer import Message, Observer
from engine.console.payload_diff import payload_diff
from engine.console.payload_file import default_name, write_payload
from engine.console.series import (
    VALUE,
    changes,
    for_plot,
    is_clock_name,
    is_identifier,
    number_fields,
    opening,
    series,
)
from engine.errors import ConfigError
from engine.mqtt.address import BrokerAddress
from engine.mqtt.broker import EmbeddedBroker
from tui.app import MnistApp
from tui.chrome.header_bar import BrokerInfo
from tui.topics.diff_screen import DiffScreen
from tui.topics.inspector_screen import InspectorScreen
from tui.topics.payload_view import PayloadView, hex_row_bytes, render_payload
from tui.topics.plot_screen import PlotScreen, still_note
from tui.topics.publish_dialog import MAX_FILE, PublishDialog, parse_payload
from tui.topics.topic_tree import TopicTree
from tui.topics.topics_pane import MessagesTable, TopicsPane
from tui.widgets.safe_plot import SafePlot

SIZE = (120, 40)


# ----- pure parts ---------------------------------------------------------------------------------


def test_json_diff_names_changed_added_and_removed_keys() -> None:
    kind, lines = payload_diff(b'{"t": 20, "unit": "C", "tags": [1, 2], "old": true}',
                               b'{"t": 22.5, "unit": "C", "tags": [1, 3], "new": null}')
    assert kind == "json"
    assert [(d.kind, d.text) for d in lines] == [
        ("added", "+ new: null"), ("removed", "- old: true"), ("changed", "~ t: 20 → 22.5"),
        ("changed", "~ tags[1]: 2 → 3"),
    ]
    assert payload_diff(b'{"a": 1}', b'{"a": 1}')[1][0].text == "the same JSON value"


def test_text_and_binary_diff_and_control_characters_are_cleaned() -> None:
    kind, lines = payload_diff(b"one\ntwo\x1b[31m\nthree", b"one\n2\nthree")
    assert kind == "text"
    assert ("removed", "-two[31m") in [(d.kind, d.text) for d in lines]
    assert ("added", "+2") in [(d.kind, d.text) for d in lines]
    assert all("\x1b" not in d.text for d in lines)
    kind, lines = payload_diff(b"\xff\x00\x01", b"\xff\x00\x02\x03")
    assert kind == "binary" and "first at byte 2" in lines[0].text


def test_number_fields_and_series() -> None:
    msgs = [(1.0, b"20.5"), (2.0, b"not a number"), (3.0, b"21")]
    assert number_fields(p for _t, p in msgs) == [VALUE]
    assert series(msgs, VALUE) == ([1.0, 3.0], [20.5, 21.0])
    js = [(1.0, b'{"t": 1, "in": {"h": 40}, "ok": true}'), (2.0, b'{"t": 2, "in": {"h": "x"}}'),
          (3.0, b'{"t": NaN}')]
    assert number_fields(p for _t, p in js) == ["t", "in.h"]  # booleans and NaN are not numbers
    assert series(js, "in.h") == ([1.0], [40.0])
    huge = b"1" + b"0" * 400  # an integer JSON parses and no float holds: not a number (it raised)
    big = [(1.0, huge), (2.0, b'{"a": ' + huge + b', "b": 2}'), (3.0, b"5")]
    assert number_fields(p for _t, p in big) == ["b", VALUE]  # in the order first seen
    assert series(big, VALUE) == ([3.0], [5.0]) and series(big, "a") == ([], [])


def first_varying(messages: list[tuple[float, bytes]], fields: list[str]) -> int:
    """The field a plot of `messages` opens on, as PlotScreen picks it."""
    return opening(fields, changes(messages, fields))


def test_a_plot_opens_on_a_field_that_changes_and_is_not_a_clock() -> None:
    """A status's first changing field is its `ts`, a Unix time: the plot opened on a clock's climb."""
    statuses = [(float(i), json.dumps({"ts": 1_796_152_446.7 + i, "pid": 42, "uptime": 30.2 + i,
                                       "uptime_ms": 30_200 + 1000 * i, "rate": 9.5 + i % 3}).encode())
                for i in range(5)]
    fields = number_fields(p for _t, p in statuses)
    assert fields == ["ts", "pid", "uptime", "uptime_ms", "rate"] and fields[first_varying(statuses, fields)] == "rate"
    counted = [(float(i), json.dumps({"uptime": 30.2 + i, "processed": 500 * i}).encode()) for i in range(5)]
    assert first_varying(counted, ["uptime", "processed"]) == 1  # a count that rises faster is no clock
    everything_a_clock = [(float(i), json.dumps({"ts": 1_796_152_446.7 + i, "up": 2.0 + i}).encode()) for i in range(5)]
    assert first_varying(everything_a_clock, ["ts", "up"]) == 0  # nothing but clocks: the first that changes


def test_where_only_clocks_change_a_plot_opens_on_a_quantity_not_a_unix_time() -> None:
    """An idle worker: only `ts` and `uptime` change; the plot opened on `ts`, a Unix time's climb. It opens on
    the first field that is neither a clock nor an identifier, constant as it is, and says that only clocks
    change."""
    idle = [(float(i), json.dumps({"pid": 42, "ts": 1_796_152_446.7 + i, "uptime": 30.2 + i, "received": 40,
                                   "rate": 0.0, "lat_ms": {"p50": None}}).encode()) for i in range(5)]
    fields = number_fields(p for _t, p in idle)
    assert fields == ["pid", "ts", "uptime", "received", "rate"]
    assert fields[first_varying(idle, fields)] == "received"
    seen = changes(idle, fields)
    assert seen.varying == {"ts", "uptime"} and seen.clocks == {"ts", "uptime"}
    assert still_note(fields, seen) == "only clocks change of late (ts, uptime)"
    assert still_note(["rate"], changes(idle[:1], ["rate"])) == "nothing changes of late"
    assert still_note(fields, changes([*idle, (5.0, b'{"rate": 3.5}')], fields)) == ""
    # one status so far: nothing changes, and its constant ts is still a Unix time
    assert first_varying(idle[:1], ["ts", "rate"]) == 1
    # only clocks and identifiers: the identifier, a flat line
    clock_and_pid = [(float(i), json.dumps({"ts": 1_796_152_446.7 + i, "pid": 42}).encode()) for i in range(5)]
    assert first_varying(clock_and_pid, ["ts", "pid"]) == 1
    assert [is_identifier(f) for f in ("pid", "id", "sensor_id", "dev.ID", "idle", "rapid", "paid_out")] == [
        True, True, True, True, False, False, False]


def test_a_count_rising_one_a_second_is_no_clock() -> None:
    """A publisher at 1 image/s: its `sent` rises a second a second, as its `uptime` does, and was taken for a
    clock (the plot opened past it and said "only clocks change of late (ts, uptime, sent)"). A clock is told
    by its name (a status's `ts` and `uptime`, `timestamp`, `uptime_ms`, `upTime`) or by a Unix time's value;
    a status's count never is one, whatever its pace or size."""
    publisher = [(float(i), json.dumps({"pid": 42, "ts": 1_796_152_446.7 + i, "uptime": 30.2 + i, "sent": 100 + i,
                                        "rate": 1.0}).encode()) for i in range(5)]
    fields = number_fields(p for _t, p in publisher)
    seen = changes(publisher, fields)
    assert seen.clocks == {"ts", "uptime"} and fields[opening(fields, seen)] == "sent"
    assert still_note(fields, seen) == ""
    worker = [(float(i), json.dumps({"uptime": 30.2 + i, "received": 7 + i, "processed": 7 + i}).encode())
              for i in range(5)]
    assert changes(worker, ["uptime", "received", "processed"]).clocks == {"uptime"}
    # a count past a billion is still a count (a Unix time of any other name is a clock, as before)
    billions = [(float(i), json.dumps({"sent": 1_500_000_000 + i, "started": 1_796_152_446}).encode())
                for i in range(5)]
    assert changes(billions, ["sent", "started"]).clocks == {"started"}
    # another publisher's names: a clock by its name and pace, a count of any other name is no clock
    names = ["timestamp", "uptime_ms", "upTime", "seconds_since_boot", "elapsed_s", "count", "frames", "response_time"]
    paces = [1, 1000, 1, 1, 1, 1, 1, 0.1]
    other = [(float(i), json.dumps({n: 5 + pace * i for n, pace in zip(names, paces, strict=True)}).encode())
             for i in range(5)]
    assert changes(other, names).clocks == {"timestamp", "uptime_ms", "upTime", "seconds_since_boot", "elapsed_s"}
    assert [is_clock_name(n) for n in ("ts", "TS", "uptime", "sent", "processed", "rate", "lat_ms", "stamp_ms")] == [
        True, True, True, False, False, False, False, True]


def test_numbers_for_a_plot_are_scaled_only_past_what_plotext_draws() -> None:
    assert for_plot([1.0, -250.5, 3e14]) == ([1.0, -250.5, 3e14], 0)
    assert for_plot([]) == ([], 0) and for_plot([0.0, 0.0]) == ([0.0, 0.0], 0)
    huge, exponent = for_plot([1.0, 1.7976931348623157e308, -1e308])
    assert exponent == 308 and huge[1] == pytest.approx(1.7976931348623157) and huge[2] == pytest.approx(-1.0)
    tiny, exponent = for_plot([5e-324, 2e-300])
    assert exponent == -300 and tiny[1] == pytest.approx(2.0) and 0 < tiny[0] < 1e-20
    smallest, exponent = for_plot([5e-324])
    assert exponent == -324 and smallest[0] == pytest.approx(5.0, rel=0.02)  # 10.0 ** -324 is 0: no division by it


def test_message_props_are_cleaned_and_bounded() -> None:
    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = "application/json\x1b[2J"
    props.ResponseTopic = "reply/\u202eto"
    props.CorrelationData = b"\x00\x01\xff"
    props.MessageExpiryInterval = 60
    props.UserProperty = [("k\x07", "v"), ("n", "2")]
    got = message_props(props)
    assert got == MessageProps("application/json[2J", "reply/to", "hex: 00 01 ff", 60, (("k", "v"), ("n", "2")))
    assert message_props(Properties(PacketTypes.PUBLISH)) is None
    assert message_props(None) is None
    # each set of properties is cleaned once and then looked up: the same answers, whatever came before
    assert message_props(props) == got
    other = Properties(PacketTypes.PUBLISH)
    other.ContentType = "application/json\x1b[2J"
    other.MessageExpiryInterval = 60
    assert message_props(other) == MessageProps("application/json[2J", message_expiry=60)
    odd = Properties(PacketTypes.PUBLISH)
    object.__setattr__(odd, "MessageExpiryInterval", True)  # a bool is not a number of seconds (True == 1)
    object.__setattr__(odd, "UserProperty", [["k", "v"], ("bad",)])  # unhashable, and a pair that is not one
    assert message_props(odd) == MessageProps(user_properties=(("k", "v"),))
    one = Properties(PacketTypes.PUBLISH)
    one.MessageExpiryInterval = 1
    assert message_props(one) == MessageProps(message_expiry=1)
    object.__setattr__(one, "MessageExpiryInterval", True)
    assert message_props(one) is None
    # a long value is cleaned (cut) but not kept: a sender cannot fill the cache with megabytes
    import engine.console.message_props as module

    kept = len(module._cache)
    big = Properties(PacketTypes.PUBLISH)
    big.CorrelationData = b"x" * 1_000_000
    assert message_props(big) == MessageProps(correlation_data="x" * 256 + "…")
    assert len(module._cache) == kept
    assert all(len(repr(key)) < 10_000 for key in module._cache)


def test_a_payload_file_is_read_whole_and_only_a_regular_file_at_most_16_mib(tmp_path: Path) -> None:
    """`@path` in the publish dialog: /dev/zero (size 0, never ends) once read until memory ran out, and a
    named pipe without a writer froze the console; both are now a one-line refusal, at once."""
    digit = tmp_path / "digit.png"
    digit.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    assert parse_payload(f"@{digit}") == digit.read_bytes()
    assert parse_payload("@@literal") == b"@literal" and parse_payload("plain") == b"plain"
    big = tmp_path / "big.bin"
    with big.open("wb") as handle:
        handle.truncate(MAX_FILE + 1)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path, why in ((Path("/dev/zero"), "not a regular file"), (fifo, "not a regular file"),
                      (big, "larger than 16 MiB"), (tmp_path / "missing", "cannot read"), (tmp_path, "")):
        with pytest.raises(ConfigError) as exc:
            parse_payload(f"@{path}")
        assert why in str(exc.value) and "\n" not in str(exc.value), str(exc.value)


def test_saved_payload_is_private_new_and_never_through_a_symlink(tmp_path: Path) -> None:
    name = default_name("a/../b c/#", b'{"x": 1}', 0.0)
    assert name.startswith("mnist-payload-a_.._b_c-") and name.endswith(".json") and "/" not in name
    target = tmp_path / "p.bin"
    write_payload(b"\x00\x01", target)
    assert target.read_bytes() == b"\x00\x01" and stat.S_IMODE(target.stat().st_mode) == 0o600
    with pytest.raises(ConfigError, match="exists already"):
        write_payload(b"other", target)
    assert target.read_bytes() == b"\x00\x01"
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError):
        write_payload(b"x", link)
    assert not (tmp_path / "elsewhere").exists()


# ----- on a real broker ---------------------------------------------------------------------------


@pytest.fixture
def make_app() -> Iterator[Callable[[BrokerAddress], MnistApp]]:
    observers: list[Observer] = []

    def make(address: BrokerAddress) -> MnistApp:
        observer = Observer(address)
        observer.start()
        observers.append(observer)
        return MnistApp(observer, BrokerInfo(address.url, "mosquitto", "mosquitto (test)"))

    yield make
    for observer in observers:
        observer.stop()


class Publisher:
    """A real MQTT 5 client that publishes and waits for each PUBACK."""

    def __init__(self, address: BrokerAddress) -> None:
        self.client = make_client(address, protocol=MQTTProtocolVersion.MQTTv5)
        self.client.connect(address.host, address.port)
        self.client.loop_start()

    def send(self, topic: str, payload: bytes | str, *, retain: bool = False, qos: int = 1,
             props: Properties | None = None) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain, properties=props).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(mosquitto_broker: EmbeddedBroker) -> Iterator[Publisher]:
    p = Publisher(mosquitto_broker.address)
    yield p
    p.close()


async def until(pilot: Pilot[Any], predicate: Callable[[], Any], message: str | Callable[[], str]) -> Any:
    return await pilot_until(pilot, predicate, message, timeout=20)


async def start(app: MnistApp, pilot: Pilot[Any], topics: set[str], send: Callable[[], None]) -> TopicTree:
    """Wait for the console, publish with `send`, wait for the topics; focus the topic tree."""
    await until(pilot, lambda: app.snap is not None and app.snap.subscribed, "console not connected")
    send()
    tree = app.screen.query_one(TopicTree)
    await until(pilot, lambda: topics <= tree.topic_names, lambda: f"topics seen: {tree.topic_names}")
    tree.focus()
    await pilot.pause()
    return tree


async def select(pilot: Pilot[Any], tree: TopicTree, topic: str) -> None:
    tree.select_path(topic)
    await until(pilot, lambda: tree.selected_path == topic, lambda: f"cursor on {tree.selected_path}")


async def open_inspector(app: MnistApp, pilot: Pilot[Any], topic: str) -> tuple[InspectorScreen, TopicTree]:
    """`i` on the selected topic: the inspector screen, once its own tree has that topic selected."""
    await pilot.press("i")
    screen = await until(pilot, lambda: isinstance(app.screen, InspectorScreen) and app.screen, "no inspector")
    inner = screen.query_one(TopicTree)
    await until(pilot, lambda: inner.selected_path == topic, lambda: f"cursor on {inner.selected_path}")
    return screen, inner


def label_of(tree: TopicTree, path: str) -> Any:
    return tree._path_nodes[path].label


async def test_search_highlights_and_n_moves_between_matches(mosquitto_broker: EmbeddedBroker, make_app: Any,
                                                             publisher: Publisher) -> None:
    def send() -> None:
        for topic in ("lab/hum/a", "lab/temp", "zoo/hum", "zoo/lion"):
            publisher.send(topic, b"1")

    app = make_app(mosquitto_broker.address)
    async with app.run_test(size=SIZE) as pilot:
        tree = await start(app, pilot, {"lab/hum/a", "lab/temp", "zoo/hum", "zoo/lion"}, send)
        seen: list[str] = []
        notify = app.notify
        app.notify = lambda message, *a, **k: (seen.append(str(message)), notify(message, *a, **k))  # type: ignore
        await pilot.press("n")  # no search yet: n sends one image, as everywhere (here: nobody to send it)
        await until(pilot, lambda: any("no publisher online" in s for s in seen), lambda: str(seen))
        seen.clear()
        await pilot.press("slash")
        search = app.screen.query_one("#topic-search", Input)
        assert search.display and app.focused is search
        await pilot.press("H", "u")  # incremental: every key searches, any case
        await until(pilot, lambda: tree.selected_path == "lab/hum", lambda: f"cursor on {tree.selected_path}")
        assert tree.matches() == ["lab/hum", "lab/hum/a", "zoo/hum"]
        assert any(span.style and "reverse" in str(span.style) for span in label_of(tree, "zoo/hum").spans)
        assert not label_of(tree, "zoo/lion").spans or all("reverse" not in str(s.style)
                                                             for s in label_of(tree, "zoo/lion").spans)
        await pilot.press("enter")
        assert not search.display and app.focused is tree
        await pilot.press("n")
        await until(pilot, lambda: tree.selected_path == "lab/hum/a", lambda: f"cursor on {tree.selected_path}")
        await pilot.press("n")
        await until(pilot, lambda: tree.selected_path == "zoo/hum", lambda: f"cursor on {tree.selected_path}")
        await pilot.press("n")  # wraps around
        await until(pilot, lambda: tree.selected_path == "lab/hum", lambda: f"cursor on {tree.selected_path}")
        await pilot.press("N")
        await until(pilot, lambda: tree.selected_path == "zoo/hum", lambda: f"cursor on {tree.selected_path}")
        assert not any("publisher" in s for s in seen)  # with a search, n and N only move
        # escape in the search drops it and its highlights
        await pilot.press("slash", "escape")
        assert tree.query == "" and app.focused is tree
        assert all("reverse" not in str(s.style) for s in label_of(tree, "zoo/hum").spans)


async def test_expand_collapse_all_and_retained_marks(mosquitto_broker: EmbeddedBroker, make_app: Any,
                                                      publisher: Publisher) -> None:
    publisher.send("kept/state", b"on", retain=True)  # retained: the console gets it when it subscribes
    app = make_app(mosquitto_broker.address)
    async with app.run_test(size=SIZE) as pilot:
        tree = await start(app, pilot, {"kept/state", "kept/deep/er/value"},
                           lambda: publisher.send("kept/deep/er/value", b"1"))
        assert label_of(tree, "kept/state").plain.endswith(" R")
        assert not label_of(tree, "kept/deep/er/value").plain.endswith(" R")
        await pilot.press("left_square_bracket")
        await until(pilot, lambda: not tree._path_nodes["kept"].is_expanded, "not collapsed")
        assert tree.last_line == 0  # only the first level is left
        await pilot.press("right_square_bracket")
        await until(pilot, lambda: all(n.is_expanded for n in tree._path_nodes.values() if n.allow_expand),
                    "not all expanded")
        assert tree.last_line == len(tree._path_nodes) - 1


async def test_history_diff_copy_save_and_mqtt5_properties(mosquitto_broker: EmbeddedBroker, make_app: Any,
                                                           publisher: Publisher, tmp_path: Path) -> None:
    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = "application/json"
    props.ResponseTopic = "lab/replies"
    props.CorrelationData = b"req-7"
    props.MessageExpiryInterval = 300
    props.UserProperty = [("site", "[b]lab[/b]")]
    def send() -> None:
        for i, t in enumerate((20, 21, 25)):
            publisher.send("lab/sensor", json.dumps({"t": t, "n": i}), props=props if i == 2 else None)

    app = make_app(mosquitto_broker.address)
    async with app.run_test(size=SIZE) as pilot:
        tree = await start(app, pilot, {"lab/sensor"}, send)
        await select(pilot, tree, "lab/sensor")
        pane = app.screen.query_one(TopicsPane)
        table = app.screen.query_one(MessagesTable)
        await until(pilot, lambda: table.row_count == 3, lambda: f"{table.row_count} rows")
        # the newest message, with its MQTT 5 properties (markup in them shown as written)
        info = str(app.screen.query_one("#payload-info").render())
        for text in ("content type application/json", "response topic lab/replies", "correlation data req-7",
                     "message expiry 300 s", "user site [b]lab[/b]"):
            assert text in info, info
        assert pane.selected_message is not None and pane.selected_message.props is not None
        # D without a base: the message before the selected one
        await pilot.press("D")
        diff = await until(pilot, lambda: isinstance(app.screen, DiffScreen) and app.screen, "no diff screen")
        assert "~ t: 21 → 25" in diff.text and "~ n: 1 → 2" in diff.text
        await pilot.press("escape")
        # b marks the oldest; D from the newest compares those two
        table.focus()
        table.move_cursor(row=2)
        await pilot.pause()
        await pilot.press("b")
        table.move_cursor(row=0)
        await pilot.pause()
        await pilot.press("D")
        diff = await until(pilot, lambda: isinstance(app.screen, DiffScreen) and app.screen, "no diff screen")
        assert "~ t: 20 → 25" in diff.text
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, DiffScreen), "diff still open")
        # copy (OSC 52, through Textual) and save
        await pilot.press("y")
        assert json.loads(app.clipboard) == {"t": 25, "n": 2}
        pane.save_dir = tmp_path
        await pilot.press("w")
        (saved,) = await until(pilot, lambda: list(tmp_path.iterdir()), "nothing saved")
        assert json.loads(saved.read_bytes()) == {"t": 25, "n": 2}
        assert stat.S_IMODE(os.stat(saved).st_mode) == 0o600 and saved.suffix == ".json"
        await pilot.press("w")  # the same message again: the file is not overwritten
        await pilot.pause()
        assert list(tmp_path.iterdir()) == [saved]


async def test_copy_gives_text_with_control_characters_as_base64(mosquitto_broker: EmbeddedBroker, make_app: Any,
                                                                  publisher: Publisher) -> None:
    """y on a payload that is UTF-8 but holds an escape sequence (shown as binary) copied its raw bytes, ESC
    and all, as text; it is copied as base64, as binary is. Plain text with newlines stays text."""
    import base64

    hostile = b"line1\n[red]line2\x1b[31m"
    app = make_app(mosquitto_broker.address)
    async with app.run_test(size=SIZE) as pilot:
        tree = await start(app, pilot, {"dev/esc", "dev/text", "dev/crlf"},
                           lambda: (publisher.send("dev/esc", hostile), publisher.send("dev/text", b"a\nb"),
                                    publisher.send("dev/crlf", b"a\r\nb")))
        table = app.screen.query_one(MessagesTable)
        pane = app.screen.query_one(TopicsPane)
        for topic, expected in (("dev/esc", base64.b64encode(hostile).decode()), ("dev/text", "a\nb"),
                                ("dev/crlf", "a\r\nb")):
            await select(pilot, tree, topic)
            await until(pilot, lambda t=topic: [m.topic for m in pane.messages] == [t] and table.row_count == 1,
                        lambda: f"{[m.topic for m in pane.messages]} listed")
            table.focus()
            await pilot.press("y")
            assert app.clipboard == expected, topic


async def test_p_starts_in_the_topic_field_unless_the_topic_was_picked_in_the_topics_pane(
        mosquitto_broker: EmbeddedBroker, make_app: Any, publisher: Publisher) -> None:
    """`p` from any pane filled in the Topics pane's selection and put the cursor in the payload: with `mnist`
    selected there, a user who typed a topic typed it into the payload, and the workers answered it as an image.
    From another pane the cursor starts in the topic field with its text selected, so typing replaces it; from
    the Topics pane, where the topic was picked, in the payload."""
    from tui.publisher.publisher_pane import PublisherPane

    probe = MqttProbe(mosquitto_broker.address, "dev/#", qos=1)
    app = make_app(mosquitto_broker.address)
    try:
        async with app.run_test(size=SIZE) as pilot:
            tree = await start(app, pilot, {"dev/cfg"}, lambda: publisher.send("dev/cfg", b"1"))
            await select(pilot, tree, "dev/cfg")
            app.screen.query_one(PublisherPane).focus()
            await pilot.pause()
            await burst(app, "p", *"dev/new", "tab", *"hi", "enter")  # in one burst, as tmux send-keys types it
            (msg,) = await until(pilot, lambda: probe.messages("dev/new"), "nothing on the topic typed")
            assert msg.payload == b"hi" and [m.payload for m in probe.messages("dev/cfg")] == [b"1"]
            await until(pilot, lambda: not isinstance(app.screen, PublishDialog), "the dialog stayed")
            tree.focus()
            await pilot.pause()
            await burst(app, "p", *"there", "enter")
            await until(pilot, lambda: [m.payload for m in probe.messages("dev/cfg")] == [b"1", b"there"],
                        lambda: f"not on the topic picked: {probe.messages()}")
    finally:
        probe.close()


async def test_republish_prefills_the_dialog(mosquitto_broker: EmbeddedBroker, make_app: Any,
                                             publisher: Publisher) -> None:
    publisher.send("dev/cfg", b'{"on": true}', qos=2, retain=True)
    probe = MqttProbe(mosquitto_broker.address, "dev/#", qos=2)
    app = make_app(mosquitto_broker.address)
    try:
        async with app.run_test(size=SIZE) as pilot:
            tree = await start(app, pilot, {"dev/cfg", "dev/blob"},
                               lambda: publisher.send("dev/blob", b"\x89\x00\xff binary"))
            await select(pilot, tree, "dev/cfg")
            pane = app.screen.query_one(TopicsPane)
            await until(pilot, lambda: pane.selected_message is not None, "no message")
            await pilot.press("R")
            dialog = await until(pilot, lambda: isinstance(app.screen, PublishDialog) and app.screen, "no dialog")
            assert dialog.query_one("#publish-topic", Input).value == "dev/cfg"
            payload = dialog.query_one("#publish-payload", Input)
            assert payload.value == '{"on": true}'
            assert dialog.query_one("#publish-retain").value is True
            assert dialog._qos() == 2
            payload.value = '{"on": false}'  # edit, then publish
            await pilot.press("enter")
            await until(pilot, lambda: any(m.payload == b'{"on": false}' for m in probe.messages("dev/cfg")),
                        "the edited message never came")
            # a binary payload goes out unchanged while its field is left alone
            await select(pilot, tree, "dev/blob")
            await until(pilot, lambda: pane.selected_message is not None
                        and pane.selected_message.topic == "dev/blob", "no message")
            await pilot.press("R")
            dialog = await until(pilot, lambda: isinstance(app.screen, PublishDialog) and app.screen, "no dialog")
            assert "received, unchanged" in dialog.query_one("#publish-payload", Input).value
            await pilot.press("enter")
            await until(pilot, lambda: len(probe.messages("dev/blob")) >= 2, "the binary message never came")
            assert probe.messages("dev/blob")[-1].payload == b"\x89\x00\xff binary"
    finally:
        probe.close()


async def test_plot_of_a_json_number_field(mosquitto_broker: EmbeddedBroker, make_app: Any,
                                           publisher: Publisher) -> None:
    def send() -> None:
        for i in range(5):
            publisher.send("lab/env", json.dumps({"pid": 7, "temp": 20 + i, "hum": {"rel": 40 - i}, "id": "x"}))

    app = make_app(mosquitto_broker.address)
    async with app.run_test(size=SIZE) as pilot:
        tree = await start(app, pilot, {"lab/env"}, send)
        await select(pilot, tree, "lab/env")
        table = app.screen.query_one(MessagesTable)
        await until(pilot, lambda: table.row_count == 5, lambda: f"{table.row_count} rows")
        await pilot.press("g")
        plot = await until(pilot, lambda: isinstance(app.screen, PlotScreen) and app.screen, "no plot")
        # it opens on the first field that changes, not on the constant pid
        assert plot.fields == ["pid", "temp", "hum.rel"] and plot.field == "temp" and plot.points == 5
        await pilot.press("down")
        await until(pilot, lambda: plot.field == "hum.rel", "field not picked")
        publisher.send("lab/env", json.dumps({"temp": 30, "hum": {"rel": 30}}))  # the plot follows the topic
        await until(pilot, lambda: plot.points == 6, lambda: f"{plot.points} points")
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, PlotScreen), "plot still open")


def y_ticks(plot: PlotScreen) -> list[float]:
    """The numbers on the drawn plot's y axis, top to bottom."""
    drawn = plot.query_one(SafePlot).render()
    text = drawn.plain if isinstance(drawn, Text) else str(drawn)
    return [float(line.split("┤")[0]) for line in text.splitlines() if "┤" in line]


async def _plot_of_four(app: Any, pilot: Pilot[Any], topic: str, send: Callable[[], None]) -> PlotScreen:
    """The plot screen (g) of `topic` once the four messages `send` publishes are in its list."""
    tree = await start(app, pilot, {topic}, send)
    await select(pilot, tree, topic)
    table = app.screen.query_one(MessagesTable)
    await until(pilot, lambda: table.row_count == 4, lambda: f"{table.row_count} rows")
    await pilot.press("g")
    return await until(pilot, lambda: isinstance(app.screen, PlotScreen) and app.screen, "no plot")


async def test_the_plot_of_a_count_that_stays_0_has_no_negative_axis(mosquitto_broker: EmbeddedBroker,
                                                                     make_app: Any, publisher: Publisher) -> None:
    """A worker's `dropped` that is always 0: its plot had a y axis from -1 to 1, negative counts; it goes from
    0 to 1. A count that moves keeps the axis of its values."""
    topic = "mnist/status/infer/infer-calm-1"

    def send() -> None:
        for i in range(4):
            publisher.send(topic, json.dumps({"role": "infer", "state": "running", "dropped": 0, "received": 40 + i}))

    app = make_app(mosquitto_broker.address)
    async with app.run_test(size=SIZE) as pilot:
        plot = await _plot_of_four(app, pilot, topic, send)
        assert plot.fields == ["dropped", "received"] and plot.field == "received"
        await until(pilot, lambda: y_ticks(plot), "no y axis drawn")
        assert min(y_ticks(plot)) == 40 and max(y_ticks(plot)) == 43, y_ticks(plot)
        await pilot.press("up")
        await until(pilot, lambda: plot.field == "dropped", "field not picked")
        await until(pilot, lambda: y_ticks(plot) and min(y_ticks(plot)) >= 0, lambda: f"y axis {y_ticks(plot)}")
        assert min(y_ticks(plot)) == 0 and max(y_ticks(plot)) == 1, y_ticks(plot)


async def test_the_plot_of_an_idle_workers_status_opens_on_a_quantity(mosquitto_broker: EmbeddedBroker,
                                                                     make_app: Any, publisher: Publisher) -> None:
    """Statuses in which only `ts` and `uptime` change: g opened on `ts`; it opens on `received` (flat: the
    worker is idle) and the line under the plot says that only clocks change."""
    topic = "mnist/status/infer/infer-idle-1"

    def send() -> None:  # a status every half second (a role's come every second): the clocks keep pace
        for i in range(4):
            if i:
                time.sleep(0.5)
            publisher.send(topic, json.dumps({"role": "infer", "state": "running", "pid": 4242,
                                              "ts": 1_796_152_446.7 + i / 2, "uptime": 61.0 + i / 2,
                                              "received": 40, "processed": 40, "rate": 0.0}))

    app = make_app(mosquitto_broker.address)
    async with app.run_test(size=SIZE) as pilot:
        plot = await _plot_of_four(app, pilot, topic, send)
        assert plot.fields == ["pid", "ts", "uptime", "received", "processed", "rate"]
        assert plot.field == "received" and plot.points == 4, plot.field
        info = str(plot.query_one("#plot-info", Static).render())
        assert "4 values of received in the 4 messages kept · only clocks change of late (ts, uptime)" in info, info
        publisher.send(topic, json.dumps({"ts": 1_796_152_448.7, "uptime": 63.0, "received": 41}))  # it wakes up
        await until(pilot, lambda: "only clocks" not in str(plot.query_one("#plot-info", Static).render()),
                    lambda: str(plot.query_one("#plot-info", Static).render()))
        assert plot.field == "received" and plot.points == 5


async def test_a_plot_of_numbers_too_large_or_small_for_plotext(mosquitto_broker: EmbeddedBroker, make_app: Any,
                                                                 publisher: Publisher) -> None:
    """1e308 on a topic, then g: plotext overflowed to infinity and the console exited with a traceback;
    past about 1e50 it drew nothing. Such values are drawn scaled by a power of ten, which the title says."""
    def send() -> None:
        for payload in (b"1", b"1e308", b"3", b"-1.7e308"):
            publisher.send("lab/huge", payload)
        for payload in (b"1e-300", b"2e-300", b"5e-324"):
            publisher.send("lab/tiny", payload)

    app = make_app(mosquitto_broker.address)
    async with app.run_test(size=SIZE) as pilot:
        tree = await start(app, pilot, {"lab/huge", "lab/tiny"}, send)
        async def check(topic: str, points: int, title: str) -> None:
            await select(pilot, tree, topic)
            table = app.screen.query_one(MessagesTable)
            await until(pilot, lambda: table.row_count == points, lambda: f"{table.row_count} rows")
            await pilot.press("g")
            plot = await until(pilot, lambda: isinstance(app.screen, PlotScreen) and app.screen, "no plot")
            await until(pilot, lambda: plot.points == points, lambda: f"{plot.points} points")
            await pilot.pause(0.2)
            drawn = plot.query_one(PlotextPlot).render()
            text = drawn.plain if hasattr(drawn, "plain") else str(drawn)
            assert title in text, text[:400]
            assert sum("\u2801" <= ch <= "\u28ff" for ch in text) >= points, "no points drawn"
            await pilot.press("escape")
            await until(pilot, lambda: not isinstance(app.screen, PlotScreen), "plot still open")

        await check("lab/huge", 4, "value (x 1e308)")
        await check("lab/tiny", 3, "value (x 1e-300)")
        assert app.is_running


async def test_a_plot_plotext_cannot_draw_says_so_and_the_app_goes_on() -> None:
    """The guard behind the scaling: numbers plotext fails on (here 1e308 given to it as they are) show a
    line saying so instead of ending the app with a traceback."""
    from textual.app import App, ComposeResult

    class Host(App[None]):
        def compose(self) -> ComposeResult:
            yield SafePlot(id="guarded")

    app = Host()
    async with app.run_test(size=(60, 20)) as pilot:
        plot = app.query_one(SafePlot)
        plot.plt.plot([0.0, 1.0, 2.0], [1.0, 1e308, 3.0])
        plot.refresh()
        await pilot.pause(0.2)
        assert "these numbers cannot be drawn (OverflowError)" in str(plot.render())
        assert app.is_running


@pytest.mark.parametrize("size", [(120, 40), (160, 45)], ids=["120x40", "160x45"])
async def test_a_hex_dump_fits_the_payload_column(mosquitto_broker: EmbeddedBroker, make_app: Any,
                                                  publisher: Publisher, size: tuple[int, int]) -> None:
    """The inspector's payload column (about 38 columns at 120x40) wrapped each 16-byte row of a hex dump
    onto two lines, splitting its text column; rows hold as many bytes as fit (16, 8 or 4)."""
    data = bytes(range(256)) * 2
    app = make_app(mosquitto_broker.address)
    async with app.run_test(size=size) as pilot:
        tree = await start(app, pilot, {"dev/bin"}, lambda: publisher.send("dev/bin", data))
        await select(pilot, tree, "dev/bin")
        screen, inner = await open_inspector(app, pilot, "dev/bin")
        view = screen.query_one(PayloadView)
        await until(pilot, lambda: view.kind == "hex", lambda: f"payload shown as {view.kind}")
        await pilot.pause(0.2)
        width = view.scrollable_content_region.width
        rows = str(screen.query_one("#payload-body").render()).splitlines()
        per_row = hex_row_bytes(width)
        assert per_row in (4, 8, 16) and len(rows) == len(data) // per_row, (width, per_row, len(rows))
        assert all(len(row) <= width for row in rows), (width, rows[:2])
        assert rows[1].startswith(f"{per_row:06x}  ")


@pytest.mark.parametrize("width", [73, 41])
async def test_the_payload_view_lays_out_again_what_would_wrap(width: int) -> None:
    """At exactly 73 (41) columns a 16 (8) byte hex row fits until the dump's own length adds a scrollbar,
    which adds no resize: the rows wrapped in two. And a message of the same shape as the one before (as many
    lines, the same longest) skipped a new layout although another of its lines now wraps: its last row was
    cut off."""
    from textual.app import App, ComposeResult

    class Host(App[None]):
        CSS = f"PayloadView {{ width: {width}; height: 20; scrollbar-size-vertical: 1; }}"

        def compose(self) -> ComposeResult:
            yield PayloadView(id="payload-view")

    def message(seq: int, payload: bytes) -> Message:
        return Message(seq, 0.0, "t", 0, False, len(payload), payload)

    async with Host().run_test(size=(120, 40)) as pilot:
        view = pilot.app.query_one(PayloadView)
        body = view.query_one("#payload-body")
        await pilot.pause(0.1)
        view.show(message(1, b"hello"))
        await pilot.pause(0.2)
        data = bytes(range(256)) * 8
        view.show(message(2, data))
        await pilot.pause(0.3)
        rows = str(body.render()).splitlines()
        assert body.size.height == len(rows) == len(data) // hex_row_bytes(view.scrollable_content_region.width)
        view.show(message(3, b"A" * 60 + b"\nshort"))
        await pilot.pause(0.2)
        view.show(message(4, b"A" * 60 + b"\n" + b"b" * 60))
        await pilot.pause(0.2)
        assert body.size.height == 2 * -(-60 // body.size.width), "the second long line was cut off"


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
async def test_full_screen_inspector_side_by_side(mosquitto_broker: EmbeddedBroker, make_app: Any,
                                                  publisher: Publisher, size: tuple[int, int]) -> None:
    def send() -> None:
        publisher.send("lab/a", b"first")
        publisher.send("lab/b", b"hello")

    app = make_app(mosquitto_broker.address)
    async with app.run_test(size=size) as pilot:
        tree = await start(app, pilot, {"lab/a", "lab/b"}, send)
        await select(pilot, tree, "lab/b")
        screen, inner = await open_inspector(app, pilot, "lab/b")
        view = screen.query_one(PayloadView)
        await until(pilot, lambda: view.kind == "text", lambda: f"payload shown as {view.kind}")
        table = screen.query_one(MessagesTable)
        await pilot.pause()
        regions = [inner.region, table.region, view.region]
        assert regions[0].right <= regions[1].x and regions[1].right <= regions[2].x, regions
        assert all(r.height >= size[1] - 6 for r in regions), regions  # full height, side by side
        # the inspector's own selection drives what it shows
        inner.select_path("lab/a")
        await until(pilot, lambda: "first" in str(screen.query_one("#payload-body").render()), "lab/a not shown")
        await pilot.press("i")
        await until(pilot, lambda: not isinstance(app.screen, InspectorScreen), "inspector still open")


async def test_message_columns_fit_the_topic_shown(mosquitto_broker: EmbeddedBroker, make_app: Any,
                                                  publisher: Publisher) -> None:
    """The message list's columns are as wide as the messages of the selected topic need, not as wide as the
    widest of any topic browsed before."""
    def send() -> None:
        publisher.send("lab/big", b"x" * 300_000)
        publisher.send("lab/small", b"1")

    app = make_app(mosquitto_broker.address)
    async with app.run_test(size=SIZE) as pilot:
        tree = await start(app, pilot, {"lab/big", "lab/small"}, send)
        table = app.screen.query_one(MessagesTable)
        pane = app.screen.query_one(TopicsPane)

        async def widths_for(topic: str) -> list[int]:
            await select(pilot, tree, topic)
            await until(pilot, lambda: [m.topic for m in pane.messages] == [topic], lambda: str(pane.messages))
            await pilot.pause()
            return [c.get_render_width(table) for c in table.columns.values()]

        small = await widths_for("lab/small")
        big = await widths_for("lab/big")
        assert big[3] > small[3], (big, small)  # "293.0 KiB" against "1 B"
        assert await widths_for("lab/small") == small


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
async def test_the_inspector_message_list_fits_its_columns(mosquitto_broker: EmbeddedBroker, make_app: Any,
                                                          publisher: Publisher, size: tuple[int, int]) -> None:
    """At 80x24 the inspector's list (23 cells) was cut to `time qos R s`: there it takes compact columns
    (time to the second, q, R, a short size; the payload is beside it) that all fit; at 120x40 the full ones."""
    def send() -> None:
        publisher.send("lab/big", b"x" * 300_000)
        publisher.send("lab/big", b"y" * 2_000)

    app = make_app(mosquitto_broker.address)
    async with app.run_test(size=size) as pilot:
        tree = await start(app, pilot, {"lab/big"}, send)
        await select(pilot, tree, "lab/big")
        await pilot.press("i")
        screen = await until(pilot, lambda: isinstance(app.screen, InspectorScreen) and app.screen, "no inspector")
        table = screen.query_one(MessagesTable)
        await until(pilot, lambda: table.row_count == 2, lambda: f"{table.row_count} rows")
        await pilot.pause()
        labels = [str(c.label) for c in table.columns.values()]
        widths = [c.get_render_width(table) for c in table.columns.values()]
        if size == (80, 24):
            assert labels == ["time", "q", "R", "size"], labels
            assert sum(widths) <= table.scrollable_content_region.width, (widths, table.scrollable_content_region)
            oldest = [str(c) for c in table.get_row_at(1)]
            assert len(oldest[0]) == 8 and oldest[3] == "293K", oldest  # 14:03:07
        else:
            assert labels == ["time", "qos", "R", "size", "payload"], labels
            oldest = [str(c) for c in table.get_row_at(1)]
            assert len(oldest[0]) == 12 and oldest[3] == "293.0 KiB", oldest  # 14:03:07.123
            await pilot.resize_terminal(80, 24)  # narrowed: the list takes the compact columns, and back
            await until(pilot, lambda: [str(c.label) for c in table.columns.values()] == ["time", "q", "R", "size"],
                        lambda: f"columns at 80x24: {[str(c.label) for c in table.columns.values()]}")
            await pilot.resize_terminal(*size)
            await until(pilot, lambda: [str(c.label) for c in table.columns.values()] == labels,
                        lambda: f"columns at 120x40 again: {[str(c.label) for c in table.columns.values()]}")


def test_render_payload_shows_properties_escaped() -> None:
    m = Message(1, 0.0, "t", 0, False, 2, b"hi", MessageProps(content_type="text/[red]x"))
    assert "content type[/] text/\\[red]x" in render_payload(m).info


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_a_long_level_name_gives_way_to_its_counts(mosquitto_broker: EmbeddedBroker, make_app: Any,
                                                         publisher: Publisher, size: tuple[int, int]) -> None:
    """The tree shortens a long topic level with an ellipsis; its count is never cut off (in a narrow pane
    the rate gives way once the name is down to 6 cells)."""
    long_level = "output-vm-32413-" + "x" * 80
    topic = f"mnist/status/output/{long_level}"

    def send() -> None:
        for _ in range(3):
            publisher.send(topic, b"1")

    app = make_app(mosquitto_broker.address)
    async with app.run_test(size=size) as pilot:
        tree = await start(app, pilot, {topic}, send)
        room = tree.scrollable_content_region.width
        await until(pilot, lambda: "  3" in str(label_of(tree, topic)), lambda: str(label_of(tree, topic)))
        text = str(label_of(tree, topic))
        assert "…" in text and long_level not in text, text
        assert len(text) + 3 * tree.guide_depth == room, (len(text), room, text)  # a guide for each level above


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_a_workers_status_topic_shows_whole_where_the_pane_has_room(size: tuple[int, int]) -> None:
    """`mnist/status/infer/infer-<host>-<pid>`: at 120 columns the name was cut (`infer…m-8029`) in a tree
    that kept 4 cells more than its guides take, a fifth of the Topics pane; there it is whole, and at 80
    columns cut in the middle to fit, its count whole."""
    from test_snapshots import BROKER, make_observer

    obs = make_observer()
    worker = "mnist/status/infer/infer-raspberrypi-123456"
    for _ in range(1234):
        obs.ingest(worker, b'{"state": "running"}')
    app = MnistApp(obs, BROKER)
    async with app.run_test(size=size) as pilot:
        tree = app.screen.query_one(TopicTree)
        if size == (120, 40):
            await until(pilot, lambda: str(label_of(tree, worker)) == "infer-raspberrypi-123456  1,234",
                        lambda: str(label_of(tree, worker)))
        else:
            def cut_to_fit() -> bool:
                text = str(label_of(tree, worker))
                return (text.startswith("in") and text.endswith("456  1,234") and "…" in text
                        and len(text) + 3 * tree.guide_depth == tree.scrollable_content_region.width)

            await until(pilot, cut_to_fit, lambda: f"{label_of(tree, worker)} in {tree.scrollable_content_region}")


async def _tree_labels(names: dict[str, str]) -> dict[str, str]:
    """The labels a topic tree 40 cells wide gives each of `names` (each seen once, 1,234 messages, 1.0/s)."""
    from textual.app import App, ComposeResult

    from engine.console.snapshot import TopicInfo

    class TreeApp(App[None]):
        CSS = "TopicTree { width: 40; }"

        def compose(self) -> ComposeResult:
            yield TopicTree(id="tree")

    topics = tuple(TopicInfo(name, 1234, 1.0, 20, 0.0, False) for name in sorted(names.values()))
    app = TreeApp()
    async with app.run_test(size=(60, 20)) as pilot:
        tree = app.query_one(TopicTree)
        tree.sync(topics, 1)
        await pilot.pause()
        tree.sync(topics, 1)
        assert tree.scrollable_content_region.width == 40
        return {key: str(label_of(tree, name)) for key, name in names.items()}


async def test_the_rate_gives_way_before_the_name_is_cut() -> None:
    """A tree of 40 cells: a name that fits whole only without its rate is shown without the rate; one that
    fits with it keeps it; one cut either way keeps its rate and is cut in the middle."""
    labels = await _tree_labels({"whole": "a/b/c/infer-raspberrypi-1234567", "short": "a/b/c/infer-vm-8029",
                                 "long": "a/b/c/" + "x" * 60})
    # 6 cells of guides, then the name and its figures ("  1,234 1.0/s": 13 cells)
    assert labels["short"] == "infer-vm-8029  1,234 1.0/s", labels
    assert labels["whole"] == "infer-raspberrypi-1234567  1,234", labels  # 25 + 13 > 34: the rate went
    assert labels["long"] == "x" * 10 + "…" + "x" * 10 + "  1,234 1.0/s", labels


async def test_a_level_name_of_wide_characters_is_cut_in_the_middle_by_cells() -> None:
    """CJK names were cut at the end (`温度传感器第一号楼层…`), so that names differing at the end looked the same;
    they are cut in the middle as ASCII ones are, by cells (a wide character takes two), none in half."""
    room = 40 - 6 - len("  1,234 1.0/s")  # 21 cells for a name three levels down
    labels = await _tree_labels({"first": "a/b/c/温度传感器第一号楼层三房间甲",
                                 "second": "a/b/c/温度传感器第一号楼层三房间乙",
                                 "odd": "a/b/c/x温度传感器第一号楼层三房间丙"})
    assert labels["first"] == "温度传感器…层三房间甲  1,234 1.0/s", labels
    assert labels["second"] == "温度传感器…层三房间乙  1,234 1.0/s", labels
    # 10 cells either side would cut 器 in half: 9 before the ellipsis, 10 after, a cell spare
    assert labels["odd"] == "x温度传感…层三房间丙  1,234 1.0/s", labels
    assert all(cell_len(label.split("  ")[0]) <= room for label in labels.values()), labels


async def test_space_in_the_topic_search_is_a_space(mosquitto_broker: EmbeddedBroker, make_app: Any,
                                                     publisher: Publisher) -> None:
    """With the search box focused, space types a space; it does not start or stop publishing."""
    app = make_app(mosquitto_broker.address)
    async with app.run_test(size=SIZE) as pilot:
        tree = await start(app, pilot, {"lab/a b"}, lambda: publisher.send("lab/a b", b"1"))
        sent: list[str] = []
        toggle = app.action_toggle_publishing
        app.action_toggle_publishing = lambda: (sent.append("toggle"), toggle())  # type: ignore[method-assign]
        await pilot.press("slash")
        search = app.screen.query_one("#topic-search", Input)
        await until(pilot, lambda: app.focused is search, "search box not focused")
        await pilot.press("a", "space", "b")
        await until(pilot, lambda: search.value == "a b", lambda: f"search holds {search.value!r}")
        await until(pilot, lambda: tree.selected_path == "lab/a b", lambda: f"cursor on {tree.selected_path}")
        assert sent == [], sent
        await pilot.press("escape", "space")  # back in the tree, space steers again
        await until(pilot, lambda: sent, "space did not reach the publisher toggle")


async def test_slash_in_the_topic_search_is_a_slash(mosquitto_broker: EmbeddedBroker, make_app: Any,
                                                     publisher: Publisher) -> None:
    """Topics are paths: `/` typed in the search box is text (`lab/a`), not a new start of the search that
    swallowed it (`laba` matched nothing). In the filter dialog it is text as well (`lab/#`)."""
    from tui.topics.filter_dialog import FilterDialog

    app = make_app(mosquitto_broker.address)
    async with app.run_test(size=SIZE) as pilot:
        tree = await start(app, pilot, {"lab/a", "zoo/lab"}, lambda: (publisher.send("lab/a", b"1"),
                                                                       publisher.send("zoo/lab", b"1")))
        await pilot.press("slash")
        search = app.screen.query_one("#topic-search", Input)
        await until(pilot, lambda: app.focused is search, "search box not focused")
        await pilot.press("l", "a", "b", "slash", "a")
        await until(pilot, lambda: search.value == "lab/a", lambda: f"search holds {search.value!r}")
        await until(pilot, lambda: tree.matches() == ["lab/a"], lambda: f"matches: {tree.matches()}")
        await pilot.press("escape", "f")
        await until(pilot, lambda: isinstance(app.screen, FilterDialog) and app.screen.query(Input), "no filter dialog")
        field = app.screen.query_one(Input)
        field.value = ""
        await pilot.press("l", "a", "b", "slash", "number_sign")
        await until(pilot, lambda: field.value == "lab/#", lambda: f"filter field holds {field.value!r}")


async def test_a_refresh_as_a_screen_is_pushed_waits_for_its_panes(mosquitto_broker: EmbeddedBroker, make_app: Any,
                                                                    publisher: Publisher) -> None:
    """A refresh that comes between the push of the inspector (or a plot) and its compose: it has no panes yet,
    and asking it for its topic raised NoMatches, shown as "A pane could not be refreshed" (`i` at an unlucky
    moment). The screen now gets its first snapshot once it is mounted."""
    app = make_app(mosquitto_broker.address)
    async with app.run_test(size=SIZE) as pilot:
        tree = await start(app, pilot, {"lab/n"}, lambda: publisher.send("lab/n", b"1"))
        await select(pilot, tree, "lab/n")
        for screen in (InspectorScreen("lab/n"), PlotScreen("lab/n", ())):
            app.push_screen(screen)
            app.refresh_from_observer(full=True)  # before the screen is composed
            assert app.refresh_failures == 0, type(screen).__name__
            await until(pilot, lambda screen=screen: screen.is_mounted, "screen not mounted")
            app.refresh_from_observer(full=True)
            assert app.refresh_failures == 0, type(screen).__name__
            app.pop_screen()
            await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_keys_typed_in_a_burst_after_slash_go_into_the_search(
        mosquitto_broker: EmbeddedBroker, make_app: Any, publisher: Publisher, size: tuple[int, int]) -> None:
    """`/ q x space` typed at once: all of it is text in the search box; nothing quits, unretains or steers."""
    app = make_app(mosquitto_broker.address)
    async with app.run_test(size=size) as pilot:
        await start(app, pilot, {"lab/q"}, lambda: publisher.send("lab/q", b"1", retain=True))
        done: list[str] = []
        for name in ("toggle_publishing", "clear_retained", "quit"):
            setattr(app, f"action_{name}", lambda name=name: done.append(name))
        await burst(app, "slash", "q", "x", "space", "b")
        search = app.screen.query_one("#topic-search", Input)
        await until(pilot, lambda: search.value == "qx b", lambda: f"search holds {search.value!r}, ran {done}")
        assert app.focused is search
        assert done == [], done
        assert app.is_running


@pytest.mark.parametrize("zoomed", [False, True], ids=["four-panes", "publisher-zoomed"])
async def test_slash_searches_the_topics_from_any_pane(mosquitto_broker: EmbeddedBroker, make_app: Any,
                                                       publisher: Publisher, zoomed: bool) -> None:
    """`/` with the Publisher pane focused (the start), or zoomed: the Topics pane's search box opens and
    takes what is typed next; `r` in it is a letter, not the rate dialog."""
    from tui.publisher.publisher_pane import PublisherPane

    app = make_app(mosquitto_broker.address)
    async with app.run_test(size=(80, 24)) as pilot:
        await start(app, pilot, {"lab/rq"}, lambda: publisher.send("lab/rq", b"1"))
        app.screen.query_one(PublisherPane).focus()
        await pilot.pause()
        if zoomed:
            await pilot.press("z")
            await until(pilot, lambda: app.main is not None and app.main.zoomed == "publisher", "not zoomed")
        done: list[str] = []
        app.action_rate = lambda: done.append("rate")  # type: ignore[method-assign]
        await burst(app, "slash", "r", "q")
        search = app.screen.query_one("#topic-search", Input)
        await until(pilot, lambda: search.value == "rq", lambda: f"search holds {search.value!r}, ran {done}")
        assert app.focused is search and done == [], done
        assert app.main is not None and app.main.zoomed in (None, "topics")
        tree = app.screen.query_one(TopicTree)
        await until(pilot, lambda: "lab/rq" in tree.matches(), lambda: f"matches: {tree.matches()}")


async def test_keys_typed_in_a_burst_after_R_or_i_go_to_the_screen_it_opens(
        mosquitto_broker: EmbeddedBroker, make_app: Any, publisher: Publisher) -> None:
    """`R` and `i` in a burst with what follows them: the re-publish dialog's payload field takes the keys, and
    `/` in the inspector searches the inspector's own tree (the keys went to the main screen's panes while the
    screen opened, and `/` opened the main screen's search box behind the inspector)."""
    app = make_app(mosquitto_broker.address)
    async with app.run_test(size=SIZE) as pilot:
        tree = await start(app, pilot, {"dev/cfg"}, lambda: publisher.send("dev/cfg", b"on", retain=True))
        await select(pilot, tree, "dev/cfg")
        pane = app.screen.query_one(TopicsPane)
        await until(pilot, lambda: pane.selected_message is not None, "no message")
        await burst(app, "R", "o", "f", "f")
        dialog = await until(pilot, lambda: isinstance(app.screen, PublishDialog) and app.screen, "no dialog")
        payload = dialog.query_one("#publish-payload", Input)
        await until(pilot, lambda: payload.value == "off", lambda: f"the payload field holds {payload.value!r}")
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.main, "escape did not close the dialog")
        await burst(app, "i", "slash", "c", "f", "g")
        screen = await until(pilot, lambda: isinstance(app.screen, InspectorScreen) and app.screen, "no inspector")
        search = screen.query_one("#topic-search", Input)
        await until(pilot, lambda: search.value == "cfg", lambda: f"the inspector's search holds {search.value!r}")
        assert app.focused is search
        assert pane.query_one("#topic-search", Input).value == ""


async def test_a_key_typed_before_p_in_one_burst_acts_on_the_main_screen(
        mosquitto_broker: EmbeddedBroker, make_app: Any, publisher: Publisher) -> None:
    """`x p` at once: x clears the selected topic's retained message, then p opens the publish dialog. x was
    lost: p ran as the app took it, while x was still on its way up from the tree, and x then reached the app
    with the dialog on top."""
    probe = MqttProbe(mosquitto_broker.address, "dev/lamp")
    app = make_app(mosquitto_broker.address)
    try:
        async with app.run_test(size=SIZE) as pilot:
            tree = await start(app, pilot, {"dev/lamp"}, lambda: publisher.send("dev/lamp", b"on", retain=True))
            await select(pilot, tree, "dev/lamp")
            await burst(app, "x", "p")
            await until(pilot, lambda: isinstance(app.screen, PublishDialog), "p opened no dialog")
            await until(pilot, lambda: [m for m in probe.messages("dev/lamp") if not m.payload],
                        lambda: f"x cleared nothing: the probe got {probe.messages('dev/lamp')}")
            await pilot.press("escape")
            await until(pilot, lambda: app.screen is app.main, "escape did not close the dialog")
    finally:
        probe.close()


async def test_a_focus_key_in_a_burst_moves_the_keys_behind_it(mosquitto_broker: EmbeddedBroker, make_app: Any,
                                                              publisher: Publisher) -> None:
    """In the publish dialog (it opens on the payload when a topic is selected), `shift+tab` typed in one burst
    with the text: the text before it goes into the payload, the text after it into the topic field. All of it
    went into the payload: Textual routes each key to the field focused as the app takes it, and shift+tab
    moved the focus only once it had come back up to the app."""
    app = make_app(mosquitto_broker.address)
    async with app.run_test(size=SIZE) as pilot:
        tree = await start(app, pilot, {"dev/fan"}, lambda: publisher.send("dev/fan", b"on"))
        await select(pilot, tree, "dev/fan")
        await burst(app, "p", *"hi", "shift+tab", "ctrl+u", *"a/b")
        dialog = await until(pilot, lambda: isinstance(app.screen, PublishDialog) and app.screen, "no dialog")
        topic, payload = dialog.query_one("#publish-topic", Input), dialog.query_one("#publish-payload", Input)
        await until(pilot, lambda: (topic.value, payload.value) == ("a/b", "hi"),
                    lambda: f"topic {topic.value!r}, payload {payload.value!r}")
        assert app.focused is topic
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.main, "escape did not close the dialog")


async def test_with_thousands_of_topics_a_refresh_labels_only_the_lines_in_view() -> None:
    """4,000 topics: a refresh gives new labels to the lines on screen only (a label for each of 10,000 nodes
    took seconds a refresh, keys waiting behind it); lines scrolled into view or opened show their figures."""
    from test_snapshots import BROKER, make_observer
    from textual.widgets.tree import TreeNode

    obs = make_observer()
    for i in range(4000):
        obs.ingest(f"sensors/site{i % 40:02d}/room{i // 40:03d}", b"21.5")
    app = MnistApp(obs, BROKER)
    async with app.run_test(size=(120, 40)) as pilot:
        tree = app.screen.query_one(TopicTree)
        await until(pilot, lambda: len(tree.topic_names) > 4000, "the topics never reached the tree")
        tree.expand_everything()
        await pilot.pause()
        labelled: list[Any] = []
        set_label = TreeNode.set_label

        def counted(node: TreeNode[str], label: Any) -> None:
            labelled.append(node.data)
            set_label(node, label)

        TreeNode.set_label = counted  # type: ignore[method-assign]
        try:
            obs.ingest("sensors/site00/room000", b"22")  # a count changes: the full refresh labels again
            tree._labels.clear()
            app.refresh_from_observer(full=True)
            await pilot.pause()
        finally:
            TreeNode.set_label = set_label  # type: ignore[method-assign]
        assert 0 < len(labelled) <= tree.size.height, f"{len(labelled)} labels made for {tree.size.height} lines"
        tree.focus()
        await pilot.press("end")  # the last lines: labelled as they come into view, with their counts
        last = "sensors/site39/room099"
        await until(pilot, lambda: label_of(tree, last).plain.endswith("  1"), lambda: label_of(tree, last).plain)
        await pilot.press("home")
        tree._path_nodes["sensors"].collapse()  # folded, it says what is below it
        await until(pilot, lambda: "4,001 topics" in label_of(tree, "sensors").plain,  # and lab/temperature
                    lambda: label_of(tree, "sensors").plain)


async def test_a_line_an_animated_scroll_brings_into_view_gets_its_figures() -> None:
    """A tree on its own (no console refreshing it): the lines an animated scroll up brings into view are
    labelled once it settles. The scroll passes through fractions (4.6, 4.4): the view moves on the rounded
    offset, and a relabel keyed on the whole part left the top line with its name alone."""
    from textual.app import App, ComposeResult

    from engine.console.snapshot import TopicInfo

    topics = tuple(TopicInfo(f"lab/room{i:03d}", 1, 0.0, 2, 0.0, False) for i in range(300))

    class TreeApp(App[None]):
        def compose(self) -> ComposeResult:
            yield TopicTree(id="tree")

    app = TreeApp()
    async with app.run_test(size=(60, 20)) as pilot:
        tree = app.query_one(TopicTree)
        tree.sync(topics, 1)
        tree.select_path("lab/room250")
        await until(pilot, lambda: tree.scroll_offset.y > 200, lambda: f"scrolled to {tree.scroll_y}")
        for step in range(6):
            tree.scroll_to(y=tree.scroll_y - 7, animate=True, duration=0.2)
            await until(pilot, lambda: not app.animator.is_being_animated(tree, "scroll_y"), "still scrolling")
            def top_label() -> str:
                node = tree.get_node_at_line(tree.scroll_offset.y)
                return node.label.plain if node is not None else ""

            await until(pilot, lambda: top_label().endswith("  1"),
                        lambda: f"line {tree.scroll_offset.y} after {step + 1} scrolls: {top_label()!r}")  # noqa: B023


async def test_i_opens_the_inspector_from_any_pane(mosquitto_broker: EmbeddedBroker, make_app: Any) -> None:
    """`i` did nothing, and said nothing, unless the Topics pane had the focus."""
    app = make_app(mosquitto_broker.address)

    def pane() -> str | None:
        return next((w.id for w in (app.focused.ancestors_with_self if app.focused else ())
                     if w.id in ("publisher", "workers", "results", "topics")), None)

    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snap is not None and pane() is not None, "no snapshot")
        seen = []
        for _ in range(4):
            before = pane()
            seen.append(before)
            await pilot.press("i")
            await until(pilot, lambda: isinstance(app.screen, InspectorScreen), f"no inspector from {before}")
            await pilot.press("i")  # and back, to the same pane
            await until(pilot, lambda: not isinstance(app.screen, InspectorScreen), "the inspector stays")
            assert pane() == before
            await pilot.press("tab")
            await until(pilot, lambda before=before: pane() != before, "tab did not move")
        assert set(seen) == {"publisher", "workers", "results", "topics"}, seen


async def test_slash_in_the_inspector_searches_its_own_tree(mosquitto_broker: EmbeddedBroker, make_app: Any) -> None:
    """`/` in the inspector opened the hidden main screen's search box: the letters after it acted as keys
    (`s` paused the inspector, `i` closed it), and the main screen kept a search box open."""
    app = make_app(mosquitto_broker.address)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snap is not None, "no snapshot")
        await pilot.press("i")
        screen = await until(pilot, lambda: isinstance(app.screen, InspectorScreen) and app.screen, "no inspector")
        await pilot.press("slash", "s", "i")
        search = screen.query_one("#topic-search", Input)
        await until(pilot, lambda: search.value == "si", lambda: f"search {search.value!r}")
        assert app.screen is screen and app.focused is search and not app.snap.paused
        await pilot.press("escape", "escape")
        await until(pilot, lambda: not isinstance(app.screen, InspectorScreen), "the inspector stays")
        assert not app.screen.query_one("#topic-search", Input).display  # the main screen's box stayed shut
