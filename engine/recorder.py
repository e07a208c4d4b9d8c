"""`mnist-tui record FILE` and `mnist-tui replay FILE`: keep a stretch of traffic and play it back.

The file is NDJSON: a header line, then one line per message with its offset from the start
(seconds), topic, QoS, retain flag, base64 payload and, for MQTT 5 messages that have them, their
properties (`props`: expiry, response topic, correlation data in base64, content type, payload format,
user properties). It is plain text, so it can be inspected with jq, cut with head, and concatenated.
`record -` writes it to stdout and `replay -` reads it from stdin; `replay --loop` plays it again and
again until stopped.
"""

from __future__ import annotations

import argparse
import base64
import codecs
import contextlib
import errno
import json
import os
import queue
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from engine.console.topic_filters import validate_topic, validate_watch_filter
from engine.errors import BrokerError, ConfigError
from engine.mqtt.address import BrokerAddress
from engine.mqtt.client import connect_kwargs, make_client, max_packet_size, probe, publish_packet_size
from engine.mqtt.fastclient import FastClient, payload_of
from engine.mqtt.subscriber import Subscriber
from engine.settings import default_client_id
from engine.signals import Interrupted, SignalStop
from engine.untrusted import visible_text

FORMAT = "mnist-tui-record"
MAX_LINE = 64 * 1024 * 1024  # bytes of one record (a payload of up to about 48 MB, in base64)
PIPE_PAGE = 4096  # bytes a pipe that polls writable takes without blocking (PIPE_BUF)
MAX_OFFSET = 10 * 365 * 86_400.0  # seconds from the start of a recording to a message: ten years
VERSION = 1


class TruncatedRecording(ConfigError):
    """The last line of a recording is cut off: the recorder was killed mid-write, or the file was cut short."""

    def __init__(self, path: Path | str, line: int, whole: int) -> None:
        super().__init__(f"{path} is truncated: line {line} is cut off")
        self.line = line
        self.whole = whole  # the messages read before it
        self.replayed = whole  # those and the messages of the passes before (replay --loop)


@dataclass(frozen=True)
class Recorded:
    t: float
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    props: dict[str, Any] | None = None  # MQTT 5 properties, as props_to_json writes them
    line: int = 0  # where it was read from (0: not from a file)

    def to_json(self) -> str:
        line: dict[str, Any] = {"t": round(self.t, 6), "topic": self.topic, "qos": self.qos, "retain": self.retain,
                                "payload": base64.b64encode(self.payload).decode("ascii")}
        if self.props:
            line["props"] = self.props
        return json.dumps(line, separators=(",", ":"))


# MQTT 5 PUBLISH properties kept in a recording: JSON name -> paho name (topic alias and subscription
# identifiers belong to one connection, not to the message, and are left out)
_PROPS = {"expiry": "MessageExpiryInterval", "response_topic": "ResponseTopic", "correlation": "CorrelationData",
          "content_type": "ContentType", "payload_format": "PayloadFormatIndicator", "user": "UserProperty"}


def props_to_json(props: Any) -> dict[str, Any] | None:
    """The recordable properties of a received message as JSON values (bytes in base64), or None."""
    if props is None:
        return None
    found = props.__dict__
    out: dict[str, Any] = {}
    for key, name in _PROPS.items():
        value = found.get(name)
        if value is None:
            continue
        if isinstance(value, bytes):
            value = base64.b64encode(value).decode("ascii")
        elif name == "UserProperty":
            value = [[str(k), str(v)] for k, v in value]
        out[key] = value
    return out or None


def props_from_json(raw: Any) -> Properties | None:
    """PUBLISH properties from a recording's `props`; ValueError saying which one is bad."""
    if not raw:
        return None
    if not isinstance(raw, dict):
        raise ValueError(f"props is a JSON {_json_kind(raw)}, not an object")
    props = Properties(PacketTypes.PUBLISH)
    for key, value in raw.items():
        name = _PROPS.get(key)
        if name is None:
            continue  # a newer recording's property: left out
        if name == "CorrelationData":
            if not isinstance(value, str):
                raise ValueError(f"{key} is not a base64 string")
            try:
                value = base64.b64decode(value, validate=True)
            except ValueError:
                raise ValueError(f"{key} is not base64") from None
        elif name == "UserProperty":
            if not isinstance(value, list) or not all(
                    isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)
                    for pair in value):
                raise ValueError(f"{key} is not a list of [name, value] string pairs")
            value = [(k, v) for k, v in value]
        elif name in ("MessageExpiryInterval", "PayloadFormatIndicator"):
            top = 0xFFFFFFFF if name == "MessageExpiryInterval" else 1
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{key} is not a whole number from 0 to {top}")
            if not 0 <= value <= top:
                raise ValueError(f"{key} {value} out of range")
        elif not isinstance(value, str):
            raise ValueError(f"{key} is not a string")
        setattr(props, name, value)
    return props


