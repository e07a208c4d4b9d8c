"""Fixtures shared by every test: real brokers on free loopback ports and MQTT probes; the markers.

    def test_x(broker, probe_factory):          # runs once on mosquitto, once on the Python broker
        probe = probe_factory(broker.address, "result")

The tests are arranged like the code: tests/unit (no broker, no console), tests/integration (the engine:
roles, brokers, commands as processes), tests/console (the console through Pilot, snapshots, the
browser). No test folder is named like a package of the product: pytest puts the test folders on
sys.path, where a folder `engine/` would shadow the real `engine` package as a namespace package.
Markers (pyproject.toml): `needs_mosquitto` skips a test where mosquitto is not installed (a test
that takes the `mosquitto_broker` fixture gets it without asking), `needs_mosquitto_clients` where
mosquitto_pub is missing, `slow` marks tests of over about 5 s: `pytest -m "not slow"` for a quick run.
"""

from __future__ import annotations

import re
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import NO_MOSQUITTO, SMALL_PACKET, TINY_PACKET, MqttProbe
from secured import secured_broker  # noqa: F401 - a fixture, for every test

from engine.mqtt.broker import EmbeddedBroker, default_config_path, find_mosquitto


def pytest_configure(config: pytest.Config) -> None:
    """Children that a test interrupts (Ctrl-C to `run all`, to an embedded broker's owner, to `replay`)
    must see SIGINT as a terminal's Ctrl-C. A test run started in the background of a non-interactive
    shell (`pytest &`, nohup) inherits SIGINT ignored, which every child would inherit too, and Python
    then installs no KeyboardInterrupt handler in them. A handled signal is reset to its default on exec."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


MOSQUITTO_FIXTURES = {"mosquitto_broker", "small_packet_mosquitto", "tiny_packet_mosquitto"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip what needs a program this machine lacks, with the apt line that installs it."""
    no_broker = find_mosquitto() is None
    no_clients = shutil.which("mosquitto_pub") is None
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_mosquitto = callspec is not None and callspec.params.get("broker") == "mosquitto"
        if on_mosquitto or MOSQUITTO_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.needs_mosquitto)
        if no_broker and item.get_closest_marker("needs_mosquitto"):
            item.add_marker(pytest.mark.skip(reason=NO_MOSQUITTO))
        if no_clients and item.get_closest_marker("needs_mosquitto_clients"):
            item.add_marker(pytest.mark.skip(reason=NO_MOSQUITTO))


def _running(kind: str, **kwargs: Any) -> Iterator[EmbeddedBroker]:
    if kind == "mosquitto" and find_mosquitto() is None:
        pytest.skip(NO_MOSQUITTO)
    broker = EmbeddedBroker(kind=kind, **kwargs)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def mosquitto_broker() -> Iterator[EmbeddedBroker]:
    """A fresh mosquitto with the repository's mosquitto.conf on a free port (skipped if not installed)."""
    yield from _running("mosquitto")


def _max_packet_mosquitto(tmp_path: Path, size: int) -> Iterator[EmbeddedBroker]:
    config = tmp_path / f"packets-{size}.conf"
    text, count = re.subn(r"(?m)^max_packet_size .*$", f"max_packet_size {size}",
                          default_config_path().read_text(encoding="utf-8"))
    assert count == 1, "mosquitto.conf has no max_packet_size line to change"
    config.write_text(text, encoding="utf-8")
    yield from _running("mosquitto", config=config)


@pytest.fixture
def small_packet_mosquitto(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A fresh mosquitto with the repository's mosquitto.conf on a free port, but a maximum packet size of
    SMALL_PACKET bytes (64 KiB, not 4 MiB: a message over it is quick to send)."""
    yield from _max_packet_mosquitto(tmp_path, SMALL_PACKET)


@pytest.fixture
def tiny_packet_mosquitto(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """As small_packet_mosquitto with a maximum packet size of TINY_PACKET bytes: over MQTT 3.1.1 it closes
    the connection on a small message, as some brokers do on a publish their ACL forbids."""
    yield from _max_packet_mosquitto(tmp_path, TINY_PACKET)


@pytest.fixture
def python_broker() -> Iterator[EmbeddedBroker]:
    """A fresh in-process amqtt broker (MQTT 3.1.1 only, no shared subscriptions) on a free port."""
    yield from _running("python")


@pytest.fixture(params=["mosquitto", "python"])
def broker(request: pytest.FixtureRequest) -> Iterator[EmbeddedBroker]:
    """Each embedded broker in turn, for tests that must pass on both."""
    yield from _running(request.param)


@pytest.fixture
def probe_factory() -> Iterator[Callable[..., MqttProbe]]:
    """Make MqttProbe(address, topics, ...) objects; all are closed at teardown."""
    probes: list[MqttProbe] = []

    def make(*args: Any, **kwargs: Any) -> MqttProbe:
        probe = MqttProbe(*args, **kwargs)
        probes.append(probe)
        return probe

    yield make
    for probe in probes:
        probe.close()
