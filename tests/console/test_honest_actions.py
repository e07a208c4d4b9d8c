"""The console reports the broker's verdict on what it sends (issue 16, finding 7).

Against mosquitto with the secured recipe (TLS, password file, the ACL of docs/SECURITY.md): publish,
clear-retained, commands and a drawn digit are "refused" when the ACL denies them (the MQTT 5 PUBACK
reason code), "accepted" when the broker takes them, and "not confirmed" where the protocol cannot say
(QoS 0, MQTT 3.1.1). A console logged in with an account that may not read the statuses gets a hint.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from helpers import pilot_until as until
from helpers import wait_for
from secured import login, verdict
from test_tui import record_notifications, run
from textual.pilot import Pilot

from engine.console.observer import Observer
from tui.app import MnistApp
from tui.chrome.header_bar import BrokerInfo
from tui.draw.draw_dialog import DrawDialog
from tui.topics.publish_dialog import PublishDialog


@pytest.fixture
def observers() -> Iterator[list[Observer]]:
    made: list[Observer] = []
    yield made
    for obs in made:
        obs.stop()


def connect(made: list[Observer], address: Any, protocol: int | None = None) -> Observer:
    obs = Observer(address, protocol=protocol)
    obs.start()
    made.append(obs)
    wait_for(lambda: obs.snapshot().subscribed, 30, message=lambda: str(obs.snapshot().connection))
    return obs


def events(obs: Observer) -> list[str]:
    return [f"{e.level}: {e.text}" for e in obs.snapshot().events]


def test_refused_publish_clear_and_command_are_said(secured_broker, observers) -> None:  # noqa: F811
    """A console logged in as `infer`: every console action the ACL denies is an error naming the
    reason; nothing says "published" or "cleared"."""
    _, secure = secured_broker
    obs = connect(observers, login(secure, "infer"))
    assert obs.protocol == 5
    obs.publish("test/hello", b"hi", qos=1)
    obs.clear_retained("mnist/status/input/player-1")
    obs.send_control("input", "stop")
    assert verdict(obs, "test/hello", "publish").outcome == "refused"
    clear = verdict(obs, "mnist/status/input/player-1", "clear")
    assert clear.outcome == "refused" and clear.reason == "not authorized"
    assert verdict(obs, "mnist/control/input", "command").refused
    said = events(obs)
    assert "error: the broker refused to publish 2 B on test/hello: not authorized" in said, said
    assert "error: the broker refused to clear any retained message of mnist/status/input/player-1: " \
           "not authorized" in said, said
    assert any(e.startswith("error: the broker refused to send the command stop") for e in said), said
    assert not [e for e in said if "published" in e or "cleared" in e], said


def test_accepted_and_unconfirmed_are_told_apart(secured_broker, observers) -> None:  # noqa: F811
    """The console account may write control topics: accepted at QoS 1 (MQTT 5); at QoS 0, and on
    MQTT 3.1.1 even when the ACL denies it, the console says it cannot confirm."""
    _, secure = secured_broker
    v5 = connect(observers, login(secure, "console"))
    v5.publish("mnist/control/output/c1", b"{}", qos=1, retain=True)
    assert verdict(v5, "mnist/control/output/c1", "publish").outcome == "accepted"
    v5.clear_retained("mnist/control/output/c1")
    assert verdict(v5, "mnist/control/output/c1", "clear").outcome == "accepted"
    v5.publish("mnist/control/output/c2", b"{}", qos=0)
    zero = verdict(v5, "mnist/control/output/c2", "publish")
    assert zero.outcome == "unconfirmed" and "QoS 0" in (zero.reason or "")
    said = events(v5)
    assert "information: published 2 B on mnist/control/output/c1" in said, said
    # one published after the console subscribed comes without the retain flag: "any", not "the"
    assert "information: cleared any retained message of mnist/control/output/c1" in said, said
    v5.publish("mnist/control/output/c3", b"{}", qos=1, retain=True)
    assert verdict(v5, "mnist/control/output/c3", "publish").outcome == "accepted"
    later = connect(observers, login(secure, "console"))  # gets it as the broker's retained copy
    wait_for(lambda: any(t.name == "mnist/control/output/c3" and t.retained
                         for t in later.snapshot().topics), message="the retained copy never came")
    later.clear_retained("mnist/control/output/c3")
    assert verdict(later, "mnist/control/output/c3", "clear").outcome == "accepted"
    assert "information: cleared the retained message of mnist/control/output/c3" in events(later)

    v4 = connect(observers, login(secure, "infer"), protocol=4)
    v4.publish("test/hello", b"hi", qos=1)  # denied, but MQTT 3.1.1 cannot say so
    old = verdict(v4, "test/hello", "publish")
    assert old.outcome == "unconfirmed" and "3.1.1" in (old.reason or "")
    assert not [e for e in events(v4) if e.startswith("information: published")]


def test_a_console_that_cannot_read_statuses_gets_a_hint(secured_broker, observers, probe_factory) -> None:  # noqa: F811
    """A retained worker status is there; the console account sees it and gets no hint; an `output`
    account (no read right on statuses: mosquitto acknowledges the subscription anyway) gets one."""
    _, secure = secured_broker
    worker = probe_factory(login(secure, "infer"), client_id="worker-1")
    worker.publish("mnist/status/infer/worker-1", b'{"role": "infer", "state": "running"}', qos=1, retain=True)
    console = connect(observers, login(secure, "console"))
    wait_for(lambda: console.snapshot().roles, 20, message="the console account saw no role")
    blind = Observer(login(secure, "output"))
    blind.read_hint_after = 1.0
    blind.start()
    observers.append(blind)
    console.read_hint_after = 1.0
    wait_for(lambda: any("may not read mnist/status/+/+" in e for e in events(blind)), 20,
             message=lambda: f"no hint: {events(blind)}")
    assert not blind.snapshot().roles
    assert not [e for e in events(console) if "may not read" in e], events(console)


def _app(address: Any) -> MnistApp:
    observer = Observer(address)
    observer.start()
    return MnistApp(observer, BrokerInfo(address.url, "mosquitto", "mosquitto (test)"))


async def test_the_console_says_refused_for_p_and_for_a_drawing(secured_broker) -> None:  # noqa: F811
    """Logged in as `output`: `p` shows the refusal, never "Published"; the draw dialog says the broker
    refused the image instead of waiting for a worker."""
    _, secure = secured_broker
    app = _app(login(secure, "output"))
    notes = record_notifications(app)

    async def body(pilot: Pilot[Any]) -> None:
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, PublishDialog), "no publish dialog")
        app.screen.query_one("#publish-topic").value = "test/hello"
        app.screen.query_one("#publish-payload").value = "hi"
        await pilot.click("#publish")
        await until(pilot, lambda: any("refused" in n for n in notes), lambda: f"notes: {notes}")
        assert any("not authorized" in n and "test/hello" in n for n in notes), notes
        assert not [n for n in notes if n.lower().startswith("published")], notes
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, DrawDialog), "no draw dialog")
        await pilot.press(*["up"] * 6, "space", *["shift+down"] * 13, "enter")
        status = app.screen.query_one("#draw-status")
        await until(pilot, lambda: "refused" in str(status.render()), lambda: str(status.render()))
        assert "not authorized" in str(status.render()) and "worker" not in str(status.render())

    try:
        await run(app, body)
    finally:
        app.observer.stop()
