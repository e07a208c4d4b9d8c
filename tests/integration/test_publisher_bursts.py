"""At a high set rate the input role hands paho what fell due since its last pass as one burst: one joined write
and one wake-up of the network thread for several images, not a wait and a wake-up for each. Real mosquitto."""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt
from helpers import started, wait_for

from engine.protocol import extract_meta
from engine.roles.publisher import MIN_WAIT, Publisher
from engine.settings import Settings

RATE = 5000.0
COUNT = 3000


def test_a_high_rate_goes_out_in_bursts_each_image_once_in_order(mosquitto_broker, probe_factory) -> None:
    """At 5,000 images/s the publisher waits at least MIN_WAIT between passes, so a pass sends about ten images
    (the code before sent 3,000 in about 2,000 passes on a quiet machine); all 3,000 arrive, each once, in order."""
    address = mosquitto_broker.address
    images = probe_factory(address, "mnist", qos=0)
    with started(Publisher(address, Settings(rate=RATE, count=COUNT), "burst-in")) as publisher:
        client = publisher.data_client
        passes: list[int] = []
        many, one = client.publish_many, client.publish

        def publish_many(topic: str, payloads: list[bytes], **kwargs: Any) -> list[mqtt.MQTTMessageInfo]:
            passes.append(len(payloads))
            return many(topic, payloads, **kwargs)

        def publish_one(*args: Any, **kwargs: Any) -> mqtt.MQTTMessageInfo:
            passes.append(1)
            return one(*args, **kwargs)

        client.publish_many = publish_many  # type: ignore[method-assign]
        client.publish = publish_one  # type: ignore[method-assign]
        publisher.play()
        wait_for(lambda: publisher.finished, timeout=60, message=lambda: f"{publisher.sent} sent")
        assert publisher.sent == COUNT == sum(passes)
        # a pass every MIN_WAIT at least: RATE * MIN_WAIT = 10 images a pass; half that leaves room for the first
        # and for a pass cut short by a wake-up, and none for one image a pass
        assert COUNT / len(passes) >= RATE * MIN_WAIT / 2, f"{len(passes)} passes for {COUNT} images"
        wait_for(lambda: len(images.messages("mnist")) >= COUNT, timeout=60,
                 message=lambda: f"{len(images.messages('mnist'))} of {COUNT} received")
    seqs = [int(extract_meta(m.payload).id.rsplit("-", 1)[-1]) for m in images.messages("mnist")]
    assert seqs == sorted(seqs) and len(set(seqs)) == COUNT


class _CountMidPass(Publisher):
    """Takes `start` with a count of 100 while its first pass is being sent, as a command may land."""

    hooked = False

    def _send(self, sample: Any, running: bool = False) -> bool:
        self._count_now()
        return super()._send(sample, running)

    def _send_burst(self, samples: list[Any]) -> int:
        self._count_now()
        return super()._send_burst(samples)

    def _count_now(self) -> None:
        if not self.hooked:
            self.hooked = True
            self.play(count=100)


def test_a_count_given_while_a_pass_is_sent_counts_from_what_follows(mosquitto_broker, probe_factory) -> None:
    """`start` with 100 lands while the first pass (one image: the run begins on time) is sent: 100 more follow it.
    The pass's images were counted against the new count before, and with bursts at high rates that was up to
    a burst fewer than asked."""
    address = mosquitto_broker.address
    images = probe_factory(address, "mnist", qos=0)
    with started(_CountMidPass(address, Settings(rate=RATE, count=10), "count-in")) as publisher:
        publisher.play()
        wait_for(lambda: publisher.finished, timeout=60, message=lambda: f"{publisher.sent} sent")
        assert publisher.hooked and publisher.sent == 1 + 100 and publisher.remaining == 0
        wait_for(lambda: len(images.messages("mnist")) == 101, timeout=60,
                 message=lambda: f"{len(images.messages('mnist'))} of 101 received")
