"""paho-mqtt client factory and a one-shot connection probe with one-line error messages."""

from __future__ import annotations

import ssl
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from engine.errors import BrokerError
from engine.mqtt.address import BrokerAddress
from engine.mqtt.fastclient import FastClient

PROTOCOLS = {5: mqtt.MQTTv5, 4: mqtt.MQTTv311}
PROTOCOL_NAMES = {5: "MQTT 5", 4: "MQTT 3.1.1"}
RECONNECT_MIN_DELAY = 1  # s before the first attempt to connect again after a lost connection, doubling
RECONNECT_MAX_DELAY = 16  # s between attempts at most


def make_client(
    address: BrokerAddress,
    client_id: str,
    *,
    protocol: int = 5,
    clean_start: bool = True,
    session_expiry: int | None = None,
    receive_maximum: int | None = None,
    manual_ack: bool = False,
) -> FastClient:
    """A paho 2.x client with credentials, TLS and reconnect backoff applied; not yet connected.

    `session_expiry` (seconds) with `clean_start=False` asks for a persistent session: MQTT 5 session
    expiry, or clean session off on 3.1.1, so QoS 1 messages wait at the broker while the client is away.
    `receive_maximum` (MQTT 5) caps the QoS 1/2 messages the broker sends before we acknowledge them:
    a consumer that acknowledges only what it has processed then never holds more than that.
    `manual_ack`: QoS 1/2 messages are acknowledged by `client.ack(mid, qos)`, not when received.
    """
    if protocol not in PROTOCOLS:
        raise BrokerError(f"unknown MQTT protocol {protocol!r} (use 5 or 4 for 3.1.1)")
    kwargs: dict[str, Any] = {"protocol": PROTOCOLS[protocol], "client_id": client_id}
    if protocol == 4:
        kwargs["clean_session"] = clean_start
    if address.websocket_path is not None:
        kwargs["transport"] = "websockets"
    client = FastClient(CallbackAPIVersion.VERSION2, manual_ack=manual_ack, **kwargs)
    if address.websocket_path is not None:
        client.ws_set_options(path=address.websocket_path)
    client.reconnect_delay_set(min_delay=RECONNECT_MIN_DELAY, max_delay=RECONNECT_MAX_DELAY)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    if address.username:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        try:
            client.tls_set(
                ca_certs=address.cafile,
                certfile=address.certfile,
                keyfile=address.keyfile,
                cert_reqs=ssl.CERT_NONE if address.insecure else ssl.CERT_REQUIRED,
            )
            if address.insecure:
                client.tls_insecure_set(True)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise BrokerError(f"TLS setup failed: {exc}") from None
    client._mnist_protocol = protocol  # type: ignore[attr-defined]
    client._mnist_clean_start = clean_start  # type: ignore[attr-defined]
    client._mnist_session_expiry = session_expiry  # type: ignore[attr-defined]
    client._mnist_receive_maximum = receive_maximum  # type: ignore[attr-defined]
    return client


def connect_kwargs(client: mqtt.Client, keepalive: int = 30) -> dict[str, Any]:
    """Arguments for client.connect / connect_async that carry the session settings of make_client."""
    kwargs: dict[str, Any] = {"keepalive": keepalive}
    if getattr(client, "_mnist_protocol", 5) == 5:
        clean_start = getattr(client, "_mnist_clean_start", True)
        kwargs["clean_start"] = clean_start
        props = Properties(PacketTypes.CONNECT)
        expiry = getattr(client, "_mnist_session_expiry", None)
        if expiry:
            props.SessionExpiryInterval = int(expiry)
        receive_maximum = getattr(client, "_mnist_receive_maximum", None)
        if receive_maximum:
            props.ReceiveMaximum = max(1, min(int(receive_maximum), 65535))
        if expiry or receive_maximum:
            kwargs["properties"] = props
    return kwargs


