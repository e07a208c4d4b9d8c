"""Fixtures shared by every test: real brokers on free loopback ports and MQTT probes.

    def test_x(broker, probe_factory):          # runs once on mosquitto, once on the Python broker
        probe = probe_factory(broker.address, "result")
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import NO_MOSQUITTO, MqttProbe

from engine.mqtt.broker import EmbeddedBroker, find_mosquitto


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
