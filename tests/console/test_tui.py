"""The console (tui/) driven with Textual's Pilot against a real broker and real roles.

The roles run in this process (LocalPipeline) or, for attach mode, in another process; the console sees
them only through the broker either way. Waits poll with a deadline; nothing asserts on timing.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from helpers import SMALL_PACKET, MqttProbe, record_notifications, wait_for
from helpers import pilot_until as until
from rich.cells import cell_len
from textual.pilot import Pilot
from textual.widgets import Input

from engine.console.observer import Observer
from engine.console.observer_process import ObserverProcess
from engine.errors import ConfigError
from engine.mqtt.broker import EmbeddedBroker
from engine.roles.pipeline import LocalPipeline
from engine.settings import Settings
from tui.app import MnistApp, next_rate
from tui.chrome.header_bar import BrokerInfo, retry_text
from tui.publisher.publisher_pane import PublisherPane
from tui.results.results_log import ResultsLog
from tui.topics.filter_dialog import FilterDialog
from tui.topics.payload_view import PayloadView
from tui.topics.publish_dialog import PublishDialog
from tui.topics.topic_tree import TopicTree
from tui.widgets.digit_view import DigitView
from tui.workers.workers_pane import WorkersPane

SIZE = (120, 40)




@pytest.fixture
def pipeline(mosquitto_broker: EmbeddedBroker) -> Iterator[LocalPipeline]:
    """All three roles in this process on mosquitto, the publisher stopped (as the console starts it)."""
    with LocalPipeline(Settings(rate=20), address=mosquitto_broker.address) as p:
        yield p


@pytest.fixture
def make_app() -> Iterator[Callable[..., MnistApp]]:
    observers: list[Any] = []

    def make(address: Any, observer_class: type = Observer, kind: str = "mosquitto", **kwargs: Any) -> MnistApp:
        observer = observer_class(address, **kwargs)
        observer.start()
        observers.append(observer)
        return MnistApp(observer, BrokerInfo(address.url, kind, f"{kind} (test)"))

    yield make
    for observer in observers:
        observer.stop()


def publisher_state(app: MnistApp) -> dict[str, Any] | None:
    if app.snap is None:
        return None
    inputs = app.snap.roles_of("input")
    return dict(inputs[0].data) if inputs else None


def seen_state(app: MnistApp, client_id: str | None) -> str | None:
    """The state the console last heard from the role `client_id` (space steers by what the console sees)."""
    return next((r.state for r in app.snap.roles if r.id == client_id), None) if app.snap is not None else None


async def run(app: MnistApp, body: Callable[[Pilot[Any]], Awaitable[None]], size: tuple[int, int] = SIZE,
              notifications: bool = False) -> None:
    """`notifications`: toasts are drawn (as in a terminal), so that a test can see what they cover."""
    async with app.run_test(size=size, notifications=notifications) as pilot:
        await until(pilot, lambda: app.snap is not None and app.snap.subscribed, "console not connected")
        await body(pilot)


# ---- pure helpers ------------------------------------------------------------------------------------


def test_rate_steps() -> None:
    assert next_rate(10, +1) == 30 and next_rate(10, -1) == 3
    assert next_rate(7, +1) == 10 and next_rate(7, -1) == 3
    assert next_rate(10_000, +1) == 0  # then as fast as it goes
    assert next_rate(0, +1) == 0 and next_rate(0, -1) == 10_000
    assert next_rate(1, -1) == 1


def test_retry_text_rounds_up_then_says_trying() -> None:
    assert retry_text(None, 100.0) == ""
    assert retry_text(108.0, 100.0) == ", next try in 8 s"
    assert retry_text(108.0, 107.6) == ", next try in 1 s"  # 0.4 s left: not "0 s"
    assert retry_text(108.0, 108.0) == retry_text(108.0, 111.0) == ", trying now"  # an attempt can take seconds


# ---- the console on a real pipeline -------------------------------------------------------------------


async def test_space_starts_publishing_and_results_appear(pipeline: LocalPipeline, make_app) -> None:
    app = make_app(pipeline.address)

    async def body(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: publisher_state(app), "publisher status never seen")
        assert publisher_state(app)["state"] == "stopped"
        await pilot.press("space")
        log = app.screen.query_one(ResultsLog)
        await until(pilot, lambda: len(log.rows) >= 3, lambda: f"{len(log.rows)} result rows")
        assert publisher_state(app)["state"] == "running"
        row = log.rows[-1]
        assert row.pred is not None and row.label is not None and row.worker
        assert app.snap.stats.received >= 3
        # the Workers pane has the in-process worker, known only from its status messages
        table = app.screen.query_one(WorkersPane).table
        assert table.row_count == 1
        await pilot.press("space")
        await until(pilot, lambda: publisher_state(app)["state"] == "stopped", "space did not stop it")
        await pilot.press("c")
        await until(pilot, lambda: app.snap.stats.received == 0 or len(log.rows) < 3, "c did not clear")

    await run(app, body)


@pytest.mark.refresh_may_fail
@pytest.mark.parametrize("error", ["RuntimeError", "NoMatches"])
async def test_a_refresh_that_raises_is_a_notification_and_the_console_goes_on(pipeline: LocalPipeline, make_app,
                                                                                monkeypatch, error: str) -> None:
    """A bug in one pane's refresh does not end the console (and the pipeline it runs) with a traceback: it
    says so once (its words change at every refresh here), the other panes and the keys go on, and the pane
    recovers once the cause is gone. A query that finds nothing (NoMatches) is no exception to that."""
    app = make_app(pipeline.address)
    seen = record_notifications(app)
    update = WorkersPane.update_snapshot
    calls = [0]

    def broken(self: WorkersPane, snap: Any) -> None:
        calls[0] += 1
        if error == "NoMatches":
            self.query_one("#no-such-widget")
        raise RuntimeError(f"[bold]no such colour[/] \x1b[31m {calls[0]}")

    async def body(pilot: Pilot[Any]) -> None:
        monkeypatch.setattr(WorkersPane, "update_snapshot", broken)
        await until(pilot, lambda: app.refresh_failures >= 3, lambda: f"{app.refresh_failures} failed refreshes")
        told = [text for text in seen if "could not be refreshed" in text or error in text]
        assert len(told) == 1, seen  # once, however often it fails
        if error == "RuntimeError":
            assert "RuntimeError: [bold]no such colour[/]" in told[0] and "\x1b" not in told[0]
        else:
            assert "NoMatches" in told[0] and "#no-such-widget" in told[0]
        await pilot.press("space")  # the keys still steer the pipeline...
        await until(pilot, lambda: (publisher_state(app) or {}).get("state") == "running", "space did nothing")
        log = app.screen.query_one(ResultsLog)  # ...and the panes refreshed after the broken one still show it
        await until(pilot, lambda: len(log.rows) >= 3, lambda: f"{len(log.rows)} result rows")
        monkeypatch.setattr(WorkersPane, "update_snapshot", update)
        table = app.screen.query_one(WorkersPane).table
        await until(pilot, lambda: table.row_count == 1, "the Workers pane did not recover")
        await pilot.press("space")

    await run(app, body)


async def test_a_stray_running_status_does_not_keep_space_from_starting_the_publisher(
        pipeline: LocalPipeline, make_app, probe_factory, monkeypatch) -> None:
    """Any client may publish a status: one retained `{"state": "running"}` from a publisher that does not exist
    made space send stop for ever, and the pane showed the stray one. Once silent it counts for neither."""
    monkeypatch.setattr("engine.console.snapshot.STALE_AFTER", 1.0)
    ghost = probe_factory(pipeline.address)
    ghost.publish("mnist/status/input/ghost", b'{"state": "running"}', qos=1, retain=True)
    app = make_app(pipeline.address)
    real = pipeline.role("input")
    assert real is not None

    async def body(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: len(app.snap.roles_of("input")) == 2, "the stray status was not seen")
        await until(pilot, lambda: any(r.silent(app.snap.time) for r in app.snap.roles_of("input")),
                    "the stray publisher never fell silent")
        await pilot.press("space")
        await until(pilot, lambda: real.state == "running", "space did not start the real publisher")
        await until(pilot, lambda: seen_state(app, real.client_id) == "running", "the console did not see it run")
        pane = app.screen.query_one(PublisherPane)
        await until(pilot, lambda: real.client_id in str(pane.border_subtitle), lambda: str(pane.border_subtitle))
        await pilot.press("space")
        await until(pilot, lambda: real.state == "stopped", "space did not stop it")

    try:
        await run(app, body)
    finally:
        ghost.publish("mnist/status/input/ghost", b"", qos=1, retain=True)


async def test_space_still_steers_a_publisher_that_has_fallen_silent(pipeline: LocalPipeline, make_app,
                                                                      monkeypatch) -> None:
    """Under a flood, or with the console behind on its messages, the only publisher may look silent: that is
    when a stop matters most, so space still sends it (only a silent one beside a heard one is passed over)."""
    monkeypatch.setattr("engine.console.snapshot.STALE_AFTER", -1.0)  # every status is already too old
    app = make_app(pipeline.address)
    real = pipeline.role("input")
    assert real is not None

    async def body(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: app.snap.roles_of("input"), "no publisher seen")
        assert all(r.silent(app.snap.time) for r in app.snap.roles_of("input"))
        await pilot.press("space")
        await until(pilot, lambda: real.state == "running", "space did not start the silent-looking publisher")
        await until(pilot, lambda: seen_state(app, real.client_id) == "running", "the console did not see it run")
        await pilot.press("space")
        await until(pilot, lambda: real.state == "stopped", "space did not stop it")

    await run(app, body)


async def test_plus_and_minus_change_the_rate(pipeline: LocalPipeline, make_app) -> None:
    app = make_app(pipeline.address)

    async def body(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: publisher_state(app), "publisher status never seen")
        assert publisher_state(app)["rate"] == 20
        await pilot.press("plus")
        await until(pilot, lambda: publisher_state(app)["rate"] == 30, lambda: f"rate {publisher_state(app)}")
        await pilot.press("minus", "minus")
        await until(pilot, lambda: publisher_state(app)["rate"] == 3, lambda: f"rate {publisher_state(app)}")
        await pilot.press("n")  # one image, without starting
        await until(pilot, lambda: publisher_state(app)["sent"] == 1, "n did not send one image")

    await run(app, body)


async def test_topics_pane_lists_result_and_draws_png(pipeline: LocalPipeline, make_app) -> None:
    app = make_app(pipeline.address)

    async def body(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: publisher_state(app), "publisher status never seen")
        await pilot.press("n", "n")
        tree = app.screen.query_one(TopicTree)
        await until(pilot, lambda: {"mnist", "result"} <= tree.topic_names, lambda: str(tree.topic_names))
        await pilot.press("tab", "tab", "tab")
        assert app.focused is tree
        view = app.screen.query_one(PayloadView)

        async def select(topic: str) -> None:
            line = next(i for i in range(tree.last_line + 1) if tree.get_node_at_line(i).data == topic)
            tree.cursor_line = line
            await until(pilot, lambda: view.kind is not None, f"nothing shown for {topic}")

        await select("mnist")
        await until(pilot, lambda: view.kind == "png", lambda: f"payload shown as {view.kind}")
        assert view.query_one(DigitView).has_image
        await select("result")
        await until(pilot, lambda: view.kind == "json", lambda: f"payload shown as {view.kind}")

    await run(app, body)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
async def test_a_result_without_its_image_says_so_in_full(mosquitto_broker: EmbeddedBroker, make_app,
                                                          size: tuple[int, int]) -> None:
    """The detail view of a result whose image the console never saw said "image not at hand (the console
    keeps the last 5,000 images ..." cut at the digit's width (56 cells at 120x40, 28 at 80x24): it wraps."""
    from tui.results.result_detail import ResultDetail

    app = make_app(mosquitto_broker.address)

    async def body(pilot: Pilot[Any]) -> None:
        probe = MqttProbe(mosquitto_broker.address)
        try:
            probe.publish("result", json.dumps({"id": "elsewhere-1", "pred": 3, "worker": "w"}), qos=1)
        finally:
            probe.close()
        await until(pilot, lambda: len(app.snap.results) == 1, "the result not seen")
        app.push_screen(ResultDetail(list(app.snap.results), 0, app.observer))
        await until(pilot, lambda: isinstance(app.screen, ResultDetail) and app.screen.image_state == "gone",
                    lambda: f"image {getattr(app.screen, 'image_state', None)}")
        await pilot.pause()
        digit = app.screen.query_one(DigitView)
        width, height = digit.content_size
        lines = ["".join(seg.text for seg in digit.render_line(y)) for y in range(height)]
        assert all(cell_len(line) == width for line in lines), lines
        assert "the console keeps the last 5,000 images it saw)" in digit.placeholder
        assert " ".join(" ".join(lines).split()) == digit.placeholder, lines  # every word, in order

    await run(app, body, size=size)


