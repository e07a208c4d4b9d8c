"""The output role counts results however they come: plain QoS 0 ones as its data client reads them."""

from __future__ import annotations

import json

import pytest
from helpers import make_client, wait_for

from engine.mqtt.broker import EmbeddedBroker
from engine.roles.collector import Collector
from engine.settings import Settings


@pytest.mark.needs_mosquitto
def test_plain_results_are_taken_as_they_are_read_and_the_others_as_messages(mosquitto_broker: EmbeddedBroker) -> None:
    """QoS 0 results go to the collector without a message object (FastClient.count_only), QoS 1 ones through
    on_data, and both are counted alike: accuracy, duplicates, malformed payloads."""
    collector = Collector(mosquitto_broker.address, Settings(), "collector-plain")
    collector.start()
    sender = make_client(mosquitto_broker.address, protocol=5)
    sender.connect(mosquitto_broker.address.host, mosquitto_broker.address.port)
    sender.loop_start()
    try:
        assert collector.wait_ready(20)

        def result(i: int) -> bytes:
            return json.dumps({"id": f"r-{i}", "pred": i % 10, "label": i % 10 if i % 7 else (i + 1) % 10,
                               "conf": 0.9, "worker": "w", "t_sent": 1.0}).encode()

        for i in range(50):
            sender.publish("result", result(i), qos=0)
        sender.publish("result", result(3), qos=0)  # a duplicate
        sender.publish("result", b"{not json", qos=0)
        for i in range(50, 55):
            sender.publish("result", result(i), qos=1)
        sender.publish("result", result(55), qos=0, retain=True).wait_for_publish(10)
        wait_for(lambda: collector.received == 56 and collector.malformed == 1, message="not every result counted")
        assert collector.duplicates == 1
        assert collector.labelled == 56 and collector.correct == 56 - len([i for i in range(56) if i % 7 == 0])
        # the 50 plain results, the duplicate, the malformed one and the retained one (a subscriber already there
        # gets it without the retain flag); not the QoS 1 ones
        assert collector.data_client.counted_only == 53
    finally:
        sender.publish("result", b"", qos=0, retain=True)
        sender.disconnect()
        sender.loop_stop()
        collector.stop()
