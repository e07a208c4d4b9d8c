"""engine.mqtt.fastclient: the same messages as paho's own Client, through a real mosquitto.

The reference on the other side of every test is an unmodified paho client (helpers.MqttProbe /
helpers.make_client), so a difference in what arrives is a bug of FastClient.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import socket
import struct
import termios
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from helpers import MqttProbe, make_client, wait_for
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from engine.mqtt.address import BrokerAddress
from engine.mqtt.broker import EmbeddedBroker, default_config_path, free_port
from engine.mqtt.client import connect_kwargs
from engine.mqtt.client import make_client as make_fast_client
from engine.mqtt.fastclient import FastClient


class Receiver:
    """A FastClient subscribed to `topic`, recording every message it gets."""

    def __init__(self, broker: EmbeddedBroker, topic: str, protocol: int, qos: int = 0, **kwargs: Any) -> None:
        self.client = make_fast_client(broker.address, f"fast-recv-{protocol}-{qos}", protocol=protocol, **kwargs)
        assert isinstance(self.client, FastClient)
        self.messages: list[mqtt.MQTTMessage] = []
        subscribed = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=qos)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = lambda _c, _u, msg: self.messages.append(msg)
        self.client.connect(broker.address.host, broker.address.port, **connect_kwargs(self.client))
        self.client.loop_start()
        wait_for(subscribed.is_set, message="FastClient never subscribed")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_per_topic_callbacks_and_errors_in_on_message_as_paho_has_them(mosquitto_broker: EmbeddedBroker) -> None:
    """FastClient calls on_message directly while no per-topic callback is added; with one, paho's lookup
    decides again. An exception in on_message is logged, and raised only without suppress_exceptions."""
    receiver = Receiver(mosquitto_broker, "cb/#", 5)
    client = receiver.client
    sender = make_client(mosquitto_broker.address)
    sender.connect(mosquitto_broker.address.host, mosquitto_broker.address.port)
    sender.loop_start()
    filtered: list[str] = []
    logged: list[str] = []
    try:
        sender.publish("cb/a", b"1", qos=1).wait_for_publish(10)
        wait_for(lambda: len(receiver.messages) == 1, message=lambda: str(receiver.messages))
        client.message_callback_add("cb/b", lambda _c, _u, msg: filtered.append(msg.topic))
        sender.publish("cb/b", b"2", qos=1).wait_for_publish(10)
        sender.publish("cb/a", b"3", qos=1).wait_for_publish(10)
        wait_for(lambda: len(receiver.messages) == 2 and filtered == ["cb/b"],
                 message=lambda: f"{[m.topic for m in receiver.messages]} {filtered}")
        client.message_callback_remove("cb/b")
        sender.publish("cb/b", b"4", qos=1).wait_for_publish(10)
        wait_for(lambda: len(receiver.messages) == 3, message=lambda: str(receiver.messages))
        assert [m.payload for m in receiver.messages] == [b"1", b"3", b"4"] and filtered == ["cb/b"]

        def fail(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
            receiver.messages.append(msg)
            raise ValueError("bad callback")

        client.on_log = lambda _c, _u, _level, text: logged.append(text)
        client.suppress_exceptions = True
        client.on_message = fail
        sender.publish("cb/a", b"5", qos=1).wait_for_publish(10)
        sender.publish("cb/a", b"6", qos=1).wait_for_publish(10)
        wait_for(lambda: len(receiver.messages) == 5, message=lambda: str(receiver.messages))  # the loop lives on
        assert sum("bad callback" in text for text in logged) == 2, logged
        with pytest.raises(ValueError):
            client.suppress_exceptions = False
            message = mqtt.MQTTMessage(topic=b"cb/a")
            client._handle_on_message(message)
    finally:
        sender.disconnect()
        sender.loop_stop()
        receiver.close()


@pytest.mark.parametrize("protocol", [5, 4])
def test_many_small_and_some_large_messages_arrive_whole_and_in_order(mosquitto_broker: EmbeddedBroker,
                                                                     protocol: int) -> None:
    """Thousands of small packets share each read; packets larger than the read buffer span several."""
    receiver = Receiver(mosquitto_broker, "fast/in", protocol)
    sender = make_client(mosquitto_broker.address, protocol=protocol)
    sender.connect(mosquitto_broker.address.host, mosquitto_broker.address.port)
    sender.loop_start()
    try:
        sizes = [i % 700 for i in range(3000)]
        sizes[100] = sizes[2000] = 300_000  # several reads' worth
        sizes[1500] = 0
        payloads = [bytes([i % 251]) * n for i, n in enumerate(sizes)]
        for payload in payloads:
            sender.publish("fast/in", payload, qos=0)
        wait_for(lambda: len(receiver.messages) >= len(payloads),
                 message=lambda: f"{len(receiver.messages)} of {len(payloads)} arrived")
        assert [m.payload for m in receiver.messages] == payloads
        assert {m.topic for m in receiver.messages} == {"fast/in"}
        assert all(m.qos == 0 and not m.retain and not m.dup for m in receiver.messages)
        if protocol == 5:
            assert all(isinstance(m.properties, Properties) and m.properties.isEmpty() for m in receiver.messages)
        else:
            assert all(m.properties is None for m in receiver.messages)
    finally:
        sender.disconnect()
        sender.loop_stop()
        receiver.close()


@pytest.mark.parametrize("protocol", [5, 4])
def test_a_read_that_mixes_packets_for_the_fast_path_and_for_paho_arrives_in_order(
        mosquitto_broker: EmbeddedBroker, protocol: int) -> None:
    """Runs of QoS 0/1 publishes are handled in one loop over the read buffer; a QoS 2 publish or (MQTT 5)
    one with user properties in the middle goes to paho, and the run goes on after it: every message
    arrives once, with its QoS and properties, in order within its QoS."""
    receiver = Receiver(mosquitto_broker, "fast/mix", protocol, qos=2)
    sender = make_client(mosquitto_broker.address, protocol=protocol)
    sender.connect(mosquitto_broker.address.host, mosquitto_broker.address.port)
    sender.loop_start()
    user = Properties(PacketTypes.PUBLISH)
    user.UserProperty = [("k", "v")]
    try:
        sent: list[tuple[bytes, int, bool]] = []
        info = None
        for i in range(600):
            qos = (0, 1, 0, 2)[i % 4]
            with_user = protocol == 5 and i % 7 == 3
            payload = f"m-{i}-".encode() + b"x" * (0, 0, 200, 0, 20_000)[i % 5]  # lengths of 1, 2 and 3 bytes
            info = sender.publish("fast/mix", payload, qos=qos, properties=user if with_user else None)
            sent.append((payload, qos, with_user))
        assert info is not None
        info.wait_for_publish(10)
        wait_for(lambda: len(receiver.messages) >= len(sent),
                 message=lambda: f"{len(receiver.messages)} of {len(sent)} arrived")
        got = [(m.payload, m.qos, getattr(m.properties, "UserProperty", None) == [("k", "v")])
               for m in receiver.messages]
        # MQTT keeps order within a QoS: mosquitto holds QoS 1/2 messages back while its in-flight window to
        # the receiver is full and sends QoS 0 ones meanwhile, and paho hands a QoS 2 message over on PUBREL
        for qos in (0, 1, 2):
            assert [m for m in got if m[1] == qos] == [m for m in sent if m[1] == qos], f"QoS {qos}"
        assert len(got) == len(sent)
    finally:
        sender.disconnect()
        sender.loop_stop()
        receiver.close()


def _unread(client: mqtt.Client) -> int:
    """Bytes waiting in the client's socket, not yet read."""
    return struct.unpack("i", fcntl.ioctl(client.socket(), termios.FIONREAD, b"\0\0\0\0"))[0]


