"""Test helpers shared by the whole suite: polling waits and a real MQTT client that records what it sees.

Tests never sleep a fixed time: they wait for a condition with a deadline (`wait_for`). Deadlines are
generous (10-20 s) because the suite runs on loaded 2-core machines; a passing test never waits them out.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from engine.cpus import parse_cpu_list
from engine.mqtt.address import BrokerAddress

DEADLINE = 15.0
"""Default deadline in seconds for anything a test waits for."""

NO_MOSQUITTO = "mosquitto is not installed (apt-get install mosquitto mosquitto-clients)"
"""Skip reason for tests that need the mosquitto binary."""

T = TypeVar("T")


SMALL_PACKET = 65_536  # the maximum packet size of the small_packet_mosquitto fixture (conftest.py)
TINY_PACKET = 2_048  # that of the tiny_packet_mosquitto fixture: under what the console learns (oversize.FLOOR)


def wait_for(
    predicate: Callable[[], T],
    timeout: float = DEADLINE,
    interval: float = 0.02,
    message: str | Callable[[], str] = "condition not met",
) -> T:
    """Poll `predicate` until it returns something truthy and return that; AssertionError on timeout.

    `message` may be a callable, evaluated only on timeout (to show the state that was wrong).
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout:g} s: {text}")
        time.sleep(interval)


@contextlib.contextmanager
def started(role: Any, timeout: float = 30.0) -> Iterator[Any]:
    """An in-process role (engine.roles) started and ready (connected, subscribed); stopped at the end."""
    role.start()
    try:
        assert role.wait_ready(timeout), role.last_error
        yield role
    finally:
        role.stop()


class Message(NamedTuple):
    """One message a probe received."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


_ids = itertools.count(1)


def _protocol(protocol: int | MQTTProtocolVersion) -> MQTTProtocolVersion:
    return MQTTProtocolVersion(int(protocol))


def make_client(
    address: BrokerAddress,
    client_id: str | None = None,
    protocol: int | MQTTProtocolVersion = MQTTProtocolVersion.MQTTv311,
    clean: bool = True,
) -> mqtt.Client:
    """A paho 2.x client set up from `address` (credentials, TLS) but not connected."""
    protocol = _protocol(protocol)
    client_id = client_id or f"test-{os.getpid()}-{next(_ids)}"
    if protocol == MQTTProtocolVersion.MQTTv5:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    else:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol, clean_session=clean
        )
    if address.username is not None:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        client.tls_set(ca_certs=address.cafile, certfile=address.certfile, keyfile=address.keyfile)
    return client


def try_connect(
    address: BrokerAddress,
    protocol: int | MQTTProtocolVersion = MQTTProtocolVersion.MQTTv311,
    timeout: float = DEADLINE,
) -> ReasonCode | str:
    """Connect once and disconnect; return the CONNACK reason code, or a string if there was none.

    `result.is_failure` tells a refusal; a string means the connection failed before any CONNACK
    (e.g. a TLS handshake or TCP error): also a refusal.
    """
    client = make_client(address, protocol=protocol)
    done = threading.Event()
    outcome: list[ReasonCode | str] = []

    def on_connect(_c: mqtt.Client, _u: Any, _flags: Any, reason: ReasonCode, _props: Any) -> None:
        outcome.append(reason)
        done.set()

    def on_disconnect(_c: mqtt.Client, _u: Any, _flags: Any, reason: ReasonCode, _props: Any) -> None:
        if not done.is_set():
            outcome.append(f"disconnected before CONNACK: {reason}")
            done.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    try:
        client.connect(address.host, address.port, keepalive=30)
    except OSError as exc:  # ssl.SSLError is an OSError
        return f"connect failed: {exc}"
    client.loop_start()
    try:
        if not done.wait(timeout):
            return "no answer from the broker"
        return outcome[0]
    finally:
        client.disconnect()
        client.loop_stop()


class MqttProbe:
    """A real paho-mqtt 2.x client that subscribes to topic filters and records every message.

    Subscriptions are renewed on every (re)connect, so a probe follows a broker restart. The
    constructor returns once the broker acknowledged the subscriptions; a refused connection or
    subscription raises AssertionError.
    """

    def __init__(
        self,
        address: BrokerAddress,
        topics: str | Iterable[str] = (),
        protocol: int | MQTTProtocolVersion = MQTTProtocolVersion.MQTTv311,
        qos: int = 1,
        client_id: str | None = None,
        clean: bool = True,
        timeout: float = DEADLINE,
    ) -> None:
        """`clean=False` keeps the session on the broker (3.1.1 clean session off; MQTT 5 clean start
        off with a one-hour session expiry): give a fixed `client_id` to resume it."""
        self.address = address
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        self.qos = qos
        self.timeout = timeout
        self._lock = threading.Lock()
        self._messages: list[Message] = []
        self._subscribed = threading.Event()
        self._connected = threading.Event()
        self._refused: str | None = None
        self._sub_mid: int | None = None
        self._closed = False
        self.client = make_client(address, client_id=client_id, protocol=protocol, clean=clean)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.05, 1)
        if _protocol(protocol) == MQTTProtocolVersion.MQTTv5:
            props = None
            if not clean:  # a durable MQTT 5 session needs an expiry, else it ends with the connection
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = 3600
            self.client.connect(address.host, address.port, keepalive=30, clean_start=clean, properties=props)
        else:
            self.client.connect(address.host, address.port, keepalive=30)
        self.client.loop_start()
        try:
            wait_for(
                lambda: self._refused or (self._connected.is_set() and self._subscribed.is_set()),
                timeout,
                message=f"probe could not connect and subscribe to {self.topics} at {address.url}",
            )
            if self._refused:
                raise AssertionError(f"probe refused by {address.url}: {self._refused}")
        except BaseException:
            self.close()
            raise

    # ---- paho callbacks (network thread) ------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        if reason.is_failure:
            self._refused = str(reason)
            return
        self._connected.set()
        if self.topics:
            result, mid = client.subscribe([(topic, self.qos) for topic in self.topics])
            self._sub_mid = mid
        else:
            self._subscribed.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, _reason: ReasonCode, _p: Any) -> None:
        self._connected.clear()

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, mid: int, reasons: list[ReasonCode], _p: Any) -> None:
        if mid != self._sub_mid:
            return
        failed = [str(r) for r in reasons if r.is_failure]
        if failed:
            self._refused = f"subscription refused: {', '.join(failed)}"
        else:
            self._subscribed.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self._messages.append(Message(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain)))

    # ---- test API ------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def messages(self, topic: str | None = None) -> list[Message]:
        """A copy of the messages so far; `topic` may be a filter with + and #."""
        with self._lock:
            found = list(self._messages)
        if topic is None:
            return found
        return [m for m in found if mqtt.topic_matches_sub(topic, m.topic)]

    def wait_count(self, n: int, timeout: float = DEADLINE, topic: str | None = None) -> list[Message]:
        """Wait until at least n messages (matching `topic`) arrived; return them all."""
        wait_for(
            lambda: len(self.messages(topic)) >= n,
            timeout,
            message=lambda: f"probe on {self.topics} got {len(self.messages(topic))} of {n} messages"
            + (f" on {topic}" if topic else ""),
        )
        return self.messages(topic)

    def wait_connected(self, timeout: float = DEADLINE) -> None:
        wait_for(self._connected.is_set, timeout, message=f"probe not connected to {self.address.url}")

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()

    def publish(
        self, topic: str, payload: bytes | str = b"", qos: int = 0, retain: bool = False,
        timeout: float = DEADLINE,
    ) -> None:
        """Publish and wait until paho sent it (QoS 0) or the broker acknowledged it (QoS 1, 2)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise AssertionError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise AssertionError(f"publish to {topic} not completed within {timeout:g} s")

    def close(self) -> None:
        """Disconnect and stop the network thread; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> MqttProbe:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def process_alive(pid: int) -> bool:
    """True if process `pid` exists and is not a zombie (a dead child nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if a server could listen on host:port now (with SO_REUSEADDR, as brokers bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


async def pilot_until(pilot: Any, predicate: Callable[[], T], message: str | Callable[[], str],
                      timeout: float = 30.0) -> T:
    """Let a Textual app under Pilot run until `predicate()` is truthy; AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {message() if callable(message) else message}")
        await pilot.pause(0.05)