def reason_text(reason_code: Any) -> str:
    """A short human phrase for a CONNACK reason code (v5 ReasonCode or 3.1.1 return code)."""
    name = str(getattr(reason_code, "getName", lambda: reason_code)())
    friendly = {
        "Not authorized": "not authorized (the broker wants a valid user and password)",
        "Bad user name or password": "bad user name or password",
        "Unsupported protocol version": "the broker does not speak this MQTT version",
        "Server unavailable": "server unavailable",
        "Client identifier not valid": "client id refused by the broker",
    }
    return friendly.get(name, name)


def probe(address: BrokerAddress, timeout: float = 5.0, protocols: tuple[int, ...] = (5, 4)) -> int:
    """Connect once and return the first protocol version in `protocols` the broker accepts.

    Raises BrokerError with one line: unreachable, TLS failure, refused (with the broker's reason).
    """
    last_error = "no protocol tried"
    for protocol in protocols:
        client = make_client(address, f"mnist-probe-{threading.get_ident() % 100000}", protocol=protocol)
        result: dict[str, Any] = {}
        done = threading.Event()

        def on_connect(_c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any, result=result, done=done) -> None:
            result["rc"] = rc
            done.set()

        def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any, result=result, done=done) -> None:
            if not done.is_set():  # closed before any CONNACK: not an MQTT broker, or a TLS port
                result["closed"] = rc
                done.set()

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        try:
            client.connect(address.host, address.port, keepalive=10)
        except ssl.SSLCertVerificationError as exc:
            hint = "" if address.cafile else (" (give the CA that signed the broker's certificate with --cafile,"
                                              " or --insecure for a test broker)")
            reason = exc.verify_message or exc.reason or exc
            text = f"TLS handshake with {address.url} failed: certificate not trusted: {reason}{hint}"
            raise BrokerError(text) from None
        except ssl.SSLError as exc:
            raise BrokerError(f"TLS handshake with {address.url} failed: {exc.reason or exc}") from None
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise BrokerError(f"cannot reach broker at {address.url}: {reason}") from None
        client.loop_start()
        try:
            if not done.wait(timeout):
                last_error = f"no answer from broker at {address.url} within {timeout:.0f} s"
                continue
        finally:
            client.disconnect()
            client.loop_stop()
        if "rc" not in result:
            hint = "" if address.tls else " (a TLS port? use mqtts:// and --cafile)"
            last_error = f"broker at {address.url} closed the connection without answering{hint}"
            continue  # an old broker may hang up on an MQTT version it does not know: try the next
        rc = result["rc"]
        if not rc.is_failure:
            return protocol
        text = reason_text(rc)
        last_error = f"broker at {address.url} refused the connection: {text}"
        if "MQTT version" not in text and "protocol" not in str(rc).lower():
            break
    raise BrokerError(last_error)


def publish_packet_size(topic: str, payload_size: int, qos: int, props: Properties | None = None, *,
                        protocol: int = 5) -> int:
    """The size of a PUBLISH packet: fixed header, topic, packet id (QoS 1 and 2), properties (MQTT 5; none on
    3.1.1, `protocol` 4) and payload, the whole packet, as MQTT 5 counts it against a broker's maximum packet
    size. mosquitto (2.0) leaves the Remaining Length field out of its count (`remaining_length + 1`), so it
    takes a packet up to that field's 1-4 bytes longer (4 at its 4 MiB limit). The checks keep to the whole
    packet all the same: MQTT 5 forbids a client a larger one [MQTT-3.2.2-15], a broker that counts it all
    would close the connection on those few bytes, and a message that close to the limit is rare."""
    properties = 0 if protocol != 5 else len(props.pack()) if props is not None else 1  # their length comes first
    remaining = 2 + len(topic.encode("utf-8")) + (2 if qos else 0) + properties + payload_size
    return 1 + _varint_size(remaining) + remaining


def max_packet_size(props: Any) -> int | None:
    """The maximum packet size a CONNACK's properties announce (MQTT 5); None when they announce none."""
    size = getattr(props, "MaximumPacketSize", None)
    return size if isinstance(size, int) and size > 0 else None


def _varint_size(n: int) -> int:
    size = 1
    while n >= 128:
        n //= 128
        size += 1
    return size