def _driven_client(cls: type[mqtt.Client], broker: EmbeddedBroker, name: str, topic: str, qos: int,
                   on_message: Callable[..., None], **durable: Any) -> mqtt.Client:
    """A client of class `cls` on its own loop (the test calls `loop`), subscribed to `topic`."""
    client = cls(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    subscribed: list[int] = []
    client.on_subscribe = lambda *_: subscribed.append(1)
    client.on_message = on_message
    client.suppress_exceptions = False
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = durable.get("session_expiry", 0)
    client.connect(broker.address.host, broker.address.port, clean_start=not durable, properties=props)
    client.subscribe(topic, qos=qos)
    _loop_until(client, lambda: bool(subscribed), "never subscribed")
    return client


def _loop_until(client: mqtt.Client, done: Callable[[], bool], message: str,
                expected: type[BaseException] | tuple[type[BaseException], ...] = ()) -> int:
    """Run `client`'s loop until `done()`; returns how often it raised `expected` (anything else fails)."""
    raised = 0
    deadline = time.monotonic() + 10
    while not done():
        assert time.monotonic() < deadline, message
        try:
            client.loop(0.02)
        except expected:
            raised += 1
    return raised


def _sent_in_one_read(broker: EmbeddedBroker, client: mqtt.Client, topic: str, payloads: list[bytes],
                      qos: int) -> None:
    """Publish `payloads` to `client` while its loop is not running, and wait until they all lie in its
    socket: its next read takes them together."""
    sender = make_client(broker.address, protocol=5)
    sender.connect(broker.address.host, broker.address.port)
    sender.loop_start()
    try:
        infos = [sender.publish(topic, p, qos=qos) for p in payloads]
        for info in infos:
            info.wait_for_publish(10)
        size = sum(2 + 2 + len(topic) + 1 + len(p) + (2 if qos else 0) for p in payloads)  # small packets
        wait_for(lambda: _unread(client) >= size, message=lambda: f"{_unread(client)} of {size} bytes came")
    finally:
        sender.disconnect()
        sender.loop_stop()


@pytest.mark.parametrize("cls", [mqtt.Client, FastClient], ids=["paho", "fast"])
def test_an_on_message_that_raises_gets_its_message_again_as_paho_does(mosquitto_broker: EmbeddedBroker,
                                                                        cls: type[mqtt.Client]) -> None:
    """Without suppress_exceptions an error in on_message leaves the loop. paho keeps that message and
    hands it over again on the next read, and acknowledges it (QoS 1) once on_message returns; FastClient,
    whose read takes the whole run of messages in one loop, does the same wherever the message falls in the
    read, and the next loop goes on with the rest, which lies in its buffer where `select` cannot see it.
    The same durable session, resumed, is sent nothing again."""
    got: list[bytes] = []

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        got.append(msg.payload)
        if msg.payload == b"bad" and got.count(b"bad") == 1:
            raise ValueError("bad message")

    name = f"fast-raise-{cls.__name__}-{os.getpid()}"
    client = _driven_client(cls, mosquitto_broker, name, "fast/raise", 1, on_message, session_expiry=60)
    payloads = [b"a", b"b", b"bad", b"c", b"d"]
    _sent_in_one_read(mosquitto_broker, client, "fast/raise", payloads, qos=1)
    raised = _loop_until(client, lambda: got[-1:] == [b"d"], f"not all arrived: {got}", expected=ValueError)
    assert got == [b"a", b"b", b"bad", b"bad", b"c", b"d"] and raised == 1
    # the broker answers a publish queued after the acknowledgements once it has them (see the skip test)
    synced = client.publish("fast/raise/sync", b"", qos=1)
    _loop_until(client, synced.is_published, "the broker never acknowledged the sync publish")
    client.disconnect()
    again: list[bytes] = []
    client = _driven_client(cls, mosquitto_broker, name, "fast/raise", 1, lambda _c, _u, m: again.append(m.payload),
                            session_expiry=60)
    _sent_in_one_read(mosquitto_broker, client, "fast/raise", [b"last"], qos=1)
    _loop_until(client, lambda: b"last" in again, "nothing after resuming the session")
    assert again == [b"last"], "a message was left unacknowledged"
    client.disconnect()


def test_after_on_message_disconnects_nothing_more_of_the_read_is_handed_over(mosquitto_broker: EmbeddedBroker) -> None:
    """A callback that calls disconnect() gets no further message, though the rest of the read lies in the
    buffer (paho's own client reads a packet a call and hands over at most the one it reads before writing
    the DISCONNECT; FastClient handed over the whole read)."""
    got: list[bytes] = []

    def on_message(c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        got.append(msg.payload)
        if msg.payload == b"stop":
            c.disconnect()

    disconnected: list[int] = []
    client = _driven_client(FastClient, mosquitto_broker, f"fast-stop-{os.getpid()}", "fast/stop", 0, on_message)
    client.on_disconnect = lambda *_: disconnected.append(1)
    _sent_in_one_read(mosquitto_broker, client, "fast/stop", [b"a", b"b", b"stop", b"c", b"d"], qos=0)
    _loop_until(client, lambda: bool(disconnected), f"never disconnected; got {got}")
    assert got == [b"a", b"b", b"stop"]


def test_shedding_that_starts_within_a_read_sheds_the_rest_of_it(mosquitto_broker: EmbeddedBroker) -> None:
    """`shed_when()` is asked before each QoS 0 message of a run: once it says yes (a worker's queue just
    filled), the rest of the read is dropped by length, not handed to on_message one by one."""
    got: list[bytes] = []
    client = _driven_client(FastClient, mosquitto_broker, f"fast-shed-{os.getpid()}", "fast/shed", 0,
                            lambda _c, _u, m: got.append(m.payload))
    assert isinstance(client, FastClient)
    client.shed_when = lambda: len(got) >= 3
    payloads = [bytes([i]) * 100 for i in range(60)]
    _sent_in_one_read(mosquitto_broker, client, "fast/shed", payloads, qos=0)
    _loop_until(client, lambda: len(got) + client.shed >= len(payloads),
                f"{len(got)} handed over, {client.shed} shed")
    assert got == payloads[:3] and client.shed == 57
    client.disconnect()


@pytest.mark.parametrize("protocol", [5, 4])
def test_count_only_is_asked_about_plain_qos0_publishes_and_gets_their_topic_and_payload(
        mosquitto_broker: EmbeddedBroker, protocol: int) -> None:
    """`count_only(topic, payload)` sees each QoS 0 message that is not retained, with its exact topic and
    payload (MQTT 5 properties, short and long, skipped); what it takes is not decoded, the rest is, and a
    `count_only` that raises leaves its message to be decoded. QoS 1 and retained messages are never asked."""
    probe = MqttProbe(mosquitto_broker.address)
    probe.publish("fast/count/a", b"retained", qos=0, retain=True)  # comes with its retain flag on subscribing
    asked: list[tuple[bytes, bytes]] = []

    def count_only(topic: bytes, payload: bytes) -> bool:
        asked.append((topic, payload))
        if payload == b"boom":
            raise ValueError("a bad count")
        return topic == b"fast/count/a"

    receiver = Receiver(mosquitto_broker, "fast/count/#", protocol, qos=1)
    sender = make_client(mosquitto_broker.address, protocol=protocol)
    sender.connect(mosquitto_broker.address.host, mosquitto_broker.address.port)
    sender.loop_start()
    try:
        wait_for(lambda: [m.payload for m in receiver.messages] == [b"retained"], message="no retained message")
        receiver.client.count_only = count_only
        content = Properties(PacketTypes.PUBLISH)
        content.ContentType = "application/json"
        long_props = Properties(PacketTypes.PUBLISH)
        long_props.UserProperty = [("k", "v" * 300)]  # a properties length of two bytes
        sent: list[tuple[str, bytes, int, Properties | None]] = []
        for i in range(400):
            topic = "fast/count/a" if i % 3 else "fast/count/b"
            qos = 1 if i % 5 == 4 else 0
            props = (content, long_props, None)[i // 3 % 3] if protocol == 5 else None  # on both topics
            payload = f"m-{i}-".encode() + b"x" * (0, 300, 20_000)[i % 3 if i % 7 else 2]
            sent.append((topic, payload, qos, props))
        sent.insert(200, ("fast/count/a", b"boom", 0, None))
        infos = [sender.publish(t, p, qos=q, properties=props) for t, p, q, props in sent]
        for info in infos:
            info.wait_for_publish(10)
        counted = [(t.encode(), p) for t, p, q, _ in sent if q == 0 and t == "fast/count/a" and p != b"boom"]
        decoded = {(t, p) for t, p, q, _ in sent if (t.encode(), p) not in counted}
        wait_for(lambda: len(receiver.messages) - 1 >= len(decoded) and receiver.client.counted_only >= len(counted),
                 message=lambda: f"{len(receiver.messages) - 1} of {len(decoded)} decoded, "
                                 f"{receiver.client.counted_only} of {len(counted)} counted")
        assert [(t, p) for t, p in asked if t == b"fast/count/a" and p != b"boom"] == counted
        assert len(asked) == len(set(asked)), "asked twice about a message (one that paho decodes)"
        assert receiver.client.counted_only == len(counted)
        got = [(m.topic, m.payload, m.qos) for m in receiver.messages[1:]]
        for qos in (0, 1):  # MQTT keeps order within a QoS
            expected = [(t, p, q) for t, p, q, _ in sent if q == qos and (t, p) in decoded]
            assert [m for m in got if m[2] == qos] == expected
        assert len(got) == len(decoded) and (b"fast/count/a", b"boom") in asked
        qos1 = {p for _t, p, q, _ in sent if q == 1}
        assert not any(p in qos1 or p == b"retained" for _t, p in asked)  # never asked about those
    finally:
        probe.publish("fast/count/a", b"", qos=1, retain=True)
        probe.close()
        sender.disconnect()
        sender.loop_stop()
        receiver.close()


def test_a_read_pause_takes_messages_that_trickle_in_by_the_handful(mosquitto_broker: EmbeddedBroker) -> None:
    """With `read_pause`, a read that emptied the socket is followed by a pause, so messages sent a few
    milliseconds apart are taken in a few reads, not one each; every one arrives, in order, and a publish
    from another thread still goes out."""
    receiver = Receiver(mosquitto_broker, "fast/pause", 5)
    receiver.client.read_pause = 0.2
    reads = 0
    recv = receiver.client._sock_recv

    def counting(bufsize: int) -> bytes:
        nonlocal reads
        if not receiver.client._rbuf:
            reads += 1
        return recv(bufsize)

    receiver.client._sock_recv = counting  # type: ignore[method-assign]
    sender = make_client(mosquitto_broker.address, protocol=5)
    sender.connect(mosquitto_broker.address.host, mosquitto_broker.address.port)
    sender.loop_start()
    probe = MqttProbe(mosquitto_broker.address, "fast/pause/out")
    try:
        payloads = [f"m-{i}".encode() for i in range(40)]
        for payload in payloads:
            sender.publish("fast/pause", payload, qos=0).wait_for_publish(10)
            time.sleep(0.01)  # pacing the sender, not waiting for a result
        wait_for(lambda: len(receiver.messages) >= len(payloads),
                 message=lambda: f"{len(receiver.messages)} of {len(payloads)} arrived")
        assert [m.payload for m in receiver.messages] == payloads
        assert reads <= len(payloads) // 2, f"{reads} reads for {len(payloads)} messages sent 10 ms apart"
        receiver.client.publish("fast/pause/out", b"out", qos=1).wait_for_publish(10)
        wait_for(lambda: [m.payload for m in probe.messages()] == [b"out"], message="the publish did not go out")
    finally:
        probe.close()
        sender.disconnect()
        sender.loop_stop()
        receiver.close()


def test_properties_retain_and_qos1_are_decoded_as_paho_does(mosquitto_broker: EmbeddedBroker) -> None:
    """Messages with MQTT 5 properties take paho's own decoder; flags and QoS 1 come through either way."""
    sender = make_client(mosquitto_broker.address, protocol=5)
    sender.connect(mosquitto_broker.address.host, mosquitto_broker.address.port)
    sender.loop_start()
    try:
        sender.publish("fast/retained", b"kept", qos=1, retain=True).wait_for_publish(10)
        receiver = Receiver(mosquitto_broker, "fast/#", 5, qos=1)
        try:
            wait_for(lambda: receiver.messages, message="the retained message never came")
            retained = receiver.messages[0]
            assert (retained.topic, retained.payload, retained.retain, retained.qos) == ("fast/retained", b"kept",
                                                                                          True, 1)
            props = Properties(PacketTypes.PUBLISH)
            props.UserProperty = [("k", "v")]
            props.ContentType = "image/png"
            sender.publish("fast/props", b"with", qos=1, properties=props).wait_for_publish(10)
            sender.publish("fast/plain", b"without", qos=1).wait_for_publish(10)
            wait_for(lambda: len(receiver.messages) >= 3, message="QoS 1 messages never came")
            with_props, plain = receiver.messages[1], receiver.messages[2]
            assert (with_props.payload, with_props.qos, with_props.retain) == (b"with", 1, False)
            assert with_props.properties.UserProperty == [("k", "v")]
            assert with_props.properties.ContentType == "image/png"
            assert (plain.payload, plain.qos, plain.mid > 0) == (b"without", 1, True)
            assert plain.properties.isEmpty()
        finally:
            receiver.close()
    finally:
        sender.disconnect()
        sender.loop_stop()


@contextlib.contextmanager
def _fast_and_reference(address: BrokerAddress, name: str, subscriptions: list[tuple[str, int | None]],
                        record: Callable[[str, mqtt.MQTTMessage], None]) -> Iterator[mqtt.Client]:
    """A FastClient (client id `name`) and an unmodified paho client, both MQTT 5, each subscribed at QoS 1 to
    every (filter, subscription id or None) of `subscriptions`, every message they get handed to `record` with
    "fast" or "reference"; yields an MQTT 5 sender once all subscriptions are acknowledged. All closed after."""
    fast = make_fast_client(address, name, protocol=5)
    reference = make_client(address, protocol=5)
    subscribed = threading.Event()
    acks: list[int] = []

    def on_connect(c: mqtt.Client, *_: Any) -> None:
        for filt, sub_id in subscriptions:
            props = None
            if sub_id is not None:
                props = Properties(PacketTypes.SUBSCRIBE)
                props.SubscriptionIdentifier = sub_id
            c.subscribe(filt, qos=1, properties=props)

    for who, client in (("fast", fast), ("reference", reference)):
        client.on_connect = on_connect
        client.on_subscribe = lambda *_: (acks.append(1), len(acks) == 2 * len(subscriptions) and subscribed.set())
        client.on_message = lambda _c, _u, m, who=who: record(who, m)
        client.connect(address.host, address.port, **connect_kwargs(client))
        client.loop_start()
    sender = make_client(address, protocol=5)
    sender.connect(address.host, address.port)
    sender.loop_start()
    try:
        wait_for(subscribed.is_set, message="the subscriptions were never acknowledged")
        yield sender
    finally:
        for client in (sender, fast, reference):
            client.disconnect()
            client.loop_stop()


def test_subscription_identifiers_arrive_as_paho_decodes_them(mosquitto_broker: EmbeddedBroker) -> None:
    """The console's observer asks for a subscription id with every message: the fast path reads it, and a
    message with other properties too still goes to paho's decoder. An unmodified paho client is the reference."""
    got: dict[str, list[tuple[str, bytes, list[int], list[Any]]]] = {"fast": [], "reference": []}

    def record(who: str, m: mqtt.MQTTMessage) -> None:
        got[who].append((m.topic, m.payload, sorted(getattr(m.properties, "SubscriptionIdentifier", [])),
                         getattr(m.properties, "UserProperty", [])))

    # a one- and a three-byte id
    with _fast_and_reference(mosquitto_broker.address, "fast-sid", [("sid/#", 7), ("sid/deep/+", 300_000)],
                             record) as sender:
        user = Properties(PacketTypes.PUBLISH)
        user.UserProperty = [("k", "v")]
        for i in range(200):
            sender.publish("sid/deep/x" if i % 3 == 0 else "sid/a", b"%d" % i, qos=i % 2,
                           properties=user if i % 50 == 0 else None)
        wait_for(lambda: len(got["fast"]) >= 267 and len(got["reference"]) >= 267,
                 message=lambda: f"{len(got['fast'])} and {len(got['reference'])} of 267 copies arrived")
        assert sorted(got["fast"]) == sorted(got["reference"])
        ids = {tuple(ids) for _t, _p, ids, _u in got["fast"]}
        assert ids <= {(7,), (300_000,), (7, 300_000)} and (7,) in ids and any(300_000 in i for i in ids)
        assert any(u == [("k", "v")] for *_rest, u in got["fast"])


def test_the_properties_our_roles_send_are_read_on_the_fast_path_as_paho_reads_them(
        mosquitto_broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    """A result's content type, an image's message expiry and a payload format indicator (with subscription ids
    or not) are read by FastClient itself; others (user properties, a content type that is not ASCII) still go
    to paho's decoder. Every property comes out as an unmodified paho client reads it."""
    got: dict[str, list[tuple[str, bytes, int, str]]] = {"fast": [], "reference": []}
    to_paho: list[str] = []  # topics of the messages the fast client handed to paho's decoder
    handle_publish = mqtt.Client._handle_publish

    def counting(self: mqtt.Client) -> Any:
        if isinstance(self, FastClient):
            packet = self._in_packet["packet"]
            to_paho.append(bytes(packet[2:2 + int.from_bytes(packet[:2], "big")]).decode())
        return handle_publish(self)

    monkeypatch.setattr(mqtt.Client, "_handle_publish", counting)

    def record(who: str, m: mqtt.MQTTMessage) -> None:
        values = m.properties.json()
        expiry = values.pop("MessageExpiryInterval", None)  # what is left of it: the two may differ by a second
        assert expiry is None or 3500 <= expiry <= 3600, expiry
        got[who].append((m.topic, m.payload, m.qos, repr(sorted(values.items())) + f" expiry={expiry is not None}"))

    def props(**values: Any) -> Properties:
        made = Properties(PacketTypes.PUBLISH)
        for name, value in values.items():
            setattr(made, name, value)
        return made

    fast_kinds = {"json": props(ContentType="application/json"), "expiry": props(MessageExpiryInterval=3600),
                  "format": props(PayloadFormatIndicator=1),
                  "all": props(PayloadFormatIndicator=1, MessageExpiryInterval=3600, ContentType="image/png")}
    paho_kinds = {"user": props(UserProperty=[("k", "v")]), "accent": props(ContentType="text/é"),
                  "json-user": props(ContentType="application/json", UserProperty=[("k", "v")])}
    with _fast_and_reference(mosquitto_broker.address, "fast-props", [("p/plain/#", None), ("p/sid/#", 5)],
                             record) as sender:
        for prefix in ("p/plain", "p/sid"):
            for qos in (0, 1):
                for kind, kind_props in {**fast_kinds, **paho_kinds}.items():
                    sender.publish(f"{prefix}/{kind}", f"{kind} {qos}".encode(), qos=qos, properties=kind_props)
        count = 2 * 2 * (len(fast_kinds) + len(paho_kinds))
        wait_for(lambda: len(got["fast"]) >= count and len(got["reference"]) >= count,
                 message=lambda: f"{len(got['fast'])} and {len(got['reference'])} of {count} arrived")
        assert sorted(got["fast"]) == sorted(got["reference"])
        assert sorted(set(to_paho)) == sorted(f"{prefix}/{kind}" for prefix in ("p/plain", "p/sid")
                                              for kind in paho_kinds)
        assert any("ContentType', 'application/json'" in p and "SubscriptionIdentifier" in p for *_r, p in got["fast"])


def test_flush_lets_qos1_publishes_past_the_inflight_window_out_before_a_disconnect(
        mosquitto_broker: EmbeddedBroker) -> None:
    """paho sends QoS 1 publishes past its in-flight window only as acknowledgements free it, and a
    disconnect drops what still waits: a stopping role that answered a burst would lose the tail of it.
    `flush` waits until every publish is written and acknowledged."""
    probe = MqttProbe(mosquitto_broker.address, "flush/#")
    client = _connected_fast_client(mosquitto_broker, "fast-flush", max_inflight=10)
    try:
        payloads = [b"%d" % i for i in range(2000)]
        client.publish_many("flush/x", payloads, qos=1)
        assert client.flush(60), "not everything was acknowledged"
        client.disconnect()
        client.loop_stop()
        got = probe.wait_count(len(payloads), topic="flush/x")
        assert sorted(m.payload for m in got) == sorted(payloads)
    finally:
        client.disconnect()
        client.loop_stop()
        probe.close()


@pytest.mark.parametrize("with_on_publish", [False, True])
def test_publish_many_delivers_every_payload_once_in_order(mosquitto_broker: EmbeddedBroker,
                                                           with_on_publish: bool) -> None:
    """publish_many wakes the network thread once; joined QoS 0 writes still count each message."""
    probe = MqttProbe(mosquitto_broker.address, "fast/out", qos=0)
    client = make_fast_client(mosquitto_broker.address, "fast-sender", protocol=5)
    published: list[int] = []
    if with_on_publish:  # a listener for each message: no joining, every mid reported
        client.on_publish = lambda _c, _u, mid, _rc, _p: published.append(mid)
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()
    client.connect(mosquitto_broker.address.host, mosquitto_broker.address.port, **connect_kwargs(client))
    client.loop_start()
    try:
        wait_for(connected.is_set, message="FastClient never connected")
        payloads = [f"result {i}".encode() * (1 + i % 40) for i in range(5000)]
        payloads[10], payloads[20], payloads[30] = b"", b"m" * 20_000, b"l" * 300_000  # 1-, 2-, 3-byte lengths
        infos: list[mqtt.MQTTMessageInfo] = []
        for start in range(0, len(payloads), 64):
            infos += client.publish_many("fast/out", payloads[start : start + 64], qos=0)
        assert len(infos) == len(payloads) and all(info.rc == mqtt.MQTT_ERR_SUCCESS for info in infos)
        messages = probe.wait_count(len(payloads), topic="fast/out")
        assert [m.payload for m in messages] == payloads
        wait_for(lambda: all(info.is_published() for info in infos),
                 message=lambda: f"{sum(not i.is_published() for i in infos)} infos never marked published")
        if with_on_publish:
            wait_for(lambda: len(published) == len(payloads), message=lambda: f"{len(published)} on_publish calls")
            assert sorted(published) == sorted(info.mid for info in infos)
    finally:
        client.disconnect()
        client.loop_stop()
        probe.close()


def test_queued_qos0_publishes_are_joined_and_each_marked_published(mosquitto_broker: EmbeddedBroker) -> None:
    """publish() one by one: what piles up in paho's queue goes out joined, every message once and in order."""
    probe = MqttProbe(mosquitto_broker.address, "fast/one", qos=0)
    client = make_fast_client(mosquitto_broker.address, "fast-one-by-one", protocol=4)
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()
    client.connect(mosquitto_broker.address.host, mosquitto_broker.address.port, **connect_kwargs(client))
    client.loop_start()
    try:
        wait_for(connected.is_set, message="FastClient never connected")
        payloads = [f"one {i}".encode() * (1 + i % 30) for i in range(5000)]
        infos = [client.publish("fast/one", payload, qos=0) for payload in payloads]
        assert len({info.mid for info in infos}) == len(payloads)
        messages = probe.wait_count(len(payloads), topic="fast/one")
        assert [m.payload for m in messages] == payloads
        wait_for(lambda: all(info.is_published() for info in infos),
                 message=lambda: f"{sum(not i.is_published() for i in infos)} infos never marked published")
    finally:
        client.disconnect()
        client.loop_stop()
        probe.close()


def _connected_fast_client(broker: EmbeddedBroker, name: str, max_inflight: int | None = None,
                           **kwargs: Any) -> FastClient:
    """A FastClient (MQTT 5) connected to `broker`; `max_inflight`: its in-flight window, set before connecting."""
    client = make_fast_client(broker.address, name, protocol=5, **kwargs)
    if max_inflight is not None:
        client.max_inflight_messages_set(max_inflight)  # paho refuses it on an established connection
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()
    client.connect(broker.address.host, broker.address.port, **connect_kwargs(client))
    client.loop_start()
    wait_for(connected.is_set, message=f"{name} never connected")
    return client


@pytest.mark.parametrize("with_on_publish", [False, True])
def test_qos1_publishes_are_joined_and_each_completed_once_in_order(mosquitto_broker: EmbeddedBroker,
                                                                    with_on_publish: bool) -> None:
    """QoS 1 publishes (done by the broker's PUBACK, not by the write) share `send`s, between QoS 0 ones that
    are joined too when nothing listens for `on_publish`; every message arrives once and in order, every
    info is published (the joining itself: tests/unit/test_fastclient_joins.py)."""
    probe = MqttProbe(mosquitto_broker.address, "mixed/#", qos=1)
    client = _connected_fast_client(mosquitto_broker, "fast-qos1-out")
    published: list[int] = []
    if with_on_publish:
        client.on_publish = lambda _c, _u, mid, _rc, _p: published.append(mid)
    try:
        qos1 = [b"one %d" % i * (1 + i % 9) for i in range(3000)]
        qos0 = [b"zero %d" % i * (1 + i % 5) for i in range(1500)]
        infos: list[mqtt.MQTTMessageInfo] = []
        for round_ in range(60):
            infos += client.publish_many("mixed/1", qos1[round_ * 50 : round_ * 50 + 50], qos=1)
            infos += [client.publish("mixed/0", p, qos=0) for p in qos0[round_ * 25 : round_ * 25 + 5]]
            infos += client.publish_many("mixed/0", qos0[round_ * 25 + 5 : round_ * 25 + 25], qos=0)
        assert client.flush(60), "not everything was written and acknowledged"
        got = probe.wait_count(len(qos1) + len(qos0))
        assert [m.payload for m in got if m.topic == "mixed/1"] == qos1
        assert [m.payload for m in got if m.topic == "mixed/0"] == qos0
        assert {m.qos for m in got if m.topic == "mixed/1"} == {1}
        wait_for(lambda: all(info.is_published() for info in infos),
                 message=lambda: f"{sum(not i.is_published() for i in infos)} infos never marked published")
        assert all(info.rc == mqtt.MQTT_ERR_SUCCESS for info in infos)
        if with_on_publish:
            wait_for(lambda: len(published) == len(infos), message=lambda: f"{len(published)} on_publish calls")
            assert sorted(published) == sorted(info.mid for info in infos)
        assert len(probe.messages()) == len(qos1) + len(qos0), "a message arrived twice"
    finally:
        client.disconnect()
        client.loop_stop()
        probe.close()


@pytest.mark.parametrize("manual_ack", [True, False])
def test_pubacks_are_joined_and_each_qos1_message_arrives_once_in_order(mosquitto_broker: EmbeddedBroker,
                                                                        manual_ack: bool) -> None:
    """A QoS 1 stream acknowledged by `ack_many` (the worker) or by the network thread itself: the 4-byte
    PUBACKs share `send`s (how many, depends on when the network thread runs: tests/unit/test_fastclient_joins.py
    checks the joining), and no message comes again or out of order."""
    got: list[tuple[bytes, bool]] = []
    acks: list[tuple[int, int]] = []
    lock = threading.Lock()
    receiver = make_fast_client(mosquitto_broker.address, f"fast-acks-{manual_ack}", protocol=5,
                                manual_ack=manual_ack)
    subscribed = threading.Event()

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with lock:
            got.append((msg.payload, msg.dup))
            acks.append((msg.mid, msg.qos))

    receiver.on_connect = lambda c, *_: c.subscribe("acks/x", qos=1)
    receiver.on_subscribe = lambda *_: subscribed.set()
    receiver.on_message = on_message
    receiver.connect(mosquitto_broker.address.host, mosquitto_broker.address.port, **connect_kwargs(receiver))
    receiver.loop_start()
    wait_for(subscribed.is_set, message="never subscribed")
    sender = make_client(mosquitto_broker.address, protocol=5)
    sender.max_inflight_messages_set(0)
    sender.connect(mosquitto_broker.address.host, mosquitto_broker.address.port)
    sender.loop_start()
    try:
        payloads = [b"image %d" % i for i in range(4000)]
        for payload in payloads:
            sender.publish("acks/x", payload, qos=1)

        def acknowledged_all() -> bool:
            with lock:
                batch, acks[:] = list(acks), []
            if manual_ack:
                receiver.ack_many(batch)
            return len(got) >= len(payloads)

        wait_for(acknowledged_all, message=lambda: f"{len(got)} of {len(payloads)} arrived")
        assert receiver.flush(30)
        wait_for(lambda: not sender._out_messages, message="the sender's publishes were never all acknowledged")
        assert [p for p, _dup in got] == payloads and not any(dup for _p, dup in got)
    finally:
        sender.disconnect()
        sender.loop_stop()
        receiver.disconnect()
        receiver.loop_stop()


def test_joined_qos0_publishes_still_queued_at_a_reconnect_are_each_marked_lost(
        mosquitto_broker: EmbeddedBroker) -> None:
    """A stalled broker leaves joined QoS 0 publishes in the out queue; paho's reconnect marks each queued
    QoS 0 info lost (`rc`, then published). It did that to the joined packet's stand-in, which had no `rc`:
    AttributeError, which ended a role's network thread. The test drives the client's loop itself."""
    pid = mosquitto_broker.pid
    assert pid is not None
    client = make_fast_client(mosquitto_broker.address, "fast-stalled", protocol=5)
    client.on_socket_register_write = lambda *_: None  # publishes only queue; loop_write writes
    connects: list[int] = []
    client.on_connect = lambda *_: connects.append(1)
    client.connect(mosquitto_broker.address.host, mosquitto_broker.address.port, **connect_kwargs(client))

    _loop_until(client, lambda: bool(connects), "never connected")
    os.kill(pid, signal.SIGSTOP)
    try:
        client.socket().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
        infos = [client.publish("stall/x", b"x" * 1000, qos=0) for _ in range(4000)]  # more than the buffers
        client.loop_write()
        assert client._out_packet, "everything was written to a stopped broker"
        client.reconnect()
    finally:
        os.kill(pid, signal.SIGCONT)
    _loop_until(client, lambda: len(connects) == 2, "never reconnected")
    written = [info for info in infos if info.rc == mqtt.MQTT_ERR_SUCCESS]
    lost = [info for info in infos if info.rc == mqtt.MQTT_ERR_CONN_LOST]
    assert lost and len(written) + len(lost) == len(infos)
    assert all(info.is_published() for info in written) and all(info._published for info in lost)
    client.disconnect()


def _skipping_receiver(broker: EmbeddedBroker, name: str, qos: int, got: list[bytes]) -> FastClient:
    """A FastClient on a durable session (at QoS 1) that skips payloads starting with b"skip"."""
    durable = {"clean_start": False, "session_expiry": 300} if qos else {}
    client = make_fast_client(broker.address, name, protocol=5, **durable)
    client.asked = 0  # type: ignore[attr-defined]

    def skip(payload: bytes) -> bool:
        client.asked += 1  # type: ignore[attr-defined]
        return payload.startswith(b"skip")

    client.skip_when = skip
    subscribed = threading.Event()
    client.on_connect = lambda c, *_: c.subscribe("fast/skip", qos=qos)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = lambda _c, _u, msg: got.append(msg.payload)
    client.connect(broker.address.host, broker.address.port, **connect_kwargs(client))
    client.loop_start()
    wait_for(subscribed.is_set, message="never subscribed")
    return client


@pytest.mark.parametrize("qos", [0, 1])
def test_skip_when_drops_messages_as_they_are_decoded_and_acknowledges_them(mosquitto_broker: EmbeddedBroker,
                                                                            qos: int) -> None:
    """`skip_when(payload)`: such a message never reaches on_message, is counted, and at QoS 1 is
    acknowledged: the same durable session, resumed, is not sent it again."""
    name = f"fast-skip-{qos}-{os.getpid()}"
    got: list[bytes] = []
    receiver = _skipping_receiver(mosquitto_broker, name, qos, got)
    sender = make_client(mosquitto_broker.address, protocol=5)
    sender.connect(mosquitto_broker.address.host, mosquitto_broker.address.port)
    sender.loop_start()
    try:
        info = None
        for i in range(400):
            info = sender.publish("fast/skip", f"{'skip' if i % 2 else 'keep'}-{i}".encode(), qos=qos)
        assert info is not None
        info.wait_for_publish(10)
        wait_for(lambda: receiver.skipped == 200 and len(got) == 200, message="not every message was kept or skipped")
        assert got == [f"keep-{i}".encode() for i in range(0, 400, 2)]
        assert receiver.asked == 400  # type: ignore[attr-defined]  # once each, those kept as well
        if qos:  # the session again: a skipped message left unacknowledged would be sent again now
            # The broker takes one connection's packets in order, so its answer to a publish queued after
            # the acknowledgements says it has them. Without that, the new connection below can overtake
            # the old one's unread acknowledgements ("already connected, closing old connection") and the
            # broker rightly sends those messages again.
            synced = receiver.publish("fast/skip/sync", b"", qos=1)
            synced.wait_for_publish(10)
            assert synced.is_published(), "the broker never acknowledged the receiver's publish"
            receiver.disconnect()
            receiver.loop_stop()
            again: list[bytes] = []
            receiver = _skipping_receiver(mosquitto_broker, name, qos, again)
            sender.publish("fast/skip", b"keep-last", qos=1).wait_for_publish(10)
            wait_for(lambda: b"keep-last" in again, message="no message after resuming the session")
            assert again == [b"keep-last"] and receiver.skipped == 0, "skipped messages came again"
    finally:
        sender.disconnect()
        sender.loop_stop()
        receiver.disconnect()
        receiver.loop_stop()


def test_publishes_behind_a_small_in_flight_window_go_out_once_in_order(mosquitto_broker: EmbeddedBroker) -> None:
    """With 10 in flight, 2,000 QoS 1 publishes wait in the client and go out one per acknowledgement, from
    FastClient's own queue of them (paho walks the whole window for each): all arrive, once, in order."""
    probe = MqttProbe(mosquitto_broker.address, "window/#", qos=1)
    client = _connected_fast_client(mosquitto_broker, "fast-window", max_inflight=10)
    try:
        payloads = [b"w %d" % i for i in range(2000)]
        infos = client.publish_many("window/1", payloads[:1000], qos=1)
        infos += [client.publish("window/1", p, qos=1) for p in payloads[1000:]]
        assert len(client._queued_out) > 0, "nothing waited behind the window"
        assert client.flush(60), "not everything was acknowledged"
        got = probe.wait_count(len(payloads))
        assert [m.payload for m in got] == payloads
        assert all(info.is_published() and info.rc == mqtt.MQTT_ERR_SUCCESS for info in infos)
        assert not client._queued_out and client._inflight_messages == 0
        assert len(probe.messages()) == len(payloads), "a message arrived twice"
    finally:
        client.disconnect()
        client.loop_stop()
        probe.close()


def test_after_acknowledged_waits_for_every_publish_handed_over_before_it(mosquitto_broker: EmbeddedBroker) -> None:
    """A function given to `after_acknowledged` runs once the broker has acknowledged every QoS 1 publish handed
    over before it (here 500 behind a window of 10), not before, in the order given; with nothing waiting, at once."""
    client = _connected_fast_client(mosquitto_broker, "fast-after-acked", max_inflight=10)
    acked: list[int] = []  # mids, as paho reports each acknowledgement (before after_acknowledged looks)
    client.on_publish = lambda _c, _u, mid, _rc, _p: acked.append(mid)
    calls: list[tuple[str, set[int]]] = []  # (name, the mids acknowledged when it ran)
    try:
        client.after_acknowledged(lambda: calls.append(("idle", set(acked))))
        assert [name for name, _ in calls] == ["idle"], "nothing was waiting: the function runs at once"
        first = {i.mid for i in client.publish_many("after/1", [b"a %d" % i for i in range(250)], qos=1)}
        client.after_acknowledged(lambda: calls.append(("first", set(acked))))
        client.publish("after/0", b"at most once", qos=0)  # QoS 0: nothing to wait for
        second = {i.mid for i in client.publish_many("after/1", [b"b %d" % i for i in range(250)], qos=1)}
        client.after_acknowledged(lambda: calls.append(("second", set(acked))))
        assert len(calls) == 1 or first <= calls[1][1], "ran before the broker acknowledged what came before it"
        assert client.flush(60), "not everything was acknowledged"
        wait_for(lambda: len(calls) == 3, message=lambda: f"calls {[name for name, _ in calls]}")
        assert [name for name, _ in calls] == ["idle", "first", "second"]
        assert first <= calls[1][1], "the first ran before its 250 publishes were all acknowledged"
        assert first | second <= calls[2][1], "the second ran before its 500 publishes were all acknowledged"
        assert not second <= calls[1][1], "the first waited for publishes handed over after it"
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.parametrize("protocol", [4, 5])
def test_a_round_trip_before_disconnect_keeps_acknowledgements_while_the_broker_still_writes(
        mosquitto_broker: EmbeddedBroker, protocol: int) -> None:
    """A durable client acknowledges 50 messages by hand just before it disconnects, while a flood still comes
    its way. Closing the socket then makes the broker's next write fail ("broken pipe"), and the broker drops
    the connection without reading the acknowledgements waiting in it; after `round_trip` it has read them,
    so the same session, reconnected, gets only the flood again (unacknowledged), none of the 50."""
    address = mosquitto_broker.address
    topic = f"trip/{protocol}"
    first_seen: list[bytes] = []
    again_seen: list[bytes] = []
    to_acknowledge: list[tuple[int, int]] = []
    slow = threading.Event()

    def durable(seen: list[bytes], acknowledge_all: bool = False) -> FastClient:
        client = make_fast_client(address, f"trip-{protocol}", protocol=protocol, clean_start=False,
                                  session_expiry=600, manual_ack=True)
        subscribed = threading.Event()
        client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        client.on_subscribe = lambda *_: subscribed.set()

        def on_message(c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
            seen.append(msg.payload.split(b" ", 1)[0])
            if slow.is_set() and msg.payload.startswith(b"x"):
                time.sleep(0.003)  # a busy reader: the broker's writes back up, as they do to a busy worker
            if acknowledge_all:  # else the broker's in-flight window holds back the rest
                c.ack(msg.mid, msg.qos)
            elif msg.payload.startswith(b"a"):
                to_acknowledge.append((msg.mid, msg.qos))

        client.on_message = on_message
        client.connect(address.host, address.port, **connect_kwargs(client))
        client.loop_start()
        wait_for(subscribed.is_set, message="never subscribed")
        return client

    sender = make_client(address)
    sender.connect(address.host, address.port)
    sender.loop_start()
    flooding = threading.Event()
    flooded: list[bytes] = []  # their first word
    pad = b"." * 60_000  # the broker's writes fill the socket: it still has some to write as the client closes

    def flood() -> None:
        while flooding.is_set() and len(flooded) < 1500:  # within the broker's max_queued_bytes
            word = b"x%d" % len(flooded)
            sender.publish(topic, word + b" " + pad, qos=1).wait_for_publish(30)
            flooded.append(word)

    flooder = threading.Thread(target=flood)
    first = durable(first_seen)
    try:
        for i in range(50):
            sender.publish(topic, b"a%d" % i, qos=1)
        wait_for(lambda: sum(p.startswith(b"a") for p in first_seen) == 50, message=lambda: f"{len(first_seen)}")
        slow.set()
        flooding.set()
        flooder.start()
        wait_for(lambda: len(first_seen) > 150, message="the flood does not arrive")
        first.ack_many(to_acknowledge)
        slow.clear()
        assert first.round_trip(30), "the broker did not answer the PINGREQ"
    finally:
        first.disconnect()
        first.loop_stop()
        flooding.clear()
        if flooder.is_alive():
            flooder.join()
    again = durable(again_seen, acknowledge_all=True)
    try:
        wait_for(lambda: set(flooded) <= set(again_seen), timeout=60,
                 message=lambda: f"{len(set(flooded) - set(again_seen))} of the flood not sent again")
        assert not [p for p in again_seen if p.startswith(b"a")], "acknowledged messages were sent again"
    finally:
        again.disconnect()
        again.loop_stop()
        sender.disconnect()
        sender.loop_stop()


def test_a_round_trip_after_a_reconnect_that_lost_a_ping(mosquitto_broker: EmbeddedBroker) -> None:
    """A ping the last connection never had answered (the broker stalled, the connection dropped) does not
    count against the next one: after the reconnect `round_trip` is answered again (it counted the lost
    ping as still due, and every later round trip waited out its timeout)."""
    pid = mosquitto_broker.pid
    assert pid is not None
    client = _connected_fast_client(mosquitto_broker, "fast-trip-reconnect")
    client.reconnect_delay_set(0.1, 0.5)
    connects: list[int] = []
    client.on_connect = lambda *_: connects.append(1)
    try:
        assert client.round_trip(30)
        os.kill(pid, signal.SIGSTOP)
        try:
            assert not client.round_trip(0.3), "a stopped broker answered"
            sock = client.socket()
            assert sock is not None
            sock.shutdown(socket.SHUT_RDWR)  # the connection is lost, its ping unanswered
            wait_for(lambda: client.socket() is not sock, message="the lost connection was not noticed")
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_for(lambda: connects and client.is_connected(), timeout=30, message="never reconnected")
        assert client.round_trip(30), "the ping lost with the old connection still counted as due"
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.needs_mosquitto
@pytest.mark.parametrize("qos", [1, 2])
def test_publishes_keep_to_the_brokers_receive_maximum(probe_factory, tmp_path, qos: int) -> None:
    """mosquitto's default Receive Maximum is 20; paho kept 1,000 QoS 2 publishes in flight, and the broker
    refused those past 20 with "quota exceeded" in a PUBREC that paho passed over (sending PUBREL and calling
    the message published). Each publish is taken now, and a refusal would reach on_publish."""
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(re.sub(r"^max_inflight_messages .*$", "max_inflight_messages 20",
                           default_config_path().read_text(), flags=re.MULTILINE))
    with EmbeddedBroker(kind="mosquitto", config=conf) as broker:
        seen = probe_factory(broker.address, "rm/#", qos=2)
        client = make_fast_client(broker.address, "receive-maximum", protocol=5)
        refused: list[str] = []
        client.on_publish = lambda _c, _u, _mid, rc, _p: refused.append(str(rc)) if rc.is_failure else None
        client.connect(broker.address.host, broker.address.port, **connect_kwargs(client))
        client.loop_start()
        try:
            # published at once, before the CONNACK says what the broker takes: they wait for it
            infos = [client.publish("rm/x", b"%d" % i, qos=qos) for i in range(2000)]
            wait_for(lambda: all(i.is_published() for i in infos), timeout=60, message="not all confirmed")
            assert refused == []
            assert [m.payload for m in seen.wait_count(2000, timeout=60)] == [b"%d" % i for i in range(2000)]
        finally:
            client.disconnect()
            client.loop_stop()


@pytest.mark.needs_mosquitto
@pytest.mark.parametrize("protocol", [5, 4])
def test_a_reconnect_sends_again_no_more_than_the_broker_takes(tmp_path, protocol: int) -> None:
    """After a reconnect paho sent every unacknowledged message again at once: against mosquitto's default
    of 20 in flight, 720 of 1,500 QoS 2 messages were refused ("quota exceeded") or, on 3.1.1, dropped."""
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(re.sub(r"^max_inflight_messages .*$", "max_inflight_messages 20",
                           default_config_path().read_text(), flags=re.MULTILINE))
    port = free_port()
    refused: list[str] = []
    broker = EmbeddedBroker(kind="mosquitto", config=conf, port=port).start()
    client = make_fast_client(broker.address, "reconnect-window", protocol=protocol)
    client.on_publish = lambda _c, _u, _mid, rc, _p: refused.append(str(rc)) if rc.is_failure else None
    client.connect(broker.address.host, broker.address.port, **connect_kwargs(client))
    client.loop_start()
    try:
        wait_for(client.is_connected, message="not connected")
        assert broker.pid is not None
        os.kill(broker.pid, signal.SIGSTOP)  # nothing is acknowledged: the whole window stays in flight
        infos = [client.publish("rw/x", b"%d" % i, qos=2) for i in range(1500)]
        os.kill(broker.pid, signal.SIGKILL)  # the client reconnects to a new broker on the same port
        broker.stop()
        broker = EmbeddedBroker(kind="mosquitto", config=conf, port=port).start()
        seen = MqttProbe(broker.address, "rw/#", qos=2)
        try:
            wait_for(lambda: all(i.is_published() for i in infos), timeout=90,
                     message=lambda: f"{sum(not i.is_published() for i in infos)} not confirmed, refused {refused[:3]}")
            assert refused == []
            got = {m.payload for m in seen.wait_count(1500, timeout=60)}  # the new broker got every one
            assert got == {b"%d" % i for i in range(1500)}
        finally:
            seen.close()
    finally:
        client.disconnect()
        client.loop_stop()
        broker.stop()


class _ScriptedPeer:
    """A scripted MQTT 5 server for what no real broker can be made to do on cue: withhold a PUBCOMP. Its first
    connection says Receive Maximum 100, acknowledges no QoS 1 publish, answers a QoS 2 one with PUBREC and
    drops the connection at its PUBREL; the next ones say `second_maximum`, session present, and answer all."""

    def __init__(self, second_maximum: int) -> None:
        self.second_maximum = second_maximum
        self.pubrels_later: list[int] = []
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(2)
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @staticmethod
    def _read(conn: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def _packet(self, conn: socket.socket) -> tuple[int, bytes]:
        header, length, shift = self._read(conn, 1)[0], 0, 0
        while True:
            byte = self._read(conn, 1)[0]
            length += (byte & 127) << shift
            shift += 7
            if not byte & 128:
                return header, self._read(conn, length)

    def _accept(self) -> None:
        number = 0
        while True:
            conn, _ = self.server.accept()
            number += 1
            self._packet(conn)  # CONNECT
            threading.Thread(target=self._serve, args=(number, conn), daemon=True).start()

    def _serve(self, number: int, conn: socket.socket) -> None:
        maximum = 100 if number == 1 else self.second_maximum
        props = bytes([0x21]) + maximum.to_bytes(2, "big")
        body = bytes([0 if number == 1 else 1, 0, len(props)]) + props
        conn.sendall(bytes([0x20, len(body)]) + body)
        with contextlib.suppress(EOFError, OSError):
            while True:
                header, body = self._packet(conn)
                kind = header >> 4
                if kind == 3:  # PUBLISH
                    qos, size = (header >> 1) & 3, int.from_bytes(body[:2], "big")
                    mid = body[2 + size:4 + size]
                    if qos == 1 and number > 1:
                        conn.sendall(bytes([0x40, 2]) + mid)
                    elif qos == 2:
                        conn.sendall(bytes([0x50, 2]) + mid)
                elif kind == 6:  # PUBREL
                    if number == 1:
                        conn.close()  # its PUBCOMP never comes: the client must send the PUBREL again
                        return
                    self.pubrels_later.append(int.from_bytes(body[:2], "big"))
                    conn.sendall(bytes([0x70, 2]) + body[:2])
                elif kind == 12:  # PINGREQ
                    conn.sendall(b"\xd0\x00")
                elif kind == 14:  # DISCONNECT
                    return


@pytest.mark.parametrize("second_maximum", [10, 100])
def test_a_pubrel_to_send_again_is_sent_when_the_window_shrank_at_a_reconnect(second_maximum: int) -> None:
    """A persistent session's QoS 2 message waiting for its PUBCOMP when the connection drops: its PUBREL goes
    again at the next CONNACK. paho's CONNACK stops at the first queued message, and with a smaller window
    after the reconnect one was queued ahead of it: the exchange never ended (unacknowledged for ever)."""
    peer = _ScriptedPeer(second_maximum)
    client = make_fast_client(BrokerAddress(port=peer.port), "pubrel-again", clean_start=False, session_expiry=600)
    client.reconnect_delay_set(1, 1)
    client.connect("127.0.0.1", peer.port, **connect_kwargs(client))
    client.loop_start()
    try:
        wait_for(client.is_connected, message="not connected")
        for i in range(49):
            client.publish("t/a", b"%d" % i, qos=1)
        info = client.publish("t/b", b"qos 2", qos=2)
        wait_for(lambda: client.unacknowledged() == 0, timeout=30,
                 message=lambda: f"{client.unacknowledged()} unacknowledged, PUBRELs {peer.pubrels_later}")
        assert peer.pubrels_later == [info.mid]
    finally:
        client.disconnect()
        client.loop_stop()
        peer.server.close()


@pytest.mark.needs_mosquitto
def test_a_plain_puback_reaches_on_publish_as_paho_hands_it_and_any_other_goes_to_paho(mosquitto_broker: EmbeddedBroker,
                                                                                      probe_factory) -> None:
    """A PUBACK of success without properties is read by FastClient itself (one shared reason code, no
    object made per acknowledgement); one with a reason code (MQTT 5: "No matching subscribers" where nobody
    listens) still goes through paho's decoder to on_publish, with its code."""
    probe_factory(mosquitto_broker.address, "ack/heard", qos=1)
    client = make_fast_client(mosquitto_broker.address, f"ack-{os.getpid()}", protocol=5)
    codes: dict[int, tuple[Any, Any]] = {}
    client.on_publish = lambda _c, _u, mid, rc, props: codes.__setitem__(mid, (rc, props))
    client.connect(mosquitto_broker.address.host, mosquitto_broker.address.port, **connect_kwargs(client))
    client.loop_start()
    try:
        heard = [client.publish("ack/heard", b"%d" % i, qos=1) for i in range(50)]
        unheard = client.publish("ack/nobody", b"x", qos=1)
        wait_for(lambda: all(i.is_published() for i in [*heard, unheard]), message="not all acknowledged")
        for info in heard:
            rc, props = codes[info.mid]
            assert rc == 0 and not rc.is_failure and str(rc) == "Success" and props.packetType == PacketTypes.PUBACK
        assert len({id(codes[i.mid][0]) for i in heard}) == 1  # read here: one reason code for all
        rc, _props = codes[unheard.mid]
        assert rc.value == 16 and str(rc) == "No matching subscribers" and not rc.is_failure
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.parametrize(("protocol", "data"), [
    (mqtt.MQTTv311, bytes((0x32, 0x00))), (mqtt.MQTTv311, bytes((0x32, 0x01, 0x00))),
    (mqtt.MQTTv5, bytes((0x32, 0x00))), (mqtt.MQTTv5, bytes((0x32, 0x01, 0x00))),
    (mqtt.MQTTv5, bytes((0x40, 0x00))), (mqtt.MQTTv5, bytes((0x40, 0x01, 0x00))),
    (mqtt.MQTTv5, bytes((0x30, 0x06, 0x00, 0x01)) + b"t\x00ab" + bytes((0x32, 0x01, 0x00))),
])
def test_a_malformed_publish_or_puback_is_a_protocol_error_not_a_crash(protocol: int, data: bytes) -> None:
    """A QoS 1 PUBLISH or a PUBACK too short to hold a packet id (from a broken or hostile broker), also after
    a good packet in the same read: the read ends in paho's protocol error, and the client reconnects; the
    network thread does not die of an IndexError."""
    client = FastClient(mqtt.CallbackAPIVersion.VERSION2, client_id="malformed", protocol=protocol)
    client.skip_when = lambda _payload: True  # the QoS 1 run asks about each image
    ours, broker = socket.socketpair()
    try:
        ours.setblocking(False)
        client._sock = ours
        client._state = mqtt._ConnectionState.MQTT_CS_CONNECTED
        broker.sendall(data)
        assert client.loop_read() == mqtt.MQTTErrorCode.MQTT_ERR_PROTOCOL
    finally:
        client._sock = None
        ours.close()
        broker.close()