async def test_the_result_detail_takes_the_layout_of_a_new_terminal_size(mosquitto_broker: EmbeddedBroker,
                                                                         make_app) -> None:
    """Opened at 120x40 (the large layout) and then shrunk to 80x24, its right-hand column was cut off: the
    layout was chosen once, when it opened."""
    from tui.results.result_detail import ResultDetail

    app = make_app(mosquitto_broker.address)

    async def body(pilot: Pilot[Any]) -> None:
        probe = MqttProbe(mosquitto_broker.address)
        try:
            probe.publish("result", json.dumps({"id": "r-1", "pred": 3, "probs": [0.1] * 10}), qos=1)
        finally:
            probe.close()
        await until(pilot, lambda: len(app.snap.results) == 1, "the result not seen")
        app.push_screen(ResultDetail(list(app.snap.results), 0, app.observer))
        await until(pilot, lambda: isinstance(app.screen, ResultDetail) and app.screen.query("#detail-side"),
                    "no detail")
        box = app.screen.query_one("#detail")

        def inside() -> bool:
            side = app.screen.query_one("#detail-side").region
            return side.width > 0 and side.right <= app.size.width and side.bottom <= app.size.height

        for size, large in (((80, 24), False), ((120, 40), True), ((80, 24), False)):
            await pilot.resize_terminal(*size)
            await until(pilot, lambda lg=large: box.has_class("-large") == lg and inside(),
                        lambda: f"{app.size}: -large {box.has_class('-large')}, "
                                f"side {app.screen.query_one('#detail-side').region}")

    await run(app, body, size=(120, 40))


