"""An MQTT 5 broker acknowledges a QoS 1 message that nobody is subscribed to with "no matching subscribers":
it took the message, and it is gone. The input role counts its images so (`no_subscriber` in its status).
MQTT 3.1.1 has no way to say it. Real mosquitto, an in-process input role."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from helpers import started, wait_for

from engine.roles.publisher import Publisher
from engine.settings import Settings


def _finished(publisher: Publisher, sent: int) -> None:
    wait_for(lambda: publisher.finished and publisher.sent == sent, timeout=60,
             message=lambda: f"{publisher.sent} of {sent} sent")
    assert publisher.data_client.flush(30), "the broker did not acknowledge every image"


@pytest.mark.parametrize("protocol", [5, 4], ids=["mqtt5", "mqtt311"])
def test_images_nobody_is_subscribed_to_are_counted(mosquitto_broker, probe_factory, protocol: int) -> None:
    """20 QoS 1 images with no worker: each is acknowledged "no matching subscribers" (MQTT 5). Then with a
    subscriber, 10 more go to it and the count stays."""
    address = mosquitto_broker.address
    settings = Settings(rate=500, count=20, qos=1, protocol=protocol)
    with started(Publisher(address, settings, f"unheard-in-{protocol}")) as publisher:
        publisher.play()
        _finished(publisher, 20)
        assert publisher.status()["no_subscriber"] == (20 if protocol == 5 else 0)
        images = probe_factory(address, "mnist", qos=1, protocol=protocol)
        publisher.play(count=10)
        _finished(publisher, 30)
        wait_for(lambda: len(images.messages("mnist")) == 10, message=lambda: f"{len(images.messages('mnist'))}")
        assert publisher.status()["no_subscriber"] == (20 if protocol == 5 else 0)


def test_images_still_unacknowledged_when_the_qos_drops_to_0_are_counted(mosquitto_broker) -> None:
    """Images sent at QoS 1 while the broker is stopped (SIGSTOP), then `set qos 0`: their acknowledgements come
    after the switch, and each still counts (the data connection stopped listening for them at QoS 0)."""
    address = mosquitto_broker.address
    with started(Publisher(address, Settings(rate=0, count=50, qos=1), "switch-in")) as publisher:
        os.kill(mosquitto_broker.pid, signal.SIGSTOP)
        try:
            publisher.play()
            wait_for(lambda: publisher.finished and publisher.sent == 50, timeout=60,
                     message=lambda: f"{publisher.sent} of 50 sent")
            publisher._cmd_set({"qos": 0})
            assert publisher.data_client.unacknowledged() == 50
        finally:
            os.kill(mosquitto_broker.pid, signal.SIGCONT)
        assert publisher.data_client.flush(30), "the broker did not acknowledge every image"
        assert publisher.no_subscriber == 50


def test_run_input_says_how_many_images_went_to_nobody(mosquitto_broker) -> None:
    """`run input` with QoS 1 images and no worker: one warning at the end, the count of them, exit 0 (it sent
    what it was asked to); on MQTT 3.1.1 the broker cannot say, and neither does it."""
    def run(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "engine", "-q", "--broker", mosquitto_broker.address.url, *flags,
                               "--qos", "1", "run", "input", "--count", "5", "--rate", "0", "--once"],
                              capture_output=True, text=True, timeout=120)

    done = run()
    assert done.returncode == 0, done.stderr
    assert "5 of 5 images had nobody subscribed to mnist" in done.stderr, done.stderr
    done = run("--mqtt", "3.1.1")
    assert done.returncode == 0 and "nobody subscribed" not in done.stderr, done.stderr