# how a header begins, white space left out: the recorder writes the format first
_HEADER_START = '{"format":' + json.dumps(FORMAT)


def _like_a_header(text: str) -> bool:
    """Whether `text`, the start of a first line, is (or is cut from) the start of a recording's header."""
    compact = "".join(text.split())
    return len(compact) >= 2 and (_HEADER_START.startswith(compact) or compact.startswith(_HEADER_START))


def _not_utf8(exc: UnicodeDecodeError) -> str:
    return f"not UTF-8: byte 0x{exc.object[exc.start]:02x} at column {exc.start + 1}"


def _cut_in_a_character(line: bytes) -> bool:
    """Whether `line`, which fails to decode, is UTF-8 up to a character cut off at its end."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(line, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _read_header(line: bytes, name: str) -> Any:
    """The first line parsed; ConfigError when it is cut off inside (the file ends there) or not UTF-8."""
    cut = not line.endswith(b"\n") and len(line) <= MAX_LINE  # the file ends inside its first line
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = line[:exc.start].decode("utf-8")  # what comes before the bad byte
        if not (cut and _cut_in_a_character(line)):  # a bad byte, not a character cut off at the end of the file
            if "".join(text.split()).startswith(_HEADER_START):  # a recording's header, damaged
                raise ConfigError(f"{name} line 1: bad header ({_not_utf8(exc)})") from None
            return None
    try:
        return json.loads(text) if text.strip() else None
    except ValueError:
        if cut and _like_a_header(text):
            raise ConfigError(f"{name} is a truncated mnist-tui recording: cut off inside its header line, "
                              "before any message") from None
        return None


def read_recording(path: Path, stream: IO[bytes] | None = None) -> tuple[dict[str, Any], Iterator[Recorded]]:
    """The header and an iterator over the messages (from `stream` when given, e.g. stdin's bytes, else the file);
    ConfigError with one line on a bad file, TruncatedRecording (after the whole messages) when its last line
    is cut off. The file is read as bytes and each line decoded alone, so a byte that is not UTF-8 is reported
    with its line, wherever it is."""
    name = "stdin" if stream is not None and str(path) == "-" else str(path)
    if stream is not None:
        handle = stream
    else:
        try:
            handle = path.open("rb")
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        header = _read_header(handle.readline(MAX_LINE + 1), name)
    except ConfigError:
        handle.close()
        raise
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        handle.close()
        raise ConfigError(f"{name} is not a mnist-tui recording (no header line)")
    version = header.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= VERSION:
        handle.close()
        raise ConfigError(f"{name} is a recording of version {version!r}: this mnist-tui reads up to {VERSION}")

    def messages() -> Iterator[Recorded]:
        whole = 0
        with handle:
            for number, data in enumerate(iter(lambda: handle.readline(MAX_LINE + 1), b""), start=2):
                if len(data) > MAX_LINE:
                    raise ConfigError(f"{name} line {number}: longer than {MAX_LINE // (1024 * 1024)} MiB")
                try:
                    line = data.decode("utf-8")
                except UnicodeDecodeError as exc:
                    if not data.endswith(b"\n") and _cut_in_a_character(data):  # only the last line
                        raise TruncatedRecording(name, number, whole) from None
                    raise ConfigError(f"{name} line {number}: bad record ({_not_utf8(exc)})") from None
                if not line.strip():
                    continue
                try:
                    record = _record_from(json.loads(line), number)
                except (ValueError, ConfigError) as exc:
                    if isinstance(exc, json.JSONDecodeError) and not line.endswith("\n"):  # only the last line
                        raise TruncatedRecording(name, number, whole) from None
                    why = f"not JSON: {exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else exc
                    raise ConfigError(f"{name} line {number}: bad record ({why})") from None
                whole += 1
                yield record

    return header, messages()


def _record_from(raw: Any, line: int = 0) -> Recorded:
    """One message of a recording from its parsed line; ValueError or ConfigError saying what is wrong."""
    if not isinstance(raw, dict):
        raise ValueError(f"a JSON {_json_kind(raw)}, not an object")
    missing = [key for key in ("t", "topic", "payload") if key not in raw]
    if missing:
        raise ValueError("no " + " or ".join(repr(key) for key in missing))
    t, topic, payload = raw["t"], raw["topic"], raw["payload"]
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= MAX_OFFSET:
        raise ValueError(f"t is not a number of seconds from 0 to {MAX_OFFSET:,.0f}")
    if not isinstance(topic, str) or not topic:
        raise ValueError(f"topic is a JSON {_json_kind(topic)}, not a topic" if not isinstance(topic, str)
                         else "topic is empty")
    qos = raw.get("qos", 0)
    if isinstance(qos, bool) or not isinstance(qos, int) or qos not in (0, 1, 2):
        raise ValueError("qos is not 0, 1 or 2")
    retain = raw.get("retain", False)
    if not isinstance(retain, bool):
        raise ValueError("retain is not true or false")
    if not isinstance(payload, str):
        raise ValueError(f"payload is a JSON {_json_kind(payload)}, not a base64 string")
    try:
        data = base64.b64decode(payload, validate=True)
    except ValueError:
        raise ValueError("payload is not base64") from None
    props = raw.get("props")
    props_from_json(props)  # checked here, so a bad line is reported with its number
    return Recorded(float(t), topic, data, qos, retain, props or None, line)


def _json_kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "true/false", type(None): "null"}.get(
        type(value), "number")


class Recorder:
    """Subscribes to topic filters and writes every message to `out` as it arrives (not per message I/O
    on the network thread: a writer thread drains a bounded queue)."""

    def __init__(self, address: BrokerAddress, topics: list[str], out: IO[str], *, protocol: int = 5,
                 include_retained: bool = False, limit: int | None = None) -> None:
        self.address = address
        self.topics = topics
        self.out = out
        self.include_retained = include_retained
        self.limit = limit
        self.count = 0  # messages taken for the recording
        self.written = 0  # of those, written out
        self.dropped = 0
        self.done = threading.Event()
        self.write_error: OSError | None = None  # writing failed (a closed pipe, a full disk): recording ended
        self._abandon = threading.Event()  # stop waiting for a reader that does not read
        self._queue: queue.Queue[Recorded | None] = queue.Queue(maxsize=100_000)
        self._t0: float | None = None
        self._sub = Subscriber(address, default_client_id("record"), [(t, 1) for t in topics], self._on_message,
                               protocol=protocol, on_refused=self.done.set)
        self._writer = threading.Thread(target=self._write, name="record-writer", daemon=True)

    @property
    def error(self) -> str | None:
        return self._sub.error

    def start(self, timeout: float = 15.0) -> None:
        """Connect and subscribe; the header is written once the broker acknowledged the subscription,
        so everything published after it exists is in the recording."""
        try:
            self._sub.start(timeout)
        except BrokerError as exc:
            raise ConfigError(str(exc)) from None
        self.out.write(json.dumps({"format": FORMAT, "version": VERSION, "started": time.time(),
                                   "topics": self.topics}) + "\n")
        self.out.flush()
        self._writer.start()

    def _on_message(self, msg: mqtt.MQTTMessage) -> None:
        if msg.retain and not self.include_retained:
            return  # state from before the recording started, not traffic
        if self.done.is_set():
            return
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        try:
            self._queue.put_nowait(Recorded(now - self._t0, msg.topic, payload_of(msg), msg.qos, bool(msg.retain),
                                            props_to_json(msg.properties)))
        except queue.Full:
            self.dropped += 1
            return
        self.count += 1
        if self.limit is not None and self.count >= self.limit:
            self.done.set()

    def _write(self) -> None:
        """Write what is queued, whole lines at a time, straight to the file descriptor: a reader that stops
        reading blocks no lock that Python needs at exit, and a stop gives up waiting for it (`_abandon`)."""
        self.out.flush()  # the header, written through `out`
        fd = self.out.fileno()
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    break
                lines = [item.to_json()]
                end = False
                while len(lines) < 256:  # what else is queued goes in the same write
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        end = True
                        break
                    lines.append(more.to_json())
                if not self._send(fd, ("\n".join(lines) + "\n").encode("utf-8")):
                    return
                self.written += len(lines)
                if end:
                    break
        except OSError as exc:  # `record - | head`: the reader is gone; or the disk is full
            self.write_error = exc
            self.done.set()

    def _send(self, fd: int, data: bytes) -> bool:
        """All of `data` to `fd`, a page at a time once it takes one (a pipe never blocks then); False when
        the stop gave up on the reader first."""
        view = memoryview(data)
        while view:
            if self._abandon.is_set():
                return False
            _r, ready, _x = select.select([], [fd], [], 0.1)
            if ready:
                view = view[os.write(fd, view[:PIPE_PAGE]):]
        return True

    def stop(self, grace: float = 5.0) -> None:
        """Stop recording; what is queued is written within `grace` seconds, and what a reader that does not
        read leaves unwritten is left (`count - written`)."""
        self.done.set()
        self._sub.stop()
        deadline = time.monotonic() + grace
        while self._writer.is_alive() and time.monotonic() < deadline:  # the queue may be full
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=0.1)
                break
        self._writer.join(timeout=max(0.0, deadline - time.monotonic()))
        if self._writer.is_alive():
            self._abandon.set()
            self._writer.join(timeout=1.0)

    def reader_gone(self) -> bool:
        """The reading end of `out`, a pipe, is closed (`record - | head` once head is done): poll says so
        before anything is written to it."""
        try:
            poller = select.poll()
            poller.register(self.out.fileno(), select.POLLOUT)
            return any(events & select.POLLERR for _fd, events in poller.poll(0))
        except (OSError, ValueError):
            return False


class _Link:
    """What the broker told the replay's connection: that it is up, its maximum packet size (MQTT 5), and
    why it dropped the connection. A broker drops it for a publish it refuses (a packet over its maximum
    size, a topic it does not take); paho would reconnect and send a refused QoS 1 message again for ever."""

    def __init__(self, client: mqtt.Client) -> None:
        self.up = threading.Event()
        self.max_packet: int | None = None
        self.refused: str | None = None  # the reason the broker gave, set once it dropped the connection
        self.refusal: str | None = None
        self.grace_until: float | None = None  # when a stopped or failed replay stops waiting for the broker
        self.rejected = 0  # publishes the broker answered with a failure reason code (MQTT 5)
        self.rejection: str | None = None  # the first of those reasons
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish

    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: Any, props: Any = None) -> None:
        if getattr(rc, "is_failure", False):
            self.refusal = str(rc)
        self.max_packet = max_packet_size(props)
        self.up.set()

    def _on_publish(self, _c: mqtt.Client, _u: Any, _mid: int, rc: Any, _p: Any = None) -> None:
        if getattr(rc, "is_failure", False):  # not authorized, quota exceeded, ...: the message is not taken
            self.rejected += 1
            self.rejection = self.rejection or str(rc)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        if self.refused is None:
            self.refused = str(rc) or "no reason given"

    def check(self, sent: int) -> None:
        if self.refused is not None:
            raise BrokerError(f"the connection to the broker was lost after {sent:,} messages were sent "
                              f"({self.refused}): did it refuse one of them?")


def _counted(n: int, one: str, many: str | None = None) -> str:
    """1 message, 2 messages, 1,234 passes."""
    return f"{n:,} {one if n == 1 else many or one + 's'}"


def _where(rec: Recorded, sent: int) -> str:
    return f"line {rec.line:,}" if rec.line else f"message {sent + 1:,}"


class Replayed(NamedTuple):
    sent: int  # messages published, over every pass
    passes: int  # passes played to their end or to a stop


def replay(address: BrokerAddress, messages: Iterable[Recorded], *, speed: float = 1.0, protocol: int = 5,
           stop: threading.Event | SignalStop | None = None, topic_map: dict[str, str] | None = None,
           again: Callable[[], Iterable[Recorded]] | None = None) -> Replayed:
    """Publish the messages with their recorded spacing divided by `speed` (0 = as fast as possible); with
    `again` (--loop), then the messages it gives, pass after pass on the same connection, until stopped.

    BrokerError when the broker does not answer the connection, when a message is larger than the broker
    takes (MQTT 5 says how large), or when it closes the connection on a message it refuses."""
    stop = stop or threading.Event()
    client = make_client(address, default_client_id("replay"), protocol=protocol)
    link = _Link(client)
    try:
        client.connect(address.host, address.port, **connect_kwargs(client))
    except OSError as exc:  # the broker went away since the probe
        raise BrokerError(f"cannot reach broker at {address.url}: {exc.strerror or exc}") from None
    client.loop_start()
    sent = 0
    passes = 0
    try:
        if not link.up.wait(15.0):
            raise BrokerError(f"the broker at {address.url} did not answer the connection within 15 s")
        if link.refusal is not None:
            raise BrokerError(f"the broker at {address.url} refused the connection: {link.refusal}")
        while True:
            before = sent
            try:
                sent = _play(client, link, messages, sent, speed, protocol, stop, topic_map or {})
            except TruncatedRecording as exc:
                exc.replayed = before + exc.whole  # the passes before count too
                raise
            passes += 1
            # a pass without a message ends the loop (a recording without one looped in a busy loop)
            if again is None or stop.is_set() or sent == before:
                break
            try:
                messages = again()
            except ConfigError as exc:  # the file went away or changed between two passes
                raise ConfigError(f"{exc} (after {_counted(sent, 'message')} replayed in "
                                  f"{_counted(passes, 'pass', 'passes')})") from None
    finally:
        client.disconnect()
        client.loop_stop()
    return Replayed(sent, passes)


def _play(client: FastClient, link: _Link, messages: Iterable[Recorded], sent: int, speed: float, protocol: int,
          stop: threading.Event | SignalStop, topic_map: dict[str, str]) -> int:
    """One pass: publish the messages, wait until the broker has taken them; `sent` counts on from the passes
    before (an error says how many were replayed in all)."""
    pending: list[mqtt.MQTTMessageInfo] = []
    start = time.monotonic()
    try:
        for rec in _records(messages, stop):
            link.check(sent)
            if speed > 0:
                delay = start + rec.t / speed - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    break
            topic = topic_map.get(rec.topic, rec.topic)
            try:
                validate_topic(topic)  # after --map: a topic a broker refuses can be mapped to another
            except ConfigError as exc:
                hint = "" if "\0" in topic else " (--map FROM=TO gives it another topic)"  # no NUL in argv
                raise ConfigError(f"{_where(rec, sent)}: {exc}; replayed the {sent:,} before it{hint}") from None
            props = props_from_json(rec.props) if protocol == 5 else None
            if link.max_packet is not None and (
                    size := publish_packet_size(topic, len(rec.payload), rec.qos, props)) > link.max_packet:
                raise BrokerError(f"{_where(rec, sent)} (on {visible_text(topic)!r}) is a packet of {size:,} "
                                  f"bytes: the broker takes at most {link.max_packet:,}; replayed the "
                                  f"{sent:,} before it")
            # FastClient keeps QoS 1 and 2 to what the broker takes in flight (engine/mqtt/fastclient.py)
            info = client.publish(topic, rec.payload, qos=rec.qos, retain=rec.retain, properties=props)
            pending.append(info)
            sent += 1
            if len(pending) > 1000:
                if not _wait_for(pending[0], link, sent, stop):
                    if stop.is_set():
                        break  # _settle says what was not confirmed
                    raise BrokerError(f"the broker did not confirm a message within 30 s after {sent:,} were "
                                      "sent")
                pending.pop(0)
    except (ConfigError, BrokerError):  # a damaged line: what was published before it still reaches the broker
        with contextlib.suppress(BrokerError):  # the first error is the one to tell
            _settle(client, pending, link, sent, stop, failed=True)
        raise
    _settle(client, pending, link, sent, stop)
    return sent


def _records(messages: Iterable[Recorded], stop: threading.Event | SignalStop) -> Iterator[Recorded]:
    """The messages until a stop: a signal ends a read that waits for a line of stdin (SignalStop.interruptible),
    which Python would otherwise go on waiting for."""
    reading = stop.interruptible if isinstance(stop, SignalStop) else contextlib.nullcontext
    it = iter(messages)
    while not stop.is_set():
        try:
            with reading():
                rec = next(it)
        except (StopIteration, Interrupted):
            return
        if stop.is_set():  # a line read after a stop is not played
            return
        yield rec


STOP_GRACE = 2.0  # seconds a stopped replay still waits for the broker to confirm what it sent


def _wait_for(info: mqtt.MQTTMessageInfo, link: _Link, sent: int, stop: threading.Event | SignalStop,
              timeout: float = 30.0) -> bool:
    """Wait until the broker has taken one publish: True once it has; BrokerError as soon as it dropped the
    connection; False when `timeout` passes, or STOP_GRACE after a stop was asked for."""
    deadline = time.monotonic() + timeout
    while info.rc == mqtt.MQTT_ERR_SUCCESS and not info.is_published():
        link.check(sent)
        if stop.is_set() and link.grace_until is None:
            link.grace_until = time.monotonic() + STOP_GRACE  # one grace for all the waits that follow
        if time.monotonic() >= min(deadline, link.grace_until or deadline):
            return False
        with contextlib.suppress(RuntimeError, ValueError):
            info.wait_for_publish(timeout=0.1)
    return True


def _settle(client: FastClient, pending: list[mqtt.MQTTMessageInfo], link: _Link, sent: int,
            stop: threading.Event | SignalStop, failed: bool = False) -> None:
    """Wait until the broker has taken each publish (QoS 1 and 2 beyond paho's in-flight window are sent then),
    then for a round trip: once the broker answers it, it has read every publish before, and a refused QoS 0
    message, which it answers by closing the connection without a word, has been refused. A stop asked for
    meanwhile waits STOP_GRACE at most (a broker that stopped answering held a Ctrl-C for a minute)."""
    if failed:  # a wait failed already (a broker that stopped answering): the rest get the grace only
        link.grace_until = link.grace_until or time.monotonic() + STOP_GRACE
    for i, info in enumerate(pending):
        if not _wait_for(info, link, sent, stop):
            raise BrokerError(f"the broker had not confirmed the last {len(pending) - i:,} of the {sent:,} "
                              f"messages sent {'when replay was stopped' if stop.is_set() else 'within 30 s'}")
    wait = max(0.1, link.grace_until - time.monotonic()) if link.grace_until is not None else 15.0
    if link.refused is None and not client.round_trip(wait):
        link.check(sent)
        raise BrokerError(f"the broker did not answer after {sent:,} messages: whether it took the last of them "
                          "is not known")
    link.check(sent)
    if link.rejected:
        raise BrokerError(f"the broker refused {link.rejected:,} of the {sent:,} messages sent (the first: "
                          f"{link.rejection})")


# ----- command line -----
def add_record_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="where to write the recording (NDJSON); - for stdout")
    parser.add_argument("--topic", "-t", action="append", dest="record_topics", metavar="FILTER",
                        help="topic filter to record (repeatable; default: the image and result topics)")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--messages", type=int, default=None, help="stop after this many messages")
    parser.add_argument("--include-retained", action="store_true",
                        help="also record retained messages the broker hands over at subscription")
    parser.add_argument("--force", action="store_true",
                        help="overwrite FILE if it exists (a symlink is never followed)")


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="a recording made by `mnist-tui record`; - for stdin")
    parser.add_argument("--loop", action="store_true", help="play the recording again and again until stopped")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="1 = recorded timing, 2 = twice as fast, 0 = as fast as possible")
    parser.add_argument("--map", action="append", default=[], metavar="FROM=TO",
                        help="publish messages of topic FROM on topic TO (repeatable)")


def _connect_target(args: argparse.Namespace) -> tuple[BrokerAddress, int]:
    from engine.options import address_from_args, protocols_from_args

    address = address_from_args(args)
    if address is None:
        raise ConfigError("record and replay need --broker URL (the broker whose traffic to keep or feed)")
    return address, probe(address, protocols=protocols_from_args(args) or (5, 4))


def _stop_on_signals() -> SignalStop:
    stop = SignalStop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop.handler)
    return stop


def open_new_file(path: Path, *, overwrite: bool = False) -> IO[str]:
    """`path` opened for writing, readable by its owner only (0600); never through a symlink.

    An existing file is refused unless `overwrite`; ConfigError with one line otherwise.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} exists already: not overwritten (--force overwrites it)") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(f"{path} is a symlink: not followed") from None
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    os.fchmod(fd, 0o600)  # an overwritten file keeps its old mode otherwise
    return open(fd, "w", encoding="utf-8")


def run_record(args: argparse.Namespace) -> int:
    if args.duration is not None and not 0 < args.duration <= MAX_OFFSET:  # also refuses nan
        raise ConfigError("--duration must be a number of seconds above 0")
    address, protocol = _connect_target(args)
    topics = args.record_topics or [args.image_topic, args.result_topic]
    for t in topics:
        try:
            validate_watch_filter(t)
        except ConfigError as exc:  # said once: the check names the filter itself where it says what is wrong in it
            raise (exc if str(exc).startswith("bad filter") else ConfigError(f"bad filter {t!r}: {exc}")) from None
    to_stdout = str(args.file) == "-"
    out = sys.stdout if to_stdout else open_new_file(args.file, overwrite=args.force)
    stop = _stop_on_signals()
    try:
        _record(args, address, protocol, topics, out, to_stdout, stop)
    except BrokenPipeError:
        if not to_stdout:
            raise ConfigError(f"cannot write {args.file}: broken pipe") from None
        _stdout_gone()
    except OSError as exc:  # a full disk
        raise ConfigError(f"cannot write {'stdout' if to_stdout else args.file}: {exc.strerror or exc}") from None
    return 0


def _stdout_gone() -> None:
    """stdout's reader closed it (`record - | head`): that ends the recording, without a word; what Python
    would flush into it at exit goes nowhere instead of into a second broken pipe."""
    with contextlib.suppress(OSError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _record(args: argparse.Namespace, address: BrokerAddress, protocol: int, topics: list[str], out: IO[str],
            to_stdout: bool, stop: SignalStop) -> None:
    with contextlib.nullcontext(out) if to_stdout else out:
        rec = Recorder(address, topics, out, protocol=protocol, include_retained=args.include_retained,
                       limit=args.messages)
        rec.start()
        deadline = time.monotonic() + args.duration if args.duration else None
        reader_gone = False
        while not (stop.is_set() or rec.done.is_set()):
            if deadline is not None and time.monotonic() >= deadline:
                break
            if to_stdout and rec.reader_gone():  # nothing to write yet, and nobody to read it
                reader_gone = True
                break
            stop.wait(0.1)
        rec.stop()
    if reader_gone:
        raise BrokenPipeError
    if rec.write_error is not None:
        raise rec.write_error  # run_record says what it means
    if rec.error:
        raise ConfigError(rec.error)
    where = "stdout" if to_stdout else args.file
    if rec.written < rec.count:
        raise ConfigError(f"{where} was not read: {rec.count - rec.written:,} of the {rec.count:,} messages recorded "
                          "were not written")
    print(f"recorded {rec.written} messages to {where}" + (f" ({rec.dropped} dropped)" if rec.dropped else ""),
          file=sys.stderr if to_stdout else sys.stdout)  # stdout holds the recording itself


def run_replay(args: argparse.Namespace) -> int:
    if not 0 <= args.speed <= 1e6:  # also refuses nan
        raise ConfigError("--speed must be from 0 (as fast as it goes) to 1,000,000")
    mapping = {}
    for item in args.map:
        src, sep, dst = item.partition("=")
        if not sep or not src or not dst:
            raise ConfigError(f"bad --map {item!r}: use FROM=TO with plain topic names")
        try:
            validate_topic(dst)  # no wildcards, nothing a broker refuses
        except ConfigError as exc:
            raise ConfigError(f"bad --map {item!r}: {exc}") from None
        mapping[src] = dst
    from_stdin = str(args.file) == "-"
    where = "stdin" if from_stdin else args.file
    messages: Iterable[Recorded]
    _header, messages = read_recording(args.file, sys.stdin.buffer if from_stdin else None)
    address, protocol = _connect_target(args)
    stop = _stop_on_signals()
    kept: list[Recorded] | None = None
    if args.loop and from_stdin:
        try:
            kept = list(_records(messages, stop))  # stdin is read once: the loop plays it from memory
        except TruncatedRecording as exc:
            raise ConfigError(f"recording stdin is truncated: line {exc.line} is cut off; nothing replayed "
                              "(--loop reads all of stdin before playing it)") from None
        messages = kept  # a stop while reading it is set: replay plays nothing

    def again() -> Iterable[Recorded]:
        return kept if kept is not None else read_recording(args.file)[1]

    try:
        sent, passes = replay(address, messages, speed=args.speed, protocol=protocol, stop=stop, topic_map=mapping,
                              again=again if args.loop else None)
    except TruncatedRecording as exc:  # a damaged line, like a bad record: exit status 1
        whole = _counted(exc.replayed, "whole message")
        raise ConfigError(f"recording {where} is truncated: line {exc.line} is cut off; replayed the {whole} "
                          "before it") from None
    times = f" in {_counted(passes, 'pass', 'passes')}" if args.loop else ""
    print(f"replayed {_counted(sent, 'message')} from {where}{times}")
    return 0