async def burst(app: Any, *keys: str) -> None:
    """Keys as the terminal delivers a burst (a paste, a fast typist, `tmux send-keys r 2 5 Enter`): the driver
    queues every key of one read on the app before the app handles the first. Pilot's press waits for the app
    to be idle after each key, so it never shows what a burst does. `keys` are Textual key names."""
    import unicodedata

    from textual import events
    from textual.keys import REPLACED_KEYS, _character_to_key, _get_unicode_name_from_key

    driver = app._driver
    assert driver is not None
    for key in keys:  # each event made as Pilot's press makes it (App._press_keys), without its waits
        if len(key) == 1 and not key.isalnum():
            key = _character_to_key(key)
        try:
            char: str | None = unicodedata.lookup(_get_unicode_name_from_key(REPLACED_KEYS.get(key, key)))
        except KeyError:
            char = key if len(key) == 1 else None
        event = events.Key(key, char)
        event.set_sender(app)
        driver.send_message(event)


def check_latency_parts(report: dict) -> None:
    """The latency's three parts (to the worker, in it, to the collector) add up to it, result by result."""
    parts = report["latency_parts_ms"]
    assert set(parts) == {"to_worker", "in_worker", "to_collector"}
    assert all(p["p50"] is not None and p["p50"] >= 0 for p in parts.values()), parts
    total = sum(p["mean"] for p in parts.values())
    assert abs(total - report["latency_ms"]["mean"]) <= 0.01 + 0.001 * total, (total, report["latency_ms"])


def allowed_cpus(pid: int | str) -> list[frozenset[int]]:
    """Each thread's CPUs, as the kernel reports them (Cpus_allowed_list)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                found.append(parse_cpu_list(line.split(":", 1)[1].strip()))
    return found


def record_notifications(app: Any) -> list[str]:
    """Every notification the console app shows from now on, as text."""
    seen: list[str] = []
    notify = app.notify

    def recording(message: str, *args: Any, **kwargs: Any) -> None:
        seen.append(str(message))
        notify(message, *args, **kwargs)

    app.notify = recording
    return seen
