"""FastClient's packet ids pass over those still in flight, and its numbering of QoS 1/2 publishes for
`after_acknowledged` counts only what paho stored (engine/mqtt/fastclient.py).

On a client that is not connected paho stores QoS 1/2 publishes (to send them once connected), so the ids can
be driven to wrap without a broker.
"""

from __future__ import annotations

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.client import CallbackAPIVersion

from engine.mqtt.fastclient import FastClient


def test_after_the_ids_wrap_a_publish_does_not_take_an_id_still_in_flight() -> None:
    """paho refused a publish whose wrapped id was still unacknowledged (the result was lost), and the
    refused publish was numbered as if stored: no acknowledgement could ever release `after_acknowledged`."""
    client = FastClient(CallbackAPIVersion.VERSION2, client_id="ids", protocol=mqtt.MQTTv5)
    first = client.publish("t", b"first", qos=1)
    client._last_mid = 65535  # the next id wraps to 1, the id of `first`, still unacknowledged
    second = client.publish("t", b"second", qos=1)
    assert second.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN), mqtt.error_string(second.rc)
    assert second.mid != first.mid
    assert [m.payload for m in client._out_messages.values()] == [b"first", b"second"]
    calls: list[str] = []
    client.after_acknowledged(lambda: calls.append("both acknowledged"))
    ok, props = mqtt.ReasonCode(mqtt.PacketTypes.PUBACK), mqtt.Properties(mqtt.PacketTypes.PUBACK)
    with client._out_message_mutex:  # as paho's PUBACK handler does
        client._do_on_publish(second.mid, ok, props)
        assert calls == [], "ran with the first publish still unacknowledged"
        client._do_on_publish(first.mid, ok, props)
    assert calls == ["both acknowledged"]
    assert not client._unacked and not client._acked and not client._number_of


def test_a_dropped_publish_is_never_sent_again_and_counts_as_done() -> None:
    """`drop_outgoing`: a publish the broker closes the connection on at every send (over its maximum packet size
    on MQTT 3.1.1) leaves the queue paho sends again at each reconnect, and nothing waits for it for ever."""
    client = FastClient(CallbackAPIVersion.VERSION2, client_id="drop", protocol=mqtt.MQTTv311)
    big = client.publish("t", b"x" * 100_000, qos=1)
    small = client.publish("t", b"small", qos=1)
    calls: list[str] = []
    client.after_acknowledged(lambda: calls.append("done"))
    assert client.drop_outgoing(big.mid) and not client.drop_outgoing(big.mid)
    assert big.rc == mqtt.MQTT_ERR_CONN_LOST  # settled as a lost connection's: wait_for_publish() ends at once
    with pytest.raises(RuntimeError, match="connection was lost"):
        big.wait_for_publish(5)
    assert [m.payload for m in client._out_messages.values()] == [b"small"] and client.unacknowledged() == 1
    assert calls == []
    with client._out_message_mutex:  # as paho's PUBACK handler does
        client._do_on_publish(small.mid, mqtt.ReasonCode(mqtt.PacketTypes.PUBACK), None)
    assert calls == ["done"] and client.unacknowledged() == 0
    assert not client._unacked and not client._acked and not client._number_of
    assert not client.drop_outgoing(client.publish("t", b"q0", qos=0).mid), "QoS 0 is not kept to drop"
