"""FastClient reads a plain PUBACK itself: success, or MQTT 5's "no matching subscribers" (the broker took the
message and nobody was subscribed to it), without properties, handed on with one shared reason code; anything
else goes to paho. Either way on_publish gets the broker's reason code (engine/mqtt/fastclient.py). Driven
without a broker: on a client that is not connected paho stores QoS 1 publishes, and a PUBACK is handed to the
handler as paho's reader would."""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.client import CallbackAPIVersion

from engine.mqtt import fastclient
from engine.mqtt.fastclient import NO_MATCHING_SUBSCRIBERS, FastClient

SHARED = {0: fastclient._PUBACK_SUCCESS, NO_MATCHING_SUBSCRIBERS: fastclient._PUBACK_NO_SUBSCRIBERS}


@pytest.mark.parametrize(("protocol", "tail", "reason", "read_here"), [
    (mqtt.MQTTv5, b"", 0, True),  # MQTT 3.1.1's form, also valid in MQTT 5: success
    (mqtt.MQTTv5, b"\x00", 0, True),
    (mqtt.MQTTv5, b"\x00\x00", 0, True),
    (mqtt.MQTTv5, b"\x10", NO_MATCHING_SUBSCRIBERS, True),
    (mqtt.MQTTv5, b"\x10\x00", NO_MATCHING_SUBSCRIBERS, True),
    (mqtt.MQTTv5, b"\x10\x05\x1f\x00\x02hi", NO_MATCHING_SUBSCRIBERS, False),  # with a reason string: paho's
    (mqtt.MQTTv5, b"\x87", 0x87, False),  # not authorized: paho's
    (mqtt.MQTTv311, b"", 0, True),
], ids=["bare", "success", "success-empty-props", "no-subscribers", "no-subscribers-empty-props",
        "no-subscribers-reason-string", "not-authorized", "mqtt311"])
def test_on_publish_gets_the_brokers_reason_code(protocol: int, tail: bytes, reason: int, read_here: bool) -> None:
    client = FastClient(CallbackAPIVersion.VERSION2, client_id="acks", protocol=protocol)
    got: list[Any] = []
    client.on_publish = lambda _c, _u, mid, rc, _p: got.append((mid, rc))
    info = client.publish("t", b"image", qos=1)
    body = info.mid.to_bytes(2, "big") + tail
    client._in_packet = {"command": 0x40, "packet": body, "remaining_length": len(body)}
    assert client._handle_pubackcomp("PUBACK") == mqtt.MQTT_ERR_SUCCESS
    assert len(got) == 1 and got[0][0] == info.mid and got[0][1] == reason
    assert got[0][1].is_failure == (reason >= 0x80)
    assert (got[0][1] is SHARED.get(reason)) == read_here, "read by the wrong reader"
    assert not client._out_messages, "the publish is still waiting for its acknowledgement"
