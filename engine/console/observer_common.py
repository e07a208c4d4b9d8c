"""What the two console models share: their identity and the checks made before anything is sent.

`Observer` (in this process) and `ObserverProcess` (the same observer in a child process) both check a
command, a publish or a filter the same way and say "not connected" in the same words, at once and in
the console's process, so that a mistake is answered before anything goes over a pipe or the broker.
"""

from __future__ import annotations

import os
import socket
from typing import Self

from engine.console.publish_verdicts import size_text
from engine.console.snapshot import Connection
from engine.console.topic_filters import validate_topic, validate_watch_filter
from engine.errors import BrokerError, ConfigError
from engine.mqtt.address import BrokerAddress
from engine.mqtt.client import publish_packet_size
from engine.topics import ROLES, Topics, sanitize_id


def default_client_id() -> str:
    host = socket.gethostname().split(".")[0]
    return sanitize_id(f"console-{host}-{os.getpid()}-{os.urandom(2).hex()}")


def check_role(role: str, client_id: str | None = None) -> None:
    """ConfigError unless `role` is a role and `client_id` (when given) an id a control topic can name."""
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
    if client_id is not None and sanitize_id(client_id) != client_id:
        # the control topic would name another role: mnist-tui's roles have such ids only
        raise ConfigError(f"{role} {client_id} cannot be steered: a role's id is at most 64 letters, digits, "
                          "'_', '.' or '-'")


def check_publish(topic: str, payload: bytes | str, qos: int, connection: Connection | None = None) -> bytes:
    """The payload's bytes, once topic and QoS are valid and the message fits in what the broker takes: the
    largest packet its CONNACK said (MQTT 5), or less than a packet it closed the connection on (MQTT 3.1.1,
    `connection.closed_on`: else `HeldBack`). ConfigError otherwise. A broker closes the connection on a packet
    larger than its maximum, and a QoS 1 or 2 one was sent again at each reconnect (engine/console/oversize.py)."""
    validate_topic(topic)
    if qos not in (0, 1, 2):
        raise ConfigError(f"QoS must be 0, 1 or 2, not {qos!r}")
    data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
    if connection is None:
        return data
    max_packet, closed_on = connection.max_packet, connection.closed_on
    if max_packet is not None and (size := publish_packet_size(topic, len(data), qos)) > max_packet:
        raise ConfigError(f"the broker takes packets of at most {max_packet:,} bytes: this message makes one of "
                          f"{size:,} ({size_text(len(data))} of payload)")
    if closed_on is not None and (size := publish_packet_size(topic, len(data), qos, protocol=4)) >= closed_on:
        raise HeldBack(f"the broker closed the connection on a packet of {closed_on:,} bytes, too large for it or "
                       f"refused by it (MQTT 3.1.1 does not say its maximum packet size): this message makes one "
                       f"of {size:,} ({size_text(len(data))} of payload)")
    return data


class HeldBack(ConfigError):
    """A message as large as one the broker closed the connection on (MQTT 3.1.1): held back, as a guess.

    `publish(..., forget_limit=True)` sends it all the same (engine/console/oversize.py)."""


def check_filter(filter_text: str) -> str:
    """A new inspector filter, stripped and validated (ConfigError on a bad one)."""
    return validate_watch_filter(filter_text.strip())


class ObserverCommon:
    """Identity, filter and the "not connected" answer of a console model; `start`/`stop` are the subclass's."""

    def __init__(self, address: BrokerAddress, topics: Topics | None, filter: str, client_id: str | None,
                 max_results: int) -> None:
        self.address = address
        self.topics = topics or Topics()
        self.client_id = client_id or default_client_id()
        self.max_results = max_results
        self._filter = validate_watch_filter(filter)

    @property
    def filter(self) -> str:
        return self._filter

    def not_connected(self) -> BrokerError:
        return BrokerError(f"not connected to the broker at {self.address.url}: nothing was sent")

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
