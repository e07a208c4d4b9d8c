"""A read-only view of the pipeline from the broker: every role's retained status, and optionally every result.

Used by `mnist-tui metrics` and `mnist-tui health`, which watch roles wherever they run, exactly as the
console does ("local is remote"). Broker content is untrusted: a status that is not a JSON object is
counted as malformed and otherwise ignored; callers validate each field they use.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from engine.mqtt.address import BrokerAddress
from engine.mqtt.fastclient import payload_of
from engine.mqtt.subscriber import Subscriber
from engine.settings import default_client_id
from engine.topics import Topics

StatusHandler = Callable[[str, str, "dict[str, Any] | None", bool], None]
"""(role, client id, status or None when cleared, retained flag)"""
ResultHandler = Callable[[bytes, float], None]
"""(payload, arrival time in Unix seconds)"""


class StatusFeed:
    """One MQTT client subscribed to the status topics (and the result topic when `on_result` is given).

    paho's network thread calls the handlers: they must be quick. The client reconnects on its own and
    subscribes again on connect (engine/mqtt/subscriber.py), so the retained statuses come again after
    an outage.
    """

    def __init__(self, address: BrokerAddress, topics: Topics, *, protocol: int, on_status: StatusHandler,
                 on_result: ResultHandler | None = None, role: str = "+", name: str = "metrics") -> None:
        self.address = address
        self.topics = topics
        self.on_status = on_status
        self.on_result = on_result
        self.malformed = 0
        self.client_id = default_client_id(name)
        # QoS 0: a status lost on the way is replaced a second later, and QoS 0 keeps the order sync() needs
        filters = [(topics.status_filter(role), 0)]
        if on_result is not None:
            filters.append((topics.results, 0))
        self._sub = Subscriber(address, self.client_id, filters, self._on_message, protocol=protocol)
        self.connected = self._sub.connected

    def start(self, timeout: float = 10.0) -> None:
        """Connect and subscribe; BrokerError with one line when that fails within `timeout`."""
        self._sub.start(timeout)

    def sync(self, timeout: float = 10.0) -> bool:
        """Wait until every retained status the broker held at subscription has arrived; False on timeout.

        The statuses come at QoS 0, which the broker writes in order right after its SUBACK; the answer
        to one more subscription (to a topic nobody uses) therefore comes after all of them.
        """
        result, mid = self._sub.client.subscribe(f"{self.topics.status_prefix}/_sync/{self.client_id}")
        if result != mqtt.MQTT_ERR_SUCCESS or mid is None:
            return False
        return self._sub.acknowledged(mid, timeout)

    def stop(self) -> None:
        self._sub.stop()

    def _on_message(self, msg: mqtt.MQTTMessage) -> None:
        try:
            self._handle(msg)
        except Exception:  # a handler's bug must not end the network thread: count it and go on
            self.malformed += 1

    def _handle(self, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self.topics.results:
            if self.on_result is not None:
                self.on_result(payload_of(msg), time.time())
            return
        who = self.topics.parse_status(msg.topic)
        if who is None:
            return
        if not msg.payload:  # a cleared status: the role is gone from every view
            self.on_status(who[0], who[1], None, bool(msg.retain))
            return
        try:
            status = json.loads(msg.payload)
        except ValueError:
            status = None
        if not isinstance(status, dict):
            self.malformed += 1
            return
        self.on_status(who[0], who[1], status, bool(msg.retain))


def target_from_args(args: Any) -> tuple[BrokerAddress, Topics]:
    """The broker to watch (--broker, else mosquitto's default mqtt://127.0.0.1:1883) and the topic names."""
    from engine.options import address_from_args, settings_from_args

    address = address_from_args(args) or BrokerAddress.parse("mqtt://127.0.0.1:1883")
    return address, settings_from_args(args).topics