async def test_publish_dialog_sends_a_message(mosquitto_broker: EmbeddedBroker, make_app) -> None:
    app = make_app(mosquitto_broker.address)
    probe = MqttProbe(mosquitto_broker.address, "test/#", qos=2)

    async def body(pilot: Pilot[Any]) -> None:
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, PublishDialog), "no publish dialog")
        topic = app.screen.query_one("#publish-topic", Input)
        payload = app.screen.query_one("#publish-payload", Input)
        # a bad topic is refused in the dialog, and nothing is sent
        topic.value, payload.value = "test/#", "x"
        await pilot.press("enter")
        assert isinstance(app.screen, PublishDialog)
        assert "wildcards" in str(app.screen.query_one("#publish-error").render())
        topic.value, payload.value = "test/hello", '{"hi": 1}'
        await pilot.click("#publish-qos1")
        await pilot.click("#publish")
        await until(pilot, lambda: not isinstance(app.screen, PublishDialog), "dialog did not close")
        (msg,) = await until(pilot, lambda: probe.messages("test/hello"), "probe got nothing")
        assert json.loads(msg.payload) == {"hi": 1} and msg.qos == 1
        assert len(probe.messages()) == 1

    try:
        await run(app, body)
    finally:
        probe.close()


@pytest.mark.parametrize("observer_class", [Observer, ObserverProcess])
async def test_a_message_larger_than_the_broker_takes_is_refused_before_it_is_sent(
        mosquitto_broker: EmbeddedBroker, make_app, tmp_path, observer_class: type) -> None:
    """mosquitto.conf takes packets of up to 4 MiB; the dialog takes files of up to 16. A 5 MB publish made
    the broker close the connection, and the QoS 1 message went out again at every reconnect: the console
    reconnected for good, its Topics pane unsubscribed, until quit."""
    big = tmp_path / "five.bin"
    big.write_bytes(os.urandom(5_000_000))
    app = make_app(mosquitto_broker.address, observer_class)
    probe = MqttProbe(mosquitto_broker.address, "big/#")

    async def body(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: app.snap is not None and app.snap.connection.max_packet == 4 * 1024 * 1024,
                    lambda: f"the broker's maximum not known: {app.snap.connection if app.snap else None}")
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, PublishDialog), "no publish dialog")
        app.screen.query_one("#publish-topic", Input).value = "big/five"
        app.screen.query_one("#publish-payload", Input).value = f"@{big}"
        await pilot.press("enter")
        error = str(app.screen.query_one("#publish-error").render())
        assert isinstance(app.screen, PublishDialog) and "at most 4,194,304 bytes" in error, error
        with pytest.raises(ConfigError, match="at most 4,194,304 bytes"):  # the model refuses it too
            app.observer.publish("big/five", big.read_bytes(), 1)
        app.screen.query_one("#publish-payload", Input).value = "small"
        await pilot.press("enter")
        await until(pilot, lambda: not isinstance(app.screen, PublishDialog), "dialog did not close")
        (msg,) = await until(pilot, lambda: probe.messages("big/five"), "probe got nothing")
        assert msg.payload == b"small" and app.snap.connection.state == "connected"

    try:
        await run(app, body)
    finally:
        probe.close()


