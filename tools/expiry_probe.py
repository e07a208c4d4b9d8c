"""Does the broker drop expired messages queued for an online subscriber? `python -m tools.expiry_probe`.

A probe, not a test. On an embedded mosquitto it connects a slow MQTT 5 subscriber (receive maximum 10,
about 100 messages/s), publishes `--count` QoS 1 messages with a message expiry of `--expiry` seconds,
waits, and prints how many were delivered later than the expiry allows and which expiry interval they
carried. docs/PERFORMANCE.md quotes it for mosquitto 2.0.11.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections import Counter
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from engine.mqtt.broker import EmbeddedBroker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.expiry_probe", description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="messages to publish (default 1000)")
    parser.add_argument("--expiry", type=int, default=1, help="message expiry interval, seconds (default 1)")
    parser.add_argument("--wait", type=float, default=6.0, help="seconds to keep receiving (default 6)")
    args = parser.parse_args(argv)
    with EmbeddedBroker(kind="mosquitto") as broker:
        address = broker.address
        got: list[tuple[float, Any]] = []
        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, "expiry-probe-slow", protocol=mqtt.MQTTv5)
        connect = Properties(PacketTypes.CONNECT)
        connect.ReceiveMaximum = 10

        def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
            got.append((time.time(), getattr(msg.properties, "MessageExpiryInterval", None)))
            time.sleep(0.01)  # a slow consumer: about 100 messages/s

        subscribed = threading.Event()
        sub.on_message = on_message
        sub.on_subscribe = lambda *_a: subscribed.set()
        sub.connect(address.host, address.port, properties=connect)
        sub.loop_start()
        sub.subscribe("expiry-probe", qos=1)
        subscribed.wait(5)
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, "expiry-probe-pub", protocol=mqtt.MQTTv5)
        pub.connect(address.host, address.port)
        pub.loop_start()
        props = Properties(PacketTypes.PUBLISH)
        props.MessageExpiryInterval = args.expiry
        t0 = time.time()
        infos = [pub.publish("expiry-probe", str(i).encode(), qos=1, properties=props) for i in range(args.count)]
        infos[-1].wait_for_publish(10)
        deadline = time.monotonic() + args.wait
        while time.monotonic() < deadline:
            time.sleep(0.1)
        late = [(t - t0, e) for t, e in got if t - t0 > args.expiry + 0.5]
        print(f"{broker.description}: delivered {len(got)} of {args.count} within {args.wait:g} s; "
              f"{len(late)} later than {args.expiry + 0.5:g} s after publishing (expiry {args.expiry} s), "
              f"carrying expiry intervals {dict(Counter(e for _, e in late))}")
        for client in (sub, pub):
            client.disconnect()
            client.loop_stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
