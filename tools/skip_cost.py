"""What skipping an image costs the worker's network thread, per image: `python -m tools.skip_cost`.

A benchmark, not a test. Feeds one QoS 1 MQTT 5 PUBLISH packet (a dataset digit with its metadata, a
minute old) to a FastClient N times, without a broker, three ways: `run`, a read buffer of 500 such
packets at a time, as one `recv` brings them in (what `--max-wait` does now: skipped as the client
decodes each, their PUBACKs queued as one packet); `skip_when`, one packet at a time through the packet
handler (each PUBACK queued on its own); and through paho's dispatch to an `on_message` that makes the
same check and acknowledges. The PUBACKs are queued as in a connected client (and dropped between
rounds: there is no socket). Prints microseconds of thread CPU per image for each, best of `--rounds`.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import paho.mqtt.client as mqtt

from engine.digits.dataset import load_dataset
from engine.mqtt.address import BrokerAddress
from engine.mqtt.client import make_client
from engine.mqtt.fastclient import payload_of
from engine.protocol import embed_meta, published_at
from engine.settings import Settings


def _packet(payload: bytes, mid: int) -> bytearray:
    topic = b"mnist"
    return bytearray(len(topic).to_bytes(2, "big") + topic + mid.to_bytes(2, "big") + b"\x00" + payload)


def _too_old(payload: bytes, oldest: float) -> bool:
    t = published_at(payload)
    return t is not None and t < oldest


def _run(client: Any, packet: bytearray, n: int) -> float:
    t0 = time.thread_time()
    for _ in range(n):
        client._in_packet["command"] = 0x32  # PUBLISH, QoS 1
        client._in_packet["packet"] = packet
        client._handle_publish()
        if len(client._out_packet) > 1000:
            client._out_packet.clear()
    client._out_packet.clear()
    return (time.thread_time() - t0) / n * 1e6


def _run_reads(client: Any, packet: bytearray, n: int, per_read: int = 500) -> float:
    """n packets handed to the client's run loop per_read at a time, as whole reads bring them in."""
    header = bytes([0x32]) + _length(len(packet))
    chunk = (header + bytes(packet)) * per_read
    t0 = time.thread_time()
    for _ in range(n // per_read):
        client._rbuf += chunk
        client._read_publishes(None)
        client._out_packet.clear()
    return (time.thread_time() - t0) / (n // per_read * per_read) * 1e6


def _length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.skip_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sample = load_dataset(Settings().dataset)[0]
    payload = embed_meta(sample.png, {"id": "x-1", "label": sample.label, "t": time.time() - 60, "src": "x"})
    packet = _packet(payload, 7)
    client = make_client(BrokerAddress("127.0.0.1", 1883), "skip-cost", protocol=5, manual_ack=True)
    client._protocol = mqtt.MQTTv5

    def on_message(c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:  # the check in the role's callback
        if _too_old(payload_of(msg), time.time() - 1.0):
            with c.one_wakeup(wake_at_end=False):
                c.ack(msg.mid, msg.qos)

    client._sock = client._rbuf_sock = object()  # "connected": the run loop reads on while the socket is its own
    client._thread = object()  # queued packets wait for a network thread (there is none) instead of being written
    figures: dict[str, list[float]] = {"run": [], "skip_when": [], "on_message": []}
    for _ in range(args.rounds):
        client.on_message = None
        client.skip_when = lambda p: _too_old(p, time.time() - 1.0)
        figures["run"].append(_run_reads(client, packet, args.images))
        client.skip_when = lambda p: _too_old(p, time.time() - 1.0)
        figures["skip_when"].append(_run(client, packet, args.images))
        client.skip_when = None
        client.on_message = on_message
        figures["on_message"].append(_run(client, packet, args.images))
    for name, values in figures.items():
        print(f"{name:>10}: {min(values):6.2f} us per image (rounds: {', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