@pytest.mark.parametrize("observer_class", [Observer, ObserverProcess])
async def test_over_mqtt_311_a_message_the_broker_closes_the_connection_on_is_given_up_and_said(
        small_packet_mosquitto: EmbeddedBroker, make_app, tmp_path, observer_class: type) -> None:
    """MQTT 3.1.1 does not say the broker's maximum packet size, so the dialog cannot refuse a message over it
    beforehand: the broker closed the connection, the QoS 1 message went out again at each reconnect, and the
    console reconnected until quit. Now the console says so in one notification and gives the message up; the
    connection stays, and the dialog refuses a message as large from then on."""
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(SMALL_PACKET + 1000))
    app = make_app(small_packet_mosquitto.address, observer_class, protocol=4)
    seen = record_notifications(app)
    probe = MqttProbe(small_packet_mosquitto.address, "big/#")

    async def publish(pilot: Pilot[Any], payload: str) -> None:
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, PublishDialog), "no publish dialog")
        app.screen.query_one("#publish-topic", Input).value = "big/file"
        app.screen.query_one("#publish-payload", Input).value = payload
        await pilot.press("enter")

    async def body(pilot: Pilot[Any]) -> None:
        assert app.snap is not None and app.snap.connection.protocol == 4
        await publish(pilot, f"@{big}")
        await until(pilot, lambda: not isinstance(app.screen, PublishDialog), "dialog did not close")
        told = await until(pilot, lambda: [t for t in seen if "closed the connection" in t],
                           lambda: f"not told: {seen}")
        assert "big/file" in told[0] and "maximum packet size" in told[0], told
        await until(pilot, lambda: app.snap.subscribed, "not subscribed again")
        await publish(pilot, f"@{big}")
        error = str(app.screen.query_one("#publish-error").render())
        assert isinstance(app.screen, PublishDialog) and "closed the connection on a packet of" in error, error
        assert "too large for it or refused by it" in error and "publish it again to send it anyway" in error, error
        app.screen.query_one("#publish-payload", Input).value = "small"
        await pilot.press("enter")
        (msg,) = await until(pilot, lambda: probe.messages("big/file"), "probe got nothing")
        assert msg.payload == b"small" and app.snap.connection.state == "connected"
        assert len([t for t in seen if "closed the connection" in t]) == 1, seen
        # the size is a guess: the same message published twice goes out all the same, and is given up again
        await publish(pilot, f"@{big}")
        assert isinstance(app.screen, PublishDialog)
        await pilot.press("enter")
        await until(pilot, lambda: not isinstance(app.screen, PublishDialog), "not sent anyway")
        await until(pilot, lambda: len([t for t in seen if "closed the connection each time" in t]) == 2,
                    lambda: f"not sent anyway: {seen}")
        assert not [t for t in seen if "closed the connection on a packet" in t], seen  # not refused by the model

    try:
        await run(app, body)
    finally:
        probe.close()


