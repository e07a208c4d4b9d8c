"""A paho client that moves many small messages per system call.

paho 2.x reads a packet with three to five `recv` calls (its first byte, each byte of its length,
its body) and goes back to `select` after every packet when nothing awaits an acknowledgement. It
wakes its network thread with one `send` on a socket pair for every `publish`. Each of those calls
releases and retakes the GIL; for 28x28 digits at thousands per second the worker's two threads
spent more time handing the GIL to each other than decoding (py-spy of a full-speed bench).

`FastClient` changes only how bytes reach paho, not what paho does with them:
- reads: one `recv` of up to 64 KiB fills a buffer, and `loop_read` handles every packet in it
  before it returns (one refill per call, so writes and keepalives still get their turn); a packet
  that lies whole in the buffer is framed in one step, not read byte by byte, and a run of whole QoS 0/1
  PUBLISH packets is handled in one loop, without paho's read loop, packet dict and dispatch per packet;
- `publish_many`: publishes a batch with one wake-up of the network thread instead of one per message;
- the in-flight window: the QoS 1/2 publishes waiting behind it are kept in a queue of their own, so an
  acknowledgement sends the next one at once (paho walks every message in flight to find it);
- `after_acknowledged(fn)` calls `fn` once every QoS 1/2 publish handed over so far is acknowledged (a
  worker acknowledges an image only once the broker has its result);
- writes: a run of queued packets that paho does nothing with once written goes out in one `send`:
  acknowledgements (PUBACK, PUBREC, PUBREL, PUBCOMP), QoS 1/2 PUBLISH packets (paho completes those
  on the broker's answer) and, when nothing listens for their individual `on_publish`, QoS 0 PUBLISH
  packets (each of their infos still marked published once written);
- incoming PUBLISH packets at QoS 0 and 1 without MQTT 5 properties (an image), or with only those our
  roles send or a subscriber is given with every message (a result's ASCII Content Type, an image's
  Message Expiry Interval, a Payload Format Indicator, the Subscription Identifiers the console's
  observer asks for), are decoded here: paho builds and clears a `Properties` object of 27 names for
  each MQTT 5 message and decodes each property through its name tables, about 40-100 us; an empty one
  is copied from a template instead and the values are set on it as paho's decoder sets them.
  Anything else (user properties, a response topic, a Content Type that is not ASCII, a repeated or
  malformed property) goes to paho;
- acknowledgements: a plain PUBACK (success, or MQTT 5's "no matching subscribers", without properties) is
  read here and handed to on_publish with one shared reason code and empty properties: paho makes both for
  each, and a ReasonCode copies its table of names as it is made (about 10 us of a worker's CPU per QoS 1
  result);
- skipping: a message whose payload `skip_when(payload)` finds unwanted (a worker's image older than
  its `--max-wait`) is dropped as it is decoded, a QoS 1 one acknowledged, and counted in `skipped`,
  without a message object, paho's dispatch or the role's callback; in a run of whole packets a QoS 1
  one is asked about without copying its packet, and the run's PUBACKs are queued as one packet. A
  message kept is marked (`skip_asked`), so that on_message need not ask again;
- shedding: while `shed_when()` is true, whole QoS 0 PUBLISH packets at the head of what one `recv`
  brought in are dropped by their length alone (about 1 us each, against 10-20 us through paho and
  the role's callback) and counted in `shed`. A worker sets it while its queue is full: offered ten
  times what it can take, it spends its core on inference, not on reading and dropping one by one;
- counting only: `count_only(topic, payload)` is asked about each plain QoS 0 PUBLISH (not retained) of a
  run before it is decoded; True means the caller has counted it and wants no more of it (counted in
  `counted_only`), so it costs about 5 us instead of a message object and `on_message`. The console's
  observer uses it to decode only a sample of the results and images at thousands a second;
- pausing: with `read_pause` set, the network loop waits that long after a read that emptied the socket
  before it selects again, so the next read takes in what came meanwhile at once (the console's observer:
  at a few thousand messages a second each read otherwise brings in a handful, and its wake-up, `select`
  and `recv` cost more than the messages). A publish waits as long at most. A message so read came
  during the pause: `arrived_after` says since when, so that a time taken from its arrival can leave the
  pause out.
Everything else (protocol, sessions, acknowledgements, reconnects, TLS) is paho's own.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal, cast

import paho.mqtt.client as mqtt
from paho.mqtt import _packet
from paho.mqtt.client import (
    MQTTErrorCode,
    MQTTMessage,
    MQTTv5,
    _ConnectionState,
    mqtt_ms_queued,
    mqtt_ms_wait_for_puback,
    mqtt_ms_wait_for_pubrec,
)
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger(__name__)

_READ_SIZE = 65536
_WRITE_COALESCE = 65536  # at most this many bytes of queued packets joined into one send
_PUBLISH = 0x30
_DISCONNECTING = _ConnectionState.MQTT_CS_DISCONNECTING
_PUBACK = 0x40
_PUBACK_SUCCESS = ReasonCode(PacketTypes.PUBACK)  # shared by every plain PUBACK read (see _handle_pubackcomp)
NO_MATCHING_SUBSCRIBERS = 0x10  # MQTT 5: the broker took the message, and nobody was subscribed to it
_PUBACK_NO_SUBSCRIBERS = ReasonCode(PacketTypes.PUBACK, identifier=NO_MATCHING_SUBSCRIBERS)
_PUBACK_PROPERTIES = Properties(PacketTypes.PUBACK)
_PUBACK_HEAD = bytes((_PUBACK, 2))  # a PUBACK: its type, its length (2) and then the packet id (MQTT 5: success)
_PUBCOMP = 0x70  # PUBACK, PUBREC, PUBREL and PUBCOMP: 0x40-0x70 (paho's _send_command_with_mid)


_EMPTY_PUBLISH_PROPERTIES = Properties(PacketTypes.PUBLISH)


def _capped(window: int, most: int) -> int:
    """An in-flight window of at most `most` (paho's 0 means no limit)."""
    return min(window, most) if window else most


def _empty_publish_properties() -> Properties:
    """A fresh, empty PUBLISH Properties, sharing the template's read-only name tables."""
    props = Properties.__new__(Properties)
    props.__dict__.update(_EMPTY_PUBLISH_PROPERTIES.__dict__)
    return props


def _fixed_header(remaining: int) -> bytes:
    """The first bytes of a QoS 0 PUBLISH without flags: type and remaining length (MQTT's varint)."""
    if remaining < 128:
        return bytes((_PUBLISH, remaining))
    if remaining < 16384:
        return bytes((_PUBLISH, (remaining & 0x7F) | 0x80, remaining >> 7))
    out = bytearray((_PUBLISH,))
    while True:
        byte, remaining = remaining & 0x7F, remaining >> 7
        out.append(byte | 0x80 if remaining else byte)
        if not remaining:
            return bytes(out)


class _IncomingMessage(MQTTMessage):
    """A received message whose `info` (a threading.Condition inside; unused for received messages)
    is made only if someone asks for it."""

    skip_asked = False  # skip_when was asked of it and kept it (see `skip_asked`)

    @property
    def info(self) -> mqtt.MQTTMessageInfo:
        info = self.__dict__.get("_info")
        if info is None:
            info = self.__dict__["_info"] = mqtt.MQTTMessageInfo(self.mid)
        return info

    @info.setter
    def info(self, value: mqtt.MQTTMessageInfo) -> None:
        self.__dict__["_info"] = value


class _Infos:
    """Stands for the MQTTMessageInfo of several QoS 0 packets sent together."""

    __slots__ = ("infos",)

    def __init__(self, infos: list[Any]) -> None:
        self.infos = infos

    @property
    def rc(self) -> MQTTErrorCode:
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    @rc.setter
    def rc(self, value: MQTTErrorCode) -> None:
        """paho's reconnect marks queued QoS 0 packets lost (rc, then set as published): each of them."""
        for info in self.infos:
            if info is not None:
                info.rc = value

    def _set_as_published(self) -> None:
        for info in self.infos:
            if info is not None:
                info._set_as_published()


def skip_asked(msg: mqtt.MQTTMessage) -> bool:
    """Whether the client's `skip_when` saw this message and kept it: on_message need not ask again (paho
    decodes a message with other MQTT 5 properties itself, and does not ask)."""
    return getattr(msg, "skip_asked", False) is True


def payload_of(msg: mqtt.MQTTMessage) -> bytes:
    """A received message's payload. paho types it `bytes | bytearray`; FastClient hands bytes (see
    `_handle_publish`), and every client of the engine is one (engine/mqtt/client.py)."""
    return cast(bytes, msg.payload)


class FastClient(mqtt.Client):
    """paho's Client with buffered reads, batched publish wake-ups and coalesced small writes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = bytearray()
        self._rbuf_sock: Any = None
        self._refills = -1  # < 0: unlimited (outside loop_read)
        self._quiet_lock = threading.Lock()
        self._quiet_depth = 0  # threads inside one_wakeup()
        self._quiet_wake: socket.socket | None = None  # paho's wake-up socket, held back meanwhile
        self.shed_when: Callable[[], bool] | None = None  # True: drop incoming QoS 0 publishes unread
        self.shed = 0  # QoS 0 publishes dropped so (shedding)
        self.on_shed: Callable[[], None] | None = None  # called after a read in which some were shed
        # True for a payload: that QoS 0/1 message is dropped as it is decoded (a QoS 1 one acknowledged),
        # before paho makes a message of it or calls on_message
        self.skip_when: Callable[[bytes], bool] | None = None
        self.skipped = 0  # messages dropped so
        self._skip_acks: list[int] | None = None  # during a run of _read_publishes: the skipped QoS 1 ids
        # True for (topic, payload) of a plain QoS 0 message: the caller counted it, and it is not decoded
        self.count_only: Callable[[bytes, bytes], bool] | None = None
        self.counted_only = 0  # messages so
        self._declined = False  # count_only said no to the packet at the head, which paho now decodes
        # seconds the network loop waits after a read that emptied the socket, so that the next one takes
        # more at once (a viewer's client: one read per message costs more than the message)
        self.read_pause = 0.0
        # the last recv emptied a plain TCP socket (TLS and websockets hand over a record or frame a recv:
        # a short one says nothing about what waits behind it)
        self._short_read = False
        self._emptied_at = 0.0  # time.time() of the last read that emptied the socket (with read_pause)
        self._paused_at: float | None = None  # that time, for the read right after a pause that data ended
        # For the messages of the read being handled: a time before which none of them had arrived (the read
        # that emptied the socket before a pause), when this read came right after that pause, found data waiting
        # and emptied the socket; None otherwise (then they are read as they come). A viewer that times a message
        # from its arrival uses it to leave the pause out of the figure.
        self.arrived_after: float | None = None
        self._queued_out: deque[int] = deque()  # mids of QoS 1/2 publishes waiting behind the in-flight window
        self._mnist_in_connack = False  # a CONNACK is being handled: publishes wait (see _handle_connack)
        self._mnist_max_inflight: int | None = None  # the window asked for, read at the first CONNACK
        self._mnist_sends_qos2 = False  # on MQTT 3.1.1 such a client keeps to QOS2_WINDOW_311
        # after_acknowledged: QoS 1/2 publishes are numbered in the order they are handed over
        self._published = 0  # the number of the last one
        self._number_of: dict[int, int] = {}  # mid -> number, until acknowledged
        self._unacked: deque[int] = deque()  # numbers, oldest first (acknowledged ones leave from the head)
        self._acked: set[int] = set()  # acknowledged, behind an older one that is not
        self._waiting: deque[tuple[int, Callable[[], None]]] = deque()  # (number, fn): fn once it is acknowledged
        self._pings_lock = threading.RLock()  # the network thread sends keep-alive pings, round_trip its own
        self._pings_sent = 0  # PINGREQs queued so far, keep-alive ones among them (see round_trip)
        self._pings_answered = 0  # PINGRESPs read so far (the broker answers them in order)

    # ----- reading -----
    def _sock_recv(self, bufsize: int) -> bytes:
        buf = self._rbuf
        if self._rbuf_sock is not self._sock:  # a new connection: nothing buffered belongs to it
            buf.clear()
            self._rbuf_sock = self._sock
            self._declined = False
            self._paused_at = None  # a pause of the connection before says nothing of this one's data
        if not buf:
            if self._refills == 0:
                raise BlockingIOError()
            if self._refills > 0:
                self._refills -= 1
            data = self._recv_chunk()
            if len(data) <= bufsize:
                return data  # includes b"" (closed by the broker)
            buf += data
        chunk = bytes(buf[:bufsize])
        del buf[:bufsize]
        return chunk

    def _recv_chunk(self) -> bytes:
        """One `recv` of up to 64 KiB from paho's socket, noting whether it emptied a plain TCP socket."""
        paused_at, self._paused_at = self._paused_at, None
        data = super()._sock_recv(_READ_SIZE)
        self._short_read = len(data) < _READ_SIZE and type(self._sock) is socket.socket
        # a full read after a pause may hold bytes that waited longer (a backlog): no bound for those
        self.arrived_after = paused_at if self._short_read else None
        if self._short_read and self.read_pause:
            self._emptied_at = time.time()
        return data

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Handle every packet that one `recv` brought in (paho's own loop_read takes one per call); none
        once disconnect() was called (from on_message: the rest of the read is not handed over)."""
        self._refills = 1
        shed_when = self.shed_when
        try:
            while self._state != _DISCONNECTING:
                if not self._in_packet["command"]:
                    if shed_when is not None and shed_when():
                        self._skim()
                    if self._rbuf:
                        rc, shedding = self._read_publishes(shed_when)
                        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                            return self._loop_rc_handle(rc)
                        if self._sock is None:
                            return MQTTErrorCode.MQTT_ERR_NO_CONN
                        if self._state == _DISCONNECTING:  # on_message called disconnect(): nothing more
                            return MQTTErrorCode.MQTT_ERR_SUCCESS
                        if shedding:
                            continue  # the whole QoS 0 packet it stopped at goes to _skim
                rc = super().loop_read(max_packets)
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or not self._rbuf or self._sock is None:
                    return rc
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        finally:
            self._refills = -1

    def _loop(self, timeout: float = 1.0) -> MQTTErrorCode:
        """paho's, but bytes already in the read buffer, and a whole packet held in `_in_packet`, are
        handled first: `select` cannot see them. They are left there only when on_message raised out of
        `loop_read` (suppress_exceptions off). With `read_pause`, a read that emptied the socket is
        followed by that pause."""
        if self.read_pause and self._short_read:
            self._short_read = False
            emptied = self._emptied_at  # the read before emptied the socket: what comes next came after
            time.sleep(min(self.read_pause, timeout))
            # only what came during the pause waited for it: when nothing did, the next read follows the data
            self._paused_at = emptied if self._readable() else None
        packet = self._in_packet
        held = packet["command"] and packet["have_remaining"] and not packet["to_process"]
        if (self._rbuf or held) and self._sock is not None and self._rbuf_sock is self._sock:
            rc = self.loop_read()
            if rc or self._sock is None:
                return rc
            timeout = 0.0
        return super()._loop(timeout)

    def _readable(self) -> bool:
        """Whether the socket has data to read now (a select that does not wait)."""
        sock = self._sock
        if sock is None:
            return False
        try:
            return bool(select.select([sock], [], [], 0)[0])
        except (OSError, ValueError, TypeError):  # closed meanwhile
            return False

    def _packet_read(self) -> MQTTErrorCode:
        """paho's, but a packet that lies whole in the read buffer is framed here in one step (paho asks
        for its first byte, each byte of its length and its body in separate reads)."""
        packet = self._in_packet
        buf = self._rbuf
        if not packet["command"] and len(buf) >= 2 and self._rbuf_sock is self._sock:
            found = _varint(buf, 1, len(buf))
            if found is not None and found[1] + found[0] <= len(buf):
                length, start = found
                packet["command"] = buf[0]
                packet["have_remaining"] = 1
                packet["remaining_length"] = length
                packet["to_process"] = 0
                packet["packet"] = buf[start : start + length]
                del buf[: start + length]
        return super()._packet_read()

    def _skim(self) -> None:
        """Drop the whole QoS 0 PUBLISH packets at the head of the read buffer (refilled once if empty).

        Called only between packets; stops at the first packet that is anything else, or incomplete,
        which then goes to paho as usual.
        """
        buf = self._rbuf
        if self._rbuf_sock is not self._sock:
            buf.clear()
            self._rbuf_sock = self._sock
        if not buf:
            if self._refills == 0:
                return
            try:
                data = self._recv_chunk()
            except (OSError, ConnectionError):  # includes BlockingIOError: paho's own read sees it again
                return
            if self._refills > 0:
                self._refills -= 1
            if not data:
                return  # closed by the broker: the next read says so to paho
            buf += data
        end = len(buf)
        pos = 0
        dropped = 0
        while pos + 2 <= end:
            head = buf[pos]
            if head & 0xF6 != _PUBLISH:  # not a PUBLISH, or QoS 1/2 (those are never dropped unacknowledged)
                break
            i = pos + 1
            length = 0
            shift = 0
            while i < end and shift <= 21:
                byte = buf[i]
                i += 1
                length |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    break
                shift += 7
            else:
                break  # the length is cut off (or malformed: paho reports that)
            if i + length > end:
                break
            pos = i + length
            dropped += 1
        if pos:
            del buf[:pos]
            self.shed += dropped
            if dropped and self.on_shed is not None:
                self.on_shed()

    def _read_publishes(self, shed_when: Callable[[], bool] | None) -> tuple[MQTTErrorCode, bool]:
        """Handle the whole QoS 0/1 PUBLISH packets at the head of the read buffer in one loop.

        Called only between packets. paho's way costs, per packet, its read loop, a packet dict built and
        reset, a dispatch on the type and a lock for the time of the last read; here that is paid once
        for the run. The run stops at anything else (another type, QoS 2, a packet cut off, one that
        `_decode_publish` leaves to paho), which then goes to paho as usual, and before a whole QoS 0
        packet once `shed_when()` is true: then (rc, True), and `loop_read` sheds the rest by their lengths.

        When on_message raises, the packet is left where paho leaves it (whole in `_in_packet`): paho
        hands it over again on the next read, and acknowledges a QoS 1 one once on_message returns.
        """
        buf = self._rbuf
        if self._rbuf_sock is not self._sock:
            return MQTTErrorCode.MQTT_ERR_SUCCESS, False  # a new connection: _sock_recv drops the old bytes
        end = len(buf)
        pos = 0
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        shedding = False
        count_only = self.count_only
        skip_when = self.skip_when
        v5 = self._protocol == MQTTv5
        acks = self._skip_acks = []
        try:
            with self.one_wakeup(wake_at_end=False):  # on the network thread: its next pass writes the PUBACKs
                while pos + 2 <= end:
                    header = buf[pos]
                    if header & 0xF4 != _PUBLISH:
                        break  # not a PUBLISH, or QoS 2 (or the invalid QoS 3): paho's
                    length = buf[pos + 1]
                    start = pos + 2
                    if length & 0x80:
                        found = _varint(buf, pos + 1, end)
                        if found is None:
                            break
                        length, start = found
                    stop = start + length
                    if stop > end:
                        break
                    if shed_when is not None and not header & 0x06 and shed_when():
                        shedding = True
                        break
                    kept = False  # skip_when asked and kept it
                    if skip_when is not None and header & 0x06 == 0x02:  # QoS 1: asked here, without a copy
                        skipped = self._skipped_here(buf, start, stop, v5)
                        if skipped is not None and skipped >= 0:
                            acks.append(skipped)
                            pos = stop
                            continue
                        kept = skipped is not None
                    asked = False
                    if count_only is not None and not header & 0x07:
                        asked = True
                        if self._counted_only(count_only, buf, start, stop):
                            pos = stop
                            continue
                    packet = buf[start:stop]
                    try:
                        decoded = self._decode_publish(header, packet, kept)
                    except BaseException:  # on_message raised (suppress_exceptions off): paho's state, see above
                        pos = stop
                        held = self._in_packet
                        held["command"], held["have_remaining"], held["remaining_length"] = header, 1, length
                        held["to_process"], held["pos"], held["packet"] = 0, 0, packet
                        raise
                    if decoded is None:
                        self._declined = asked  # paho decodes (or refuses) this one: count_only was asked
                        break
                    pos = stop
                    if decoded != MQTTErrorCode.MQTT_ERR_SUCCESS:
                        rc = decoded
                        break
                    if self._sock is None or self._rbuf_sock is not self._sock or self._state == _DISCONNECTING:
                        break  # on_message disconnected
        finally:
            self._skip_acks = None
            # not after on_message disconnected: unacknowledged, they come again with the session and are skipped again
            if acks and self._rbuf_sock is self._sock and self._state != _DISCONNECTING:
                self._queue_pubacks(acks)
            if pos:
                del buf[:pos]
                with self._msgtime_mutex:
                    self._last_bytes_received = mqtt.time_func()
        return rc, shedding

    def _skipped_here(self, buf: bytearray, start: int, stop: int, v5: bool) -> int | None:
        """The packet id of the QoS 1 PUBLISH body at buf[start:stop] when `skip_when` drops it (counted in
        `skipped`); -1 when it keeps it; None when not asked: one `_decode_publish` must look at (properties,
        an empty topic on 3.1.1, malformed), which then asks `skip_when` itself."""
        if stop - start < 3:
            return None  # malformed: _decode_publish leaves it to paho, which says so
        topic_end = start + 2 + ((buf[start] << 8) | buf[start + 1])
        at = topic_end + 2  # past the packet id
        if v5:
            if at >= stop or buf[at]:
                return None  # properties (or malformed): _decode_publish
            at += 1
        elif topic_end == start + 2:
            return None
        if at > stop:
            return None
        if not self._skip(bytes(buf[at:stop])):
            return -1
        self.skipped += 1
        return (buf[topic_end] << 8) | buf[topic_end + 1]

    def _queue_pubacks(self, mids: list[int]) -> None:
        """The PUBACKs of `mids` (QoS 1 messages skipped in one run) as one queued packet: paho's
        `_send_puback` builds and queues a packet for each, about as costly as the rest of a skip."""
        data = b"".join([_PUBACK_HEAD + mid.to_bytes(2, "big") for mid in mids])
        with self.one_wakeup(wake_at_end=False):  # on the network thread: its next pass writes them
            self._packet_queue(_PUBACK, data, 0, 0)

    def _counted_only(self, count_only: Callable[[bytes, bytes], bool], buf: bytes | bytearray, start: int,
                      stop: int) -> bool:
        """count_only(topic, payload) for the QoS 0 PUBLISH body at buf[start:stop]; False (decode it) when
        it is malformed (paho reports that) or count_only raised: one message must not end the network thread."""
        if stop - start < 3:
            return False
        pos = start + 2 + ((buf[start] << 8) | buf[start + 1])
        if pos >= stop + (self._protocol != MQTTv5):
            return False
        topic = bytes(buf[start + 2 : pos])
        if self._protocol == MQTTv5:
            if buf[pos] & 0x80:
                found = _varint(buf, pos, stop)
                if found is None:
                    return False
                length, pos = found
            else:
                length, pos = buf[pos], pos + 1
            pos += length
            if pos > stop:
                return False
        try:
            counted = bool(count_only(topic, bytes(buf[pos:stop])))
        except Exception:
            return False
        if counted:
            self.counted_only += 1
        return counted

    def _handle_publish(self) -> MQTTErrorCode:
        header, packet = self._in_packet["command"], self._in_packet["packet"]
        count_only = None if self._declined else self.count_only
        self._declined = False
        if count_only is not None and not header & 0x07 and self._counted_only(count_only, packet, 0, len(packet)):
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        decoded = self._decode_publish(header, packet)
        return super()._handle_publish() if decoded is None else decoded

    def _decode_publish(self, header: int, packet: bytes | bytearray, kept: bool = False) -> MQTTErrorCode | None:
        """Handle one PUBLISH (its first byte and its body); None, having done nothing, when paho must.
        `kept`: skip_when was asked already, and kept it."""
        qos = (header & 0x06) >> 1
        end = len(packet)
        if qos >= 2 or end < 3:
            return None  # QoS 2 is paho's; QoS 3 is a protocol error paho reports
        pos = 2 + int.from_bytes(packet[0:2], "big")
        topic = bytes(packet[2:pos])
        mid = 0
        if qos:
            mid = int.from_bytes(packet[pos : pos + 2], "big")
            pos += 2
        v5 = self._protocol == MQTTv5
        found_props: dict[str, Any] | None = None
        if v5:
            if pos >= end:
                return None  # malformed: paho reports it
            if packet[pos] == 0:
                pos += 1
            else:
                found = _simple_properties(packet, pos, end)
                if found is None:
                    return None  # other properties (or malformed): paho's decoder
                found_props, pos = found
        elif not topic:
            return None  # paho reports the malformed packet
        if pos > end:
            return None
        payload = bytes(packet[pos:])
        asked = kept or self.skip_when is not None  # and kept, from here on: marked so
        if not kept and self.skip_when is not None and self._skip(payload):
            self.skipped += 1
            if not qos:
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            if self._skip_acks is not None:  # in a run: acknowledged with the run's others, in one packet
                self._skip_acks.append(mid)
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            with self.one_wakeup(wake_at_end=False):  # on the network thread: its next pass writes the PUBACK
                return self._send_puback(mid)
        message = _IncomingMessage.__new__(_IncomingMessage)
        message.state = mqtt.mqtt_ms_invalid
        message.mid = mid
        message._topic = topic
        message.properties = None
        message.dup = bool(header & 0x08)
        message.qos = qos
        message.retain = bool(header & 0x01)
        message.payload = payload
        if asked:
            message.skip_asked = True
        if v5:
            props = message.properties = _empty_publish_properties()
            if found_props:  # set as paho's decoder sets them (SubscriptionIdentifier: a list, it may repeat)
                for name, value in found_props.items():
                    object.__setattr__(props, name, value)
        message.timestamp = mqtt.time_func()
        self._handle_on_message(message)
        if qos == 0 or self._manual_ack:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        with self.one_wakeup(wake_at_end=False):  # on the network thread: its next pass writes the PUBACK
            return self._send_puback(mid)

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        """paho's, without looking the topic up among per-topic callbacks when none was added: paho walks
        its topic tree for every message (a nested generator per level) and takes a lock for it."""
        if self._on_message_filtered._root._children:  # message_callback_add was used
            super()._handle_on_message(message)
            return
        on_message = self._on_message
        if on_message is None:
            return
        with self._in_callback_mutex:
            try:
                on_message(self, self._userdata, message)
            except Exception as err:
                self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                if not self.suppress_exceptions:
                    raise

    def _skip(self, payload: bytes) -> bool:
        """skip_when(payload), where an error means "keep it": the network thread must not die of one message."""
        try:
            return bool(self.skip_when(payload)) if self.skip_when is not None else False
        except Exception:
            return False

    # ----- the in-flight window -----
    def publish(self, topic: str, payload: Any = None, qos: int = 0, retain: bool = False,
                properties: Properties | None = None) -> mqtt.MQTTMessageInfo:
        if not qos:
            return super().publish(topic, payload, qos, retain, properties)
        with self._out_message_mutex:  # paho's publish takes it too (an RLock): queued and noted at once
            if qos == 2 and self._protocol != MQTTv5 and not self._mnist_sends_qos2:
                self._mnist_sends_qos2 = True  # 3.1.1 does not say what the broker takes: see QOS2_WINDOW_311
                self._max_inflight_messages = _capped(self._max_inflight_messages, self.QOS2_WINDOW_311)
            limit = self._max_inflight_messages
            # Queued, not sent: before the CONNACK says how many the broker takes (and while it is handled, as
            # paho marks the connection up before it sends again what waited), and behind others queued.
            hold = (self._state != _ConnectionState.MQTT_CS_CONNECTED or self._mnist_in_connack
                    or bool(self._queued_out))
            if hold:
                self._max_inflight_messages = -1
            try:
                info = super().publish(topic, payload, qos, retain, properties)
            finally:
                self._max_inflight_messages = limit
            message = self._out_messages.get(info.mid)
            if message is not None and message.info is info:  # stored (not refused): ours to number
                if message.state == mqtt_ms_queued:
                    self._queued_out.append(info.mid)
                self._published += 1
                self._number_of[info.mid] = self._published
                self._unacked.append(self._published)
            if hold and self._state == _ConnectionState.MQTT_CS_CONNECTED and not self._mnist_in_connack:
                self._update_inflight()  # in order, as far as the window allows
        return info

    def _mid_generate(self) -> int:
        """paho's next packet id, passing over those of QoS 1/2 publishes still unacknowledged: after the ids wrap
        (65,535), paho would refuse a publish whose id is still in flight, and the result would be lost."""
        mid = super()._mid_generate()
        for _ in range(65535):
            if mid not in self._out_messages:
                break
            mid = super()._mid_generate()
        return mid

    # A broker takes so many QoS 1 and 2 publishes unacknowledged at once (MQTT 5: the Receive Maximum of its
    # CONNACK; mosquitto's default is 20) and refuses those past it ("quota exceeded"; mosquitto drops QoS 2
    # ones past it silently on MQTT 3.1.1). paho keeps to none: it sends up to its own limit (1,000 here)
    # before the CONNACK says what the broker takes, and after a reconnect it sends every unacknowledged
    # message again at once. So publishes wait for the CONNACK, the window is cut to the broker's maximum
    # there, and what lies past it is queued again; on 3.1.1 a client that sends QoS 2 keeps to 20.
    QOS2_WINDOW_311 = 20

    def _handle_connack(self) -> MQTTErrorCode:
        most = None
        if self._protocol == MQTTv5:
            with contextlib.suppress(Exception):  # a malformed CONNACK: paho's own handling says so below
                props = _packet.decode_connack(self._in_packet["command"], self._in_packet["packet"],
                                               self._protocol).properties
                most = getattr(props, "ReceiveMaximum", None)
        with self._out_message_mutex:  # publish() lowers the limit for a moment under it (before a CONNACK)
            if self._mnist_max_inflight is None:
                self._mnist_max_inflight = self._max_inflight_messages
            limit = self._mnist_max_inflight
            if isinstance(most, int) and most > 0:
                limit = _capped(limit, most)
            elif self._protocol != MQTTv5 and self._mnist_sends_qos2:
                limit = _capped(limit, self.QOS2_WINDOW_311)
            self._max_inflight_messages = limit
            self._requeue_past(limit)
            self._mnist_in_connack = True
        try:
            rc = super()._handle_connack()
        finally:
            with self._out_message_mutex:
                self._mnist_in_connack = False
                update = MQTTErrorCode.MQTT_ERR_SUCCESS
                if self._state == _ConnectionState.MQTT_CS_CONNECTED:
                    update = self._resend_pubrels()  # paho's stop at the first queued message, before them
                    if update == MQTTErrorCode.MQTT_ERR_SUCCESS:
                        update = self._update_inflight()  # paho's CONNACK sends no queued message
        return rc if rc != MQTTErrorCode.MQTT_ERR_SUCCESS else update

    def _resend_pubrels(self) -> MQTTErrorCode:
        """The PUBRELs of a persistent session's QoS 2 messages, as paho's CONNACK sends them, for those it did
        not reach: it stops at the first queued message, and a smaller window after a reconnect can queue one
        ahead of them. Without it the exchange never ended (unacknowledged for ever, `flush` never True)."""
        for m in list(self._out_messages.values()):
            if m.qos == 2 and m.state == mqtt.mqtt_ms_resend_pubrel:
                self._inflight_messages += 1
                m.state = mqtt.mqtt_ms_wait_for_pubcomp
                with self._in_callback_mutex:  # as paho: no loop_write from inside _send_pubrel
                    rc = self._send_pubrel(m.mid)
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    return rc
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _requeue_past(self, limit: int) -> None:
        """Mark the QoS 1 and 2 messages waiting to be sent past the first `limit` in flight as queued, in order
        (paho's reconnect marks them all to be sent at once), and queue them for `_update_inflight`."""
        count = 0
        for m in self._out_messages.values():
            if m.qos == 0:
                continue
            if m.state in (mqtt.mqtt_ms_publish, mqtt_ms_queued):
                if limit == 0 or count < limit:
                    m.state = mqtt.mqtt_ms_publish
                    count += 1
                else:
                    m.state = mqtt_ms_queued
            elif m.state != mqtt.mqtt_ms_invalid:
                count += 1  # on the wire already (a PUBREL to send again, or sent before this CONNACK)
        self._queued_out = deque(mid for mid, m in self._out_messages.items()
                                 if m.qos and m.state == mqtt_ms_queued)

    def _handle_pubackcomp(self, cmd: Literal["PUBACK", "PUBCOMP"]) -> MQTTErrorCode:
        """paho's, but a plain PUBACK (success or "no matching subscribers", no properties: what a broker
        sends for nearly every one) is read here and handed on with one reason code and one empty properties
        object shared by all: paho builds both for each, and a ReasonCode copies a table of every reason's
        name as it is made, more than the rest of the acknowledgement costs. Anything else is paho's."""
        packet = self._in_packet["packet"]
        size = len(packet)
        if cmd != "PUBACK" or not (size == 2 or (self._protocol == MQTTv5 and 3 <= size <= 4 and not any(packet[3:])
                                                 and packet[2] in (0, NO_MATCHING_SUBSCRIBERS))):
            return super()._handle_pubackcomp(cmd)
        mid = (packet[0] << 8) | packet[1]
        reason = _PUBACK_NO_SUBSCRIBERS if size > 2 and packet[2] else _PUBACK_SUCCESS
        with self._out_message_mutex:
            if mid in self._out_messages:
                return self._do_on_publish(mid, reason, _PUBACK_PROPERTIES)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle_pubrec(self) -> MQTTErrorCode:
        """MQTT 5: a PUBREC with a failure reason code (not authorized, quota exceeded) ends the exchange: the
        broker did not take the message. It goes to on_publish with that code, and no PUBREL follows. paho
        sent a PUBREL all the same, and reported the broker's PUBCOMP to it: a refused QoS 2 message looked
        delivered."""
        if self._protocol == MQTTv5:
            result = _packet.decode_pubrec(self._in_packet["command"], self._in_packet["packet"], self._protocol)
            if result.reason.is_failure:
                with self._out_message_mutex:
                    if result.mid in self._out_messages:
                        return self._do_on_publish(result.mid, result.reason, result.properties)
                return MQTTErrorCode.MQTT_ERR_SUCCESS
        return super()._handle_pubrec()

    def _do_on_publish(self, mid: int, reason_code: Any, properties: Any) -> MQTTErrorCode:
        # paho calls it under _out_message_mutex when a QoS 1/2 publish is acknowledged (PUBACK, PUBCOMP)
        rc = super()._do_on_publish(mid, reason_code, properties)
        self._settled(mid)
        return rc

    def _settled(self, mid: int) -> None:
        """QoS 1/2 publish `mid` needs nothing more (acknowledged, or dropped): `after_acknowledged`'s
        bookkeeping. Under _out_message_mutex."""
        number = self._number_of.pop(mid, None)
        if number is not None:
            unacked = self._unacked
            if unacked and unacked[0] == number:
                unacked.popleft()
                acked = self._acked
                while unacked and unacked[0] in acked:
                    acked.discard(unacked.popleft())
            else:
                self._acked.add(number)
            self._call_waiting()

    def drop_outgoing(self, mid: int) -> bool:
        """Give up QoS 1/2 publish `mid`: it leaves the outgoing queue, is never sent again (paho sends every
        unacknowledged one again at each reconnect) and counts as done for `flush`, `unacknowledged` and
        `after_acknowledged`; `on_publish` is not called for it, and its info is settled as a lost connection's
        (rc MQTT_ERR_CONN_LOST), so that `wait_for_publish` returns.
        False when no such publish waits (acknowledged meanwhile, or not a QoS 1/2 one of this client).

        For a publish the broker closes the connection on each time it reads it (one over its maximum packet
        size on MQTT 3.1.1, which does not say that maximum): sent again at every reconnect, it would keep the
        client reconnecting for ever. Call it between the loss and the reconnect (from `on_disconnect`)."""
        with self._out_message_mutex:
            m = self._out_messages.get(mid)
            if m is None or m.qos == 0:
                return False
            del self._out_messages[mid]
            if m.state in (mqtt_ms_wait_for_puback, mqtt_ms_wait_for_pubrec, mqtt.mqtt_ms_wait_for_pubcomp):
                self._inflight_messages = max(0, self._inflight_messages - 1)  # it held a place in the window
            self._settled(mid)
            with contextlib.suppress(AttributeError):  # paho's info: as it settles a QoS 0 one lost with a connection
                m.info.rc = MQTTErrorCode.MQTT_ERR_CONN_LOST
                m.info._set_as_published()
            # while on_disconnect runs paho still says connected, with no socket: the next one waits for the reconnect
            if (self._state == _ConnectionState.MQTT_CS_CONNECTED and not self._mnist_in_connack
                    and self._sock is not None):
                self._update_inflight()  # the place it held goes to the next one waiting
        return True

    def _call_waiting(self) -> None:
        waiting = self._waiting
        oldest = self._unacked[0] if self._unacked else self._published + 1
        while waiting and waiting[0][0] < oldest:
            fn = waiting.popleft()[1]
            try:
                fn()
            except Exception:  # the network thread must not die of a caller's function
                log.exception("after_acknowledged: %r failed", fn)

    def after_acknowledged(self, fn: Callable[[], None]) -> None:
        """Call `fn` once every QoS 1/2 publish handed to this client so far is acknowledged: now if none
        waits, else on the network thread when the broker's acknowledgement of the last of them comes (paho
        keeps unacknowledged publishes over a reconnect and sends them again under the same ids)."""
        with self._out_message_mutex:
            if self._unacked:
                self._waiting.append((self._published, fn))
                return
        fn()

    def _messages_reconnect_reset(self) -> None:
        super()._messages_reconnect_reset()
        with self._pings_lock:  # a ping of the last connection (unanswered, or never written) is never answered
            self._pings_answered = self._pings_sent

    def _messages_reconnect_reset_out(self) -> None:
        super()._messages_reconnect_reset_out()
        with self._out_message_mutex:  # a reconnect queues what lies beyond the window again, in order
            self._queued_out = deque(mid for mid, m in self._out_messages.items() if m.state == mqtt_ms_queued)

    def _update_inflight(self) -> MQTTErrorCode:
        """paho's, without its scan of the whole window: on every acknowledgement paho walks every message in
        flight to find the next queued one, about 140 us for a window of 1,000, on the network thread."""
        queued = self._queued_out
        limit = self._max_inflight_messages
        while queued and (limit == 0 or self._inflight_messages < limit):
            m = self._out_messages.get(queued.popleft())
            if m is None or m.qos == 0 or m.state != mqtt_ms_queued:
                continue  # sent meanwhile, acknowledged, or not ours to send
            self._inflight_messages += 1
            m.state = mqtt_ms_wait_for_puback if m.qos == 1 else mqtt_ms_wait_for_pubrec
            rc = self._send_publish(m.mid, m.topic.encode("utf-8"), m.payload, m.qos, m.retain, m.dup,
                                    properties=m.properties)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return rc
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    # ----- writing -----
    def publish_many(
        self, topic: str, payloads: Iterable[bytes], qos: int = 0, properties: Properties | None = None
    ) -> list[mqtt.MQTTMessageInfo]:
        """Publish each payload on `topic` (in order), waking the network thread once for all of them.

        At QoS 0 with nobody listening for `on_publish`, the PUBLISH packets are built here and queued
        as one packet with one MQTTMessageInfo, which every returned entry shares. `properties` (MQTT 5
        only; ignored on 3.1.1) go on every message.
        """
        payloads = list(payloads)
        if self._protocol != MQTTv5:
            properties = None
        if qos == 0 and payloads and not self.on_publish and self._sock is not None:
            info = self._publish_joined(topic, payloads, properties)
            if info is not None:
                return [info] * len(payloads)
        infos: list[mqtt.MQTTMessageInfo] = []
        with self.one_wakeup():
            publish = self.publish
            for payload in payloads:
                infos.append(publish(topic, payload, qos=qos, properties=properties))
        return infos

    def awaits_acknowledgement(self) -> bool:
        """Whether a QoS 1/2 publish handed to this client is not acknowledged yet (`unacknowledged` without
        its lock: asked where paho may hold that lock, on every write)."""
        return bool(self._out_messages)

    def unacknowledged(self) -> int:
        """QoS 1/2 publishes handed to this client and not yet acknowledged: those in flight and those
        waiting behind the in-flight window in the client itself."""
        with self._out_message_mutex:
            return len(self._out_messages)

    def flush(self, timeout: float) -> bool:
        """Wait until every queued packet is written, every QoS 1/2 publish acknowledged and every function
        given to `after_acknowledged` run; False when `timeout` seconds pass first or the connection is gone.

        paho sends QoS 1/2 publishes past its in-flight window only as acknowledgements free it, and
        `disconnect` drops those still waiting: call this before it when what was published matters.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._out_message_mutex:  # _do_on_publish runs what after_acknowledged holds under it
                busy = bool(self._out_packet or self._out_messages or self._waiting)
            if not busy:
                return True
            if self._sock is None or time.monotonic() >= deadline:
                return False
            time.sleep(0.005)

    def _send_pingreq(self) -> MQTTErrorCode:
        with self._pings_lock:
            rc = super()._send_pingreq()
            if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._pings_sent += 1
            return rc

    def _handle_pingresp(self) -> MQTTErrorCode:
        rc = super()._handle_pingresp()
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._pings_answered += 1
        return rc

    def round_trip(self, timeout: float) -> bool:
        """Send a PINGREQ and wait for its PINGRESP: the broker reads a connection's packets in order, so
        once it answers, it has handled every packet written before (acknowledgements of received messages
        among them). False when `timeout` seconds pass first or the connection is gone.

        Before a disconnect that must not lose acknowledgements: a client that closes its socket while the
        broker is still writing to it makes the broker's next write fail ("broken pipe"), and the broker
        drops the connection without reading what was waiting in it; the session then sends those
        messages again.
        """
        with self._pings_lock:
            sock = self._sock
            if sock is None or self._send_pingreq() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return False
            ours = self._pings_sent  # PINGRESPs come in the order of the PINGREQs, keep-alive ones included
        deadline = time.monotonic() + timeout
        while self._pings_answered < ours:
            if self._sock is not sock or time.monotonic() >= deadline:
                return False  # a reconnect meanwhile: the ping, and what was written before it, may be lost
            time.sleep(0.002)
        return self._sock is sock

    def ack_many(self, acks: Iterable[tuple[int, int]]) -> None:
        """`ack(mid, qos)` for each pair (manual acknowledgement), waking the network thread once."""
        with self.one_wakeup():
            for mid, qos in acks:
                self.ack(mid, qos)

    @contextlib.contextmanager
    def one_wakeup(self, wake_at_end: bool = True) -> Iterator[None]:
        """Queue packets inside the block without waking the network thread for each; wake it once after.

        paho writes a byte to a socket pair for every queued packet so that its thread leaves `select`.
        Packets queued meanwhile by other threads are not lost: the one wake-up at the end (or, on the
        network thread itself, its next pass, which always checks for pending writes) covers them.
        """
        with self._quiet_lock:
            if self._quiet_depth == 0:
                self._quiet_wake = self._sockpairW
                self._sockpairW = None
            self._quiet_depth += 1
            wake = self._quiet_wake
        try:
            yield
        finally:
            with self._quiet_lock:
                self._quiet_depth -= 1
                if self._quiet_depth == 0:
                    if self._sockpairW is None:
                        self._sockpairW = self._quiet_wake
                    elif self._quiet_wake is not None:  # a reconnect made a new pair meanwhile
                        self._quiet_wake.close()
                        wake = None
                    self._quiet_wake = None
            if wake is not None and wake_at_end:
                with contextlib.suppress(OSError):  # BlockingIOError: a wake-up is already pending
                    wake.send(b"0")

    def _publish_joined(
        self, topic: str, payloads: list[bytes], properties: Properties | None = None
    ) -> mqtt.MQTTMessageInfo | None:
        """Queue QoS 0 PUBLISH packets for `payloads` as one write; None if paho must do it (odd input)."""
        if not topic or not all(type(p) is bytes for p in payloads):
            return None
        topic_bytes = topic.encode("utf-8")
        self._raise_for_invalid_topic(topic_bytes)  # as publish() does: ValueError for a wildcard
        props = b""
        if self._protocol == MQTTv5:
            props = properties.pack() if properties is not None else b"\x00"
        head = len(topic_bytes).to_bytes(2, "big") + topic_bytes + props
        parts: list[bytes | bytearray] = []
        append = parts.append
        for payload in payloads:
            append(_fixed_header(len(head) + len(payload)))
            append(head)
            append(payload)
        joined = b"".join(parts)
        info = mqtt.MQTTMessageInfo(self._mid_generate())
        info.rc = self._packet_queue(_PUBLISH, joined, info.mid, 0, info)
        return info

    def _packet_write(self) -> MQTTErrorCode:
        # Not over websockets: paho's wrapper reports a partly sent frame in a way that only holds up when
        # the next packet is the same one again; joined packets would make that case more likely.
        if self._transport != "websockets":
            self._coalesce_writes(qos0=not self.on_publish)
        return super()._packet_write()

    def _coalesce_writes(self, qos0: bool) -> None:
        """Join the run of packets at the head of the out queue that need nothing from paho once written
        (see `_joinable`; QoS 0 publishes only when `qos0`) into packets of about 64 KiB each.

        paho's `_packet_write` writes the queue one packet per `send` until it is empty or the socket
        is full, so the whole run is joined here, not only its first 64 KiB.
        """
        out = self._out_packet
        if len(out) < 2 or not _joinable(out[0], qos0) or not _joinable(out[1], qos0):
            return
        joined: list[Any] = []
        while out and _joinable(out[0], qos0):
            run = [out.popleft()]
            size = len(run[0]["packet"])
            while out and size < _WRITE_COALESCE and _joinable(out[0], qos0):
                run.append(out.popleft())
                size += len(run[-1]["packet"])
            joined.append(_joined(run))
        out.extendleft(reversed(joined))


def _varint(data: bytes | bytearray, pos: int, end: int) -> tuple[int, int] | None:
    """MQTT's variable byte integer at `pos`: (value, position after it); None when cut off or too long."""
    value = 0
    for shift in (0, 7, 14, 21):
        if pos >= end:
            return None
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    return None


_PAYLOAD_FORMAT, _MESSAGE_EXPIRY, _CONTENT_TYPE, _SUBSCRIPTION_IDENTIFIER = 0x01, 0x02, 0x03, 0x0B


def _simple_properties(packet: bytes | bytearray, pos: int, end: int) -> tuple[dict[str, Any], int] | None:
    """The PUBLISH properties at `pos` when each is one of those our roles send or a subscriber is given
    with every message: Payload Format Indicator, Message Expiry Interval, an ASCII Content Type (a result's
    "application/json") and Subscription Identifiers. Returns (paho's attribute name -> the value its decoder
    gives, where the payload starts); None for anything else, a repeated property or a malformed one (paho's
    decoder then reads, or refuses, it)."""
    found = _varint(packet, pos, end)
    if found is None:
        return None
    length, pos = found
    stop = pos + length
    if stop > end:
        return None
    props: dict[str, Any] = {}
    while pos < stop:
        ident = packet[pos]
        pos += 1
        if ident == _SUBSCRIPTION_IDENTIFIER:
            found = _varint(packet, pos, stop)
            if found is None or found[0] == 0:  # 0 is not a valid identifier: paho's decoder says so
                return None
            props.setdefault("SubscriptionIdentifier", []).append(found[0])
            pos = found[1]
            continue
        if ident == _PAYLOAD_FORMAT:
            name, size = "PayloadFormatIndicator", 1
            value: Any = packet[pos] if pos < stop else None
        elif ident == _MESSAGE_EXPIRY:
            name, size = "MessageExpiryInterval", 4
            value = int.from_bytes(packet[pos : pos + 4], "big") if pos + 4 <= stop else None
        elif ident == _CONTENT_TYPE:
            if pos + 2 > stop:
                return None
            text_len = int.from_bytes(packet[pos : pos + 2], "big")
            name, size = "ContentType", 2 + text_len
            raw = bytes(packet[pos + 2 : pos + size])
            # ASCII without NUL reads the same in every decoder; anything else is left to paho's checks
            value = raw.decode("ascii") if pos + size <= stop and raw.isascii() and b"\0" not in raw else None
        else:
            return None
        if value is None or name in props:
            return None
        props[name] = value
        pos += size
    if pos != stop:
        return None
    return props, stop


def _joinable(packet: Any, qos0: bool) -> bool:
    """A queued packet of which nothing is written yet and that paho does nothing with once written: a
    PUBACK, PUBREC, PUBREL or PUBCOMP, a QoS 1/2 PUBLISH (done when the broker answers) or, if `qos0`,
    a QoS 0 PUBLISH (its info is set as published: the joined packet does that)."""
    if packet["pos"]:
        return False
    kind = packet["command"] & 0xF0
    if kind == _PUBLISH:
        return qos0 or packet["qos"] > 0
    return _PUBACK <= kind <= _PUBCOMP


def _joined(run: list[Any]) -> Any:
    """One queued packet for `run`, a list of `_joinable` ones, that paho's `_packet_write` handles right:
    paho sets the info of a written QoS 0 PUBLISH as published (and calls `on_publish`: hence those are
    joined only without one) and closes after a DISCONNECT; it does nothing else with a written packet.
    So: a QoS 0 PUBLISH whose info stands for the joined QoS 0 publishes' infos when there are any, else
    a PUBACK, which paho leaves alone."""
    if len(run) == 1:
        return run[0]
    infos = [p["info"] for p in run if p["command"] & 0xF0 == _PUBLISH and not p["qos"]]  # None: paho's own
    data = b"".join(p["packet"] for p in run)
    return {
        "command": _PUBLISH if infos else _PUBACK, "mid": 0, "qos": 0, "pos": 0,
        "to_process": len(data), "packet": data,
        "info": cast(mqtt.MQTTMessageInfo, _Infos(infos)) if infos else None,  # see _Infos
    }
