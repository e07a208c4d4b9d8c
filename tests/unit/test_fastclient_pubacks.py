"""FastClient reads a plain PUBACK itself: success, or MQTT 5's "no matching subscribers" (the broker took the
message and nobody was subscribed to it), without properties; anything else goes to paho. Either way on_publish
gets the broker's reason code (engine/mqtt/fastclient.py). Driven without a broker: on a client that is not
connected paho stores QoS 1 publishes, and a PUBACK is handed to the handler as paho's reader would."""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.client import CallbackAPIVersion

from engine.mqtt.fastclient import NO_MATCHING_SUBSCRIBERS, FastClient


def _acknowledge(client: FastClient, body: bytes) -> None:
    client._in_packet = {"command": 0x40, "packet": body, "remaining_length": len(body)}
    rc = client._handle_pubackcomp("PUBACK")
    assert rc == mqtt.MQTT_ERR_SUCCESS


@pytest.mark.parametrize(("tail", "reason"), [
    (b"", 0),  # MQTT 3.1.1's form, also valid in MQTT 5: success
    (b"\x00", 0),
    (b"\x00\x00", 0),
    (b"\x10", NO_MATCHING_SUBSCRIBERS),
    (b"\x10\x00", NO_MATCHING_SUBSCRIBERS),
    (b"\x10\x05\x1f\x00\x02hi", NO_MATCHING_SUBSCRIBERS),  # with a reason string: paho's
    (b"\x87", 0x87),  # not authorized: paho's
], ids=["bare", "success", "success-empty-props", "no-subscribers", "no-subscribers-empty-props",
        "no-subscribers-reason-string", "not-authorized"])
def test_on_publish_gets_the_brokers_reason_code(tail: bytes, reason: int) -> None:
    client = FastClient(CallbackAPIVersion.VERSION2, client_id="acks", protocol=mqtt.MQTTv5)
    got: list[Any] = []
    client.on_publish = lambda _c, _u, mid, rc, _p: got.append((mid, rc))
    info = client.publish("t", b"image", qos=1)
    _acknowledge(client, info.mid.to_bytes(2, "big") + tail)
    assert len(got) == 1 and got[0][0] == info.mid and got[0][1] == reason
    assert got[0][1].is_failure == (reason >= 0x80)
    assert not client._out_messages, "the publish is still waiting for its acknowledgement"