async def test_dialog_errors_show_typed_brackets_as_written(mosquitto_broker: EmbeddedBroker, make_app) -> None:
    """What was typed comes back in the dialog's error as text: `[/]` in a rate, a filter or a topic was
    read as markup, and the MarkupError took the console down with a traceback."""
    from tui.publisher.rate_dialog import RateDialog

    app = make_app(mosquitto_broker.address)

    async def refused(pilot: Pilot[Any], error_id: str, typed: str) -> None:
        error = app.screen.query_one(error_id)
        await pilot.press("enter")
        await until(pilot, lambda: typed in str(error.render()), lambda: f"{typed!r} not shown: {error.render()}")

    async def body(pilot: Pilot[Any]) -> None:
        app.push_screen(RateDialog("10"))
        await until(pilot, lambda: isinstance(app.screen, RateDialog) and app.screen.query(Input), "no rate dialog")
        app.screen.query_one(Input).value = "x[/]"
        await refused(pilot, "#rate-error", "'x[/]'")
        await pilot.press("escape")
        await pilot.press("f")
        await until(pilot, lambda: isinstance(app.screen, FilterDialog), "no filter dialog")
        app.screen.query_one(Input).value = "a/[/]#"
        await refused(pilot, "#filter-error", "'a/[/]#'")
        await pilot.press("escape")
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, PublishDialog), "no publish dialog")
        app.screen.query_one("#publish-topic", Input).value = "[b]t[/]/#"
        app.screen.query_one("#publish-payload", Input).value = "x"
        await refused(pilot, "#publish-error", "'[b]t[/]/#'")
        await pilot.press("escape")
        assert app.return_code is None

    await run(app, body)


async def test_the_rate_dialog_says_that_0_is_max(mosquitto_broker: EmbeddedBroker, make_app) -> None:
    """0 is a rate, as `--rate 0` is: as fast as the workers take. The hint says so, a typed 0.0 is taken as
    it, and the error for a rate below the least says so too (it said "a rate is from 0.01").
    """
    from tui.publisher.rate_dialog import RateDialog

    app = make_app(mosquitto_broker.address)
    chosen: list[float | None] = []

    async def body(pilot: Pilot[Any]) -> None:
        app.push_screen(RateDialog("10"), chosen.append)
        await until(pilot, lambda: isinstance(app.screen, RateDialog) and app.screen.query(Input), "no rate dialog")
        hint = str(app.screen.query_one(".dialog-hint").render())
        assert "0 or max: as fast as the workers take" in hint, hint
        app.screen.query_one(Input).value = "0.001"
        await pilot.press("enter")
        error = app.screen.query_one("#rate-error")
        await until(pilot, lambda: str(error.render()).startswith("a rate is 0 or max"), lambda: str(error.render()))
        assert "from 0.01 to 100,000/s" in str(error.render())
        app.screen.query_one(Input).value = "0.0"
        await pilot.press("enter")
        await until(pilot, lambda: chosen == [0.0], lambda: f"the dialog gave {chosen}: {error.render()}")

    await run(app, body, size=(80, 24))


