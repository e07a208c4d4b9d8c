"""FastClient joins queued packets that paho does nothing with once written (engine/mqtt/fastclient.py).

Packets are queued with paho's own `_packet_queue` on a client that is not connected (so nothing is
written meanwhile), then joined: the result does not depend on when a network thread happens to run.
The integration tests (tests/integration/test_fastclient.py) check that joined writes deliver every
message once, in order, with every info completed.
"""

from __future__ import annotations

import struct

import paho.mqtt.client as mqtt
from paho.mqtt.client import CallbackAPIVersion

from engine.mqtt.fastclient import FastClient

PUBLISH, PUBACK, PUBREC, PINGREQ = 0x30, 0x40, 0x50, 0xC0


def _client() -> FastClient:
    return FastClient(CallbackAPIVersion.VERSION2, client_id="joins", protocol=mqtt.MQTTv5)


def _queue(client: FastClient, command: int, mid: int, qos: int, info: mqtt.MQTTMessageInfo | None = None) -> bytes:
    packet = struct.pack("!BBH", command | (qos << 1 if command == PUBLISH else 0), 2, mid)
    client._packet_queue(command | (qos << 1 if command == PUBLISH else 0), packet, mid, qos, info)
    return packet


def _mixed(client: FastClient) -> tuple[list[bytes], mqtt.MQTTMessageInfo]:
    info = mqtt.MQTTMessageInfo(4)
    packets = [
        _queue(client, PUBACK, 1, 1),
        _queue(client, PUBREC, 2, 1),
        _queue(client, PUBLISH, 3, 1),
        _queue(client, PUBLISH, 4, 0, info),
        _queue(client, PINGREQ, 0, 0),
        _queue(client, PUBACK, 5, 1),
    ]
    assert len(client._out_packet) == 6, "the client wrote or dropped a packet while not connected"
    return packets, info


def test_acknowledgements_and_publishes_are_joined_and_a_qos0_info_stands_for_its_publish() -> None:
    client = _client()
    packets, info = _mixed(client)
    client._coalesce_writes(qos0=True)
    out = list(client._out_packet)
    assert [bytes(p["packet"]) for p in out] == [b"".join(packets[:4]), packets[4], packets[5]]
    joined = out[0]
    assert joined["command"] == PUBLISH and joined["qos"] == 0 and joined["pos"] == 0
    assert joined["to_process"] == len(joined["packet"])
    assert not info.is_published()
    joined["info"]._set_as_published()  # what paho's _packet_write does once the joined packet is written
    assert info.is_published()


def test_without_qos0_joining_a_qos0_publish_goes_alone_and_the_rest_is_a_puback() -> None:
    client = _client()
    packets, _info = _mixed(client)
    client._coalesce_writes(qos0=False)  # on_publish set: each QoS 0 publish needs its own callback
    out = list(client._out_packet)
    assert [bytes(p["packet"]) for p in out] == [b"".join(packets[:3]), packets[3], packets[4], packets[5]]
    assert out[0]["command"] == PUBACK and out[0]["info"] is None  # paho does nothing with it once written


def test_a_partly_written_packet_is_never_joined_and_long_runs_are_cut_at_64_kib() -> None:
    client = _client()
    first = _queue(client, PUBACK, 1, 1)
    _queue(client, PUBACK, 2, 1)
    client._out_packet[0]["pos"] = 2  # half of it already sent: paho finishes it first
    client._out_packet[0]["to_process"] = 2
    client._coalesce_writes(qos0=True)
    assert [p["packet"] for p in client._out_packet] == [first, struct.pack("!BBH", PUBACK, 2, 2)]

    client = _client()
    for mid in range(1, 20_001):
        _queue(client, PUBACK, mid, 1)
    client._coalesce_writes(qos0=True)
    out = list(client._out_packet)
    assert all(len(p["packet"]) <= 65536 + 4 for p in out)
    assert b"".join(bytes(p["packet"]) for p in out) == b"".join(
        struct.pack("!BBH", PUBACK, 2, mid) for mid in range(1, 20_001))
    assert len(out) == -(-20_000 * 4 // 65536), "the whole run is joined, in 64 KiB packets"