async def test_filter_dialog_refuses_bad_filters(mosquitto_broker: EmbeddedBroker, make_app) -> None:
    """A bad filter is refused inline only: a toast as well covered the dialog's buttons at 80x24, as did
    toasts from before the dialog opened (they are cleared when it opens, except errors, said nowhere else)."""
    app = make_app(mosquitto_broker.address)
    notes = record_notifications(app)

    async def body(pilot: Pilot[Any]) -> None:
        app.notify("saved 21 B to a file with a long name", timeout=60)
        app.notify("the broker refused to publish 2 B on t: not authorized", severity="error", timeout=60)
        await until(pilot, lambda: len(app.screen.query("Toast")) == 2, "no toasts")
        await pilot.press("f")
        await until(pilot, lambda: isinstance(app.screen, FilterDialog), "no filter dialog")
        await until(pilot, lambda: len(app.screen.query("Toast")) == 1, "a toast from before covers the dialog")
        assert "refused" in str(app.screen.query_one("Toast").render()), "the error went with the passing note"
        field = app.screen.query_one(Input)
        assert field.value == "#"
        field.value = "a/#/b"
        await pilot.press("enter")
        await until(pilot, lambda: "last" in str(app.screen.query_one("#filter-error").render()), "no error shown")
        assert len(notes) == 2 and len(app.screen.query("Toast")) == 1, notes  # the bad filter: inline only
        field.value = "$share/g/test/+"  # the inspector would join group g and take its members' messages
        await pilot.press("enter")
        await until(pilot, lambda: "shared subscription" in str(app.screen.query_one("#filter-error").render()),
                    "a shared filter was taken")
        assert "watch 'test/+' instead" in str(app.screen.query_one("#filter-error").render())
        field.value = "test/+"
        await pilot.press("enter")
        await until(pilot, lambda: app.observer.filter == "test/+", "filter not applied")
        await until(pilot, lambda: app.snap.filter == "test/+" and app.snap.subscribed, "not resubscribed")

    await run(app, body, size=(80, 24), notifications=True)


async def test_attach_mode_shows_a_role_of_another_process(mosquitto_broker: EmbeddedBroker, make_app) -> None:
    """`mnist-tui run infer --broker URL` elsewhere: its row appears; killed, its row turns offline."""
    app = make_app(mosquitto_broker.address, kind="external")
    notes = record_notifications(app)
    worker = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "--broker", mosquitto_broker.address.url, "run", "infer",
         "--id", "remote-w1", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )

    def row_state() -> str | None:
        for role in app.snap.roles_of("infer") if app.snap else ():
            if role.id == "remote-w1":
                return role.state
        return None

    async def body(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: row_state() == "running", "remote worker never showed up", timeout=60)
        table = app.screen.query_one(WorkersPane).table
        assert "remote-w1" in str(table.get_row("remote-w1")[0])
        os.kill(worker.pid, signal.SIGKILL)  # no goodbye: the broker sends its retained last will
        await until(pilot, lambda: row_state() == "offline", lambda: f"row state {row_state()}")
        assert "offline" in str(table.get_row("remote-w1")[1])
        await until(pilot, lambda: any("remote-w1 went offline" in n for n in notes), lambda: str(notes))

    try:
        await run(app, body)
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.wait(10)
        probe = MqttProbe(mosquitto_broker.address)
        probe.publish("mnist/status/infer/remote-w1", b"", qos=1, retain=True)
        probe.close()


async def test_observer_in_a_child_process(pipeline: LocalPipeline, make_app) -> None:
    """The console's own setup: the observer in a child process behind the same API."""
    app = make_app(pipeline.address, observer_class=ObserverProcess)

    async def body(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: publisher_state(app), "publisher status never seen")
        await pilot.press("space")
        log = app.screen.query_one(ResultsLog)
        await until(pilot, lambda: len(log.rows) >= 3, lambda: f"{len(log.rows)} result rows")
        await pilot.press("space")
        await until(pilot, lambda: publisher_state(app)["state"] == "stopped", "space did not stop it")
        assert [r.seq for r in log.rows] == sorted({r.seq for r in log.rows})  # each once, in order

    await run(app, body)
    pid = app.observer.pid
    app.observer.stop()
    assert pid is not None and not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_broker_going_away_keeps_the_app_up(make_app) -> None:
    broker = EmbeddedBroker(kind="mosquitto")
    broker.start()
    try:
        app = make_app(broker.address)
        notes = record_notifications(app)

        async def body(pilot: Pilot[Any]) -> None:
            broker.stop()
            await until(pilot, lambda: app.snap.connection.state == "reconnecting", "no reconnecting state")
            header = str(app.screen.query_one("#header").render())
            assert "reconnecting" in header
            await pilot.press("space")  # steering while offline: a notification, not a traceback
            broker.start()
            await until(pilot, lambda: app.snap.connection.state == "connected", "no recovery", timeout=40)

        await run(app, body)
        assert any("cannot reach" in t or "lost" in t for t in notes), notes
        assert any("not connected" in t or "no publisher" in t for t in notes), notes
    finally:
        broker.stop()


async def test_retry_countdown_counts_down_while_the_broker_is_away(make_app) -> None:
    """The header's "next try in N s" follows the observer's backoff (1, 2, 4 s...): whole seconds rounded
    up, so it never reads "0 s" while a wait is left; past the due time it says it is trying. At 80
    columns the header gives up the broker's kind so that the countdown shows."""
    broker = EmbeddedBroker(kind="mosquitto")
    broker.start()
    try:
        app = make_app(broker.address, ObserverProcess)  # the console's own observer, in its child process
        shown: list[str] = []

        def header() -> str:
            bar = app.screen.query_one("#header")
            text = str(bar.render())
            if not shown or shown[-1] != text:
                shown.append(text)
                assert len(text) <= bar.content_size.width, f"cut off at {bar.content_size.width}: {text!r}"
            return text

        def countdowns() -> list[int]:
            return [int(m.group(1)) for m in (re.search(r"next try in (\d+) s", t) for t in shown) if m]

        async def body(pilot: Pilot[Any]) -> None:
            broker.stop()
            # a full wait of the backoff (2 s) counted down, then the next (4 s) begun
            await until(pilot, lambda: header() and 4 in countdowns() and 1 in countdowns(),
                        lambda: f"header: {shown[-8:]}", timeout=40)

        await run(app, body, size=(80, 24))
        waits = countdowns()
        assert all(n >= 1 for n in waits), f"a countdown at 0 while a wait was left: {shown}"
        assert 2 in waits and waits.index(1, waits.index(2)) < waits.index(4), waits  # 2, 1, ... then 4
    finally:
        broker.stop()


# ---- the mnist-tui command -------------------------------------------------------------------------


def test_cli_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from tui.cli import main

    assert main(["--broker", "bad://host"]) == 1
    assert main(["--roles", "input,bogus"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("mnist-tui: ") for line in err), err
    assert "Traceback" not in "".join(err)


def test_cli_has_no_paused_option(capsys: pytest.CaptureFixture[str]) -> None:
    """The console always opens with its publisher stopped (space starts it): no option says otherwise."""
    from engine.cli import build_parser

    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--paused"])  # the console's own parser (tui.cli.main would open it)
    assert exit_info.value.code == 2 and "unrecognized arguments: --paused" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_starts_local_roles_and_leaves_nothing_running(monkeypatch: pytest.MonkeyPatch) -> None:
    """`mnist-tui` alone: broker and three roles in a child process; after quitting, all of it is gone."""
    import psutil

    from engine.mqtt.broker import port_accepts
    from tui.cli import main

    seen: dict[str, Any] = {}

    def fake_run(self: MnistApp) -> None:  # instead of a terminal: check what the console would show
        assert self.starting and self.starter is not None  # it opens at once; the roles start behind it
        started = self.starter()  # what the console's start thread runs
        observer = started.observer
        wait_for(lambda: len([r for r in observer.snapshot(topics=False).roles if r.online]) >= 3,
                 timeout=90, message="the three local roles never showed up on the broker")
        seen["roles"] = {r.role for r in observer.snapshot(topics=False).roles}
        seen["input"] = [r.state for r in observer.snapshot(topics=False).roles_of("input")]
        seen["port"] = observer.address.port
        seen["children"] = [  # multiprocessing's resource tracker lives as long as this test process: not ours
            p for p in psutil.Process().children(recursive=True) if "resource_tracker" not in " ".join(p.cmdline())
        ]
        seen["kind"] = started.broker.kind
        assert started.owns_roles

    monkeypatch.setattr(MnistApp, "run", fake_run)
    assert main(["--embedded", "mosquitto"]) == 0
    assert seen["roles"] == {"input", "infer", "output"} and seen["kind"] == "mosquitto"
    assert seen["input"] == ["stopped"]  # the console's publisher waits for space
    assert len(seen["children"]) >= 3  # roles, observer, mosquitto
    gone, alive = psutil.wait_procs(seen["children"], timeout=10)
    assert not alive, f"left running: {alive}"
    assert not port_accepts(seen["port"])


# ---- preferences the console remembers in the config file ----------------------------------------------


def start_prefs(monkeypatch: pytest.MonkeyPatch, tmp_path: Any, *argv: str) -> Any:
    """The console's preferences as `mnist-tui` starts with them, the user config dir under tmp_path."""
    from engine.cli import apply_config, build_parser
    from engine.config_file import console_prefs

    for name in ("MNIST_CONFIG", "MNIST_PROFILE", "MNIST_THEME", "MNIST_FILTER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    args = build_parser().parse_args(list(argv))
    apply_config(args, list(argv))
    return console_prefs(args)


def prefs_app(address: Any, prefs: Any, observers: list[Observer]) -> MnistApp:
    observer = Observer(address, filter=prefs.filter)  # as tui/cli.py starts it
    observer.start()
    observers.append(observer)
    return MnistApp(observer, BrokerInfo(address.url, "mosquitto", "mosquitto (test)"), prefs=prefs)


async def test_the_console_remembers_theme_and_filter(mosquitto_broker: EmbeddedBroker, tmp_path, monkeypatch) -> None:
    prefs = start_prefs(monkeypatch, tmp_path)
    assert prefs.file == tmp_path / "xdg" / "mnist-tui" / "config.toml" and not prefs.file.exists()
    observers: list[Observer] = []
    try:
        first = prefs_app(mosquitto_broker.address, prefs, observers)
        assert first.theme != "nord"

        async def change(pilot: Pilot[Any]) -> None:
            await pilot.press("ctrl+p")  # the command palette's theme picker, as a user reaches it
            await pilot.press(*"theme")
            await pilot.pause()
            await pilot.press("enter")
            await pilot.press(*"nord")
            await pilot.pause()
            await pilot.press("enter")
            await until(pilot, lambda: first.theme == "nord", "theme not changed")
            await until(pilot, lambda: '"nord"' in prefs.file.read_text() if prefs.file.exists() else False,
                        "theme not saved")
            await pilot.press("f")
            await until(pilot, lambda: isinstance(first.screen, FilterDialog), "no filter dialog")
            first.screen.query_one(Input).value = "mnist/#"
            await pilot.press("enter")
            await until(pilot, lambda: first.observer.filter == "mnist/#", "filter not applied")

        await run(first, change)
        assert 'filter = "mnist/#"' in prefs.file.read_text(encoding="utf-8")

        again = start_prefs(monkeypatch, tmp_path)  # the next start
        assert (again.theme, again.filter) == ("nord", "mnist/#")
        second = prefs_app(mosquitto_broker.address, again, observers)

        async def check(pilot: Pilot[Any]) -> None:
            assert second.theme == "nord"
            await until(pilot, lambda: second.snap.filter == "mnist/#", "the saved filter is not subscribed")

        await run(second, check)
        # a flag still beats the file
        assert start_prefs(monkeypatch, tmp_path, "--theme", "dracula").theme == "dracula"
    finally:
        for observer in observers:
            observer.stop()


async def test_a_saved_filter_the_console_cannot_use_is_a_note_not_a_stop(mosquitto_broker: EmbeddedBroker,
                                                                             tmp_path, monkeypatch) -> None:
    """A [console] filter with a character brokers refuse (an older console saved what was pasted) stopped
    every command; the console starts with # and says why."""
    config = tmp_path / "xdg" / "mnist-tui" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[console]\nfilter = "mnist/\\u0007/#"\n', encoding="utf-8")
    prefs = start_prefs(monkeypatch, tmp_path)
    assert prefs.filter == "#"
    observers: list[Observer] = []
    try:
        app = prefs_app(mosquitto_broker.address, prefs, observers)
        seen = record_notifications(app)

        async def body(pilot: Pilot[Any]) -> None:
            await until(pilot, lambda: any("console.filter" in text and "starts with #" in text for text in seen),
                        lambda: f"notified: {seen}")
            await until(pilot, lambda: app.snap.filter == "#", "the console does not follow #")
            await pilot.press("f")  # choosing # saves it over the filter left out
            await until(pilot, lambda: isinstance(app.screen, FilterDialog), "no filter dialog")
            assert app.screen.query_one(Input).value == "#"
            await pilot.press("enter")
            await until(pilot, lambda: 'filter = "#"' in config.read_text(encoding="utf-8"), "# not saved")

        await run(app, body)
        assert start_prefs(monkeypatch, tmp_path).notes == ()  # the next start has nothing to say
    finally:
        for observer in observers:
            observer.stop()


async def test_a_preference_that_cannot_be_saved_is_a_notification(mosquitto_broker: EmbeddedBroker, tmp_path,
                                                                     monkeypatch) -> None:
    elsewhere = tmp_path / "elsewhere.toml"
    elsewhere.write_text("# not the console's to change\n", encoding="utf-8")
    link = tmp_path / "xdg" / "mnist-tui" / "config.toml"
    link.parent.mkdir(parents=True)
    link.symlink_to(elsewhere)
    observers: list[Observer] = []
    try:
        app = prefs_app(mosquitto_broker.address, start_prefs(monkeypatch, tmp_path), observers)
        seen = record_notifications(app)

        async def body(pilot: Pilot[Any]) -> None:
            app.theme = "nord"
            await until(pilot, lambda: any("symbolic link" in text for text in seen), lambda: f"notified: {seen}")
            assert app.theme == "nord", "the theme changed all the same"

        await run(app, body)
        assert elsewhere.read_text(encoding="utf-8") == "# not the console's to change\n"
    finally:
        for observer in observers:
            observer.stop()
