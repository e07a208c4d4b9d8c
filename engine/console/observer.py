"""The console's model of the broker: what every role says, the results, and every topic seen.

One paho client subscribes to the inspector's filter (default `#`) plus whatever of the status, result,
reply and image topics that filter does not already cover. Its callbacks run on paho's network thread and only
parse and update bounded state under one lock: per message the work is O(1), so `#` at thousands of
messages per second stays cheap. A UI calls `snapshot()` at a steady rate (about 10 Hz) and renders the
immutable copy it gets; it never gets one update per message.

The observer steers roles only through the control topics (docs/PROTOCOL.md), never by calling into
role objects: a role in this process and one on another machine look the same.

Images are kept as they came, the newest `max_images` of them within `max_image_bytes` (about 300 bytes
each for MNIST: 5,000 take 1.5 MB), so a console can show the digit behind a recent result (`image(id)`,
which reads the ids in their metadata only then); older ones are simply gone. `max_images=0` turns this
off, and with it the image subscription.

Nothing here imports textual (engine rule); the Textual console lives in `tui/`.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from engine.console.message_props import MessageProps, message_props
from engine.errors import BrokerError, ConfigError
from engine.mqtt.address import BrokerAddress
from engine.mqtt.client import connect_kwargs, make_client, probe, reason_text
from engine.protocol import extract_meta, has_meta, parse_result
from engine.topics import ROLES, Topics, sanitize_id
from engine.untrusted import clean_status, clean_text, json_object

# Subscription identifiers (MQTT 5) tell an inspector copy of a message from a core copy when the broker
# delivers one copy per matching subscription (mosquitto does). Each (re)subscription is a generation g:
# the inspector filter gets id 2g+1, the core filters 2g+2, so copies still in flight from a replaced
# filter are recognised too.
_SUB_INSPECT = 1
_SUB_CORE = 2
_MAX_TOPIC_BYTES = 65_535
STALE_AFTER = 5.0  # seconds without a status before a live role is shown as silent
HISTORY = 300  # status values kept per role for trends: about five minutes at one status a second
MAX_IMAGE_PAYLOAD = 65_536  # larger image payloads are not kept for the detail view (MNIST PNGs: ~300 B)
MAX_ROLES = 1_000  # role entries kept; past it the longest-offline ones go first
FORGET_OFFLINE_AFTER = 3_600.0  # seconds an offline (or silent) role stays listed
READ_HINT_AFTER = 10.0  # seconds logged in and subscribed without a single status: then a hint
PUBACK_WAIT = 30.0  # seconds a publish of the console's own waits for the broker's acknowledgement


# ----------------------------------------------------------------------------------------------------
# topic names and filters


def validate_filter(text: str) -> str:
    """Return `text` if it is a valid MQTT subscription filter, else raise ConfigError with one line."""
    if not text:
        raise ConfigError("empty filter: use # for every topic")
    if "\0" in text:
        raise ConfigError("a filter cannot contain a NUL character")
    if len(text.encode("utf-8")) > _MAX_TOPIC_BYTES:
        raise ConfigError("filter longer than 65,535 bytes")
    body = text
    if text.startswith("$share/"):
        parts = text.split("/", 2)
        if len(parts) < 3 or not parts[1] or not parts[2]:
            raise ConfigError(f"bad shared filter {text!r}: use $share/<group>/<filter>")
        if any(c in parts[1] for c in "+#"):
            raise ConfigError(f"bad shared filter {text!r}: the group name cannot hold + or #")
        body = parts[2]
    levels = body.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ConfigError(f"bad filter {text!r}: # must be a whole level and the last one (like a/#)")
        if "+" in level and level != "+":
            raise ConfigError(f"bad filter {text!r}: + must be a whole level (like a/+/b)")
    return text


def validate_topic(text: str) -> str:
    """Return `text` if it is a topic one can publish on, else raise ConfigError with one line."""
    if not text:
        raise ConfigError("empty topic")
    if "+" in text or "#" in text:
        raise ConfigError(f"bad topic {text!r}: no wildcards (+ or #) in a topic to publish on")
    if "\0" in text:
        raise ConfigError("a topic cannot contain a NUL character")
    if len(text.encode("utf-8")) > _MAX_TOPIC_BYTES:
        raise ConfigError("topic longer than 65,535 bytes")
    return text


def _filter_body(text: str) -> str:
    return text.split("/", 2)[2] if text.startswith("$share/") else text


def filter_covers(general: str, specific: str) -> bool:
    """True when every topic matched by filter `specific` is also matched by filter `general`."""
    g = _filter_body(general).split("/")
    s = _filter_body(specific).split("/")
    dollar = s[0].startswith("$")
    for i, level in enumerate(g):
        if level == "#":
            return not (i == 0 and dollar)  # '#' alone does not match $SYS/... topics
        if i >= len(s):
            return False
        if s[i] == "#":
            return False
        if level == "+":
            if i == 0 and dollar:
                return False
            continue
        if level != s[i]:
            return False
    return len(g) == len(s)


def topic_matches(filter_text: str, topic: str) -> bool:
    return mqtt.topic_matches_sub(_filter_body(filter_text), topic)


# ----------------------------------------------------------------------------------------------------
# what a snapshot holds (immutable)


class Connection(NamedTuple):
    state: str  # "idle", "connecting", "connected", "reconnecting", "stopped"
    since: float
    next_try: float | None  # when the next reconnect attempt is due (Unix time)
    error: str | None
    protocol: int  # 5 or 4 (MQTT 3.1.1)
    url: str


class RoleStatus(NamedTuple):
    role: str
    id: str
    state: str  # running, stopped, offline (or whatever the role said)
    data: Mapping[str, Any]  # the whole status message, read-only
    received: float  # when the observer got it
    history: tuple[float, ...]  # recent `rate` values, oldest first, one per status (up to HISTORY)
    history_t: tuple[float, ...] = ()  # when each of those statuses arrived (same length as history)
    lat_history: tuple[float | None, ...] = ()  # the status's `lat_ms.p50` with each, None when absent

    @property
    def online(self) -> bool:
        return self.state != "offline"

    def silent(self, now: float) -> bool:
        """A live role whose status has not come for a while (hung, or its network is cut)."""
        return self.online and now - self.received > STALE_AFTER


class ResultRow(NamedTuple):
    seq: int  # 1, 2, 3, ... over the observer's life (not reset by clear_results)
    t: float  # arrival time at the observer
    id: str | None
    pred: int | None
    label: int | None
    conf: float | None
    latency_ms: float | None  # arrival here minus t_sent
    worker: str | None
    error: str | None
    probs: tuple[float, ...] | None
    model: str | None
    legacy: bool

    @property
    def correct(self) -> bool | None:
        if self.pred is None or self.label is None:
            return None
        return self.pred == self.label


class ResultStats(NamedTuple):
    received: int
    labelled: int
    correct: int
    errors: int
    malformed: int
    rate: float  # results per second, over the last second or so
    lat_p50: float | None  # ms, over recent results
    lat_p99: float | None
    confusion: tuple[tuple[int, ...], ...]  # rows = label, columns = prediction

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None


class Message(NamedTuple):
    seq: int
    t: float
    topic: str
    qos: int
    retain: bool
    size: int  # the payload's real size
    payload: bytes  # the first `max_payload` bytes
    props: MessageProps | None = None  # its MQTT 5 properties, cleaned (None: it had none to show)

    @property
    def truncated(self) -> bool:
        return len(self.payload) < self.size


class TopicInfo(NamedTuple):
    name: str
    count: int
    rate: float
    last_size: int
    last_t: float
    retained: bool  # the last message came as a retained one


class Reply(NamedTuple):
    t: float
    role: str
    id: str
    req: Any
    cmd: str
    ok: bool
    error: str | None
    ours: bool  # an answer to a command this observer sent


class Verdict(NamedTuple):
    """What the broker said to one of the console's own publishes (publish, clear, draw, command)."""

    t: float
    tag: str | None  # the caller's name for it (the draw dialog: the image id)
    action: str  # "publish", "clear", "draw", "command"
    topic: str
    outcome: str  # "accepted" (MQTT 5 PUBACK success), "refused" (a failure reason code), "unconfirmed"
    reason: str | None  # the broker's reason for a refusal; why it is unconfirmed otherwise

    @property
    def refused(self) -> bool:
        return self.outcome == "refused"


class Event(NamedTuple):
    seq: int
    t: float
    level: str  # "information", "warning", "error" (Textual's notify severities)
    text: str


class Snapshot(NamedTuple):
    time: float
    connection: Connection
    roles: tuple[RoleStatus, ...]  # sorted by role, then id
    results: tuple[ResultRow, ...]  # newest last
    stats: ResultStats
    topics: tuple[TopicInfo, ...]  # sorted by name; empty unless asked for
    topics_version: int  # changes whenever a topic appears or the tree is reset
    topic_count: int
    topics_dropped: int  # messages on topics past max_topics
    messages: tuple[Message, ...]  # recent messages of the topic asked for, newest last
    filter: str
    paused: bool
    missed_while_paused: int
    events: tuple[Event, ...]  # events after `events_after`
    replies: tuple[Reply, ...]  # recent replies, newest last
    inspected: int  # messages seen by the inspector in all
    subscribed: bool  # connected, and the broker acknowledged every subscription
    ignored: int = 0  # status fields and statuses dropped as malformed (engine/untrusted.py)
    verdicts: tuple[Verdict, ...] = ()  # the broker's answers to this console's recent publishes, newest last

    def roles_of(self, role: str) -> tuple[RoleStatus, ...]:
        return tuple(r for r in self.roles if r.role == role)


# ----------------------------------------------------------------------------------------------------
# mutable state (under the observer's lock)


class _Pending(NamedTuple):
    """A publish of the console's own, waiting for the broker's acknowledgement."""

    action: str
    tag: str | None
    what: str  # how events name it: "12 B on test/x", "the retained message of t", ...
    size: int
    topic: str = ""
    t: float = 0.0


def _size(n: int) -> str:
    return f"{n:,} B" if n < 10_240 else f"{n / 1024:,.0f} KiB"


class _TopicState:
    __slots__ = ("name", "count", "rate", "mark", "last_size", "last_t", "retained", "messages")

    def __init__(self, name: str, max_messages: int) -> None:
        self.name = name
        self.count = 0
        self.rate = 0.0
        self.mark = 0
        self.last_size = 0
        self.last_t = 0.0
        self.retained = False
        self.messages: deque[Message] = deque(maxlen=max_messages)


class _RoleState:
    __slots__ = ("role", "id", "state", "data", "received", "history", "history_t", "lat_history", "sessions_lost")

    def __init__(self, role: str, client_id: str) -> None:
        self.role = role
        self.id = client_id
        self.state = "?"
        self.data: Mapping[str, Any] = MappingProxyType({})
        self.received = 0.0
        self.history: deque[float] = deque(maxlen=HISTORY)
        self.history_t: deque[float] = deque(maxlen=HISTORY)
        self.lat_history: deque[float | None] = deque(maxlen=HISTORY)
        self.sessions_lost = 0  # the highest `sessions_lost` the role has reported


def _default_client_id() -> str:
    host = socket.gethostname().split(".")[0]
    return sanitize_id(f"console-{host}-{os.getpid()}-{os.urandom(2).hex()}")


class Observer:
    """Watches one broker for a console. Thread-safe; start() connects in the background."""

    def __init__(
        self,
        address: BrokerAddress,
        topics: Topics | None = None,
        *,
        filter: str = "#",
        protocol: int | None = None,
        client_id: str | None = None,
        max_results: int = 10_000,
        max_topics: int = 5_000,
        max_messages: int = 100,
        max_payload: int = 65_536,
        max_bytes: int = 32 * 1024 * 1024,
        max_images: int = 5_000,
        max_image_bytes: int = 4 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.address = address
        self.topics = topics or Topics()
        self.client_id = client_id or _default_client_id()
        self.max_results = max_results
        self.max_topics = max_topics
        self.max_messages = max_messages
        self.max_payload = max_payload
        self.max_bytes = max_bytes
        self.max_images = max_images
        self.max_image_bytes = max_image_bytes
        self._clock = clock
        self._protocol_wanted = protocol
        self._lock = threading.Lock()
        self._client: mqtt.Client | None = None
        self._stopping = False
        self._filter = validate_filter(filter)
        self._core_filters = {
            "status": self.topics.status_filter(),
            "results": self.topics.results,
            "reply": f"{self.topics.reply_prefix}/+/+",
        }
        if max_images > 0:  # images are kept (bounded) for a result's detail view, whatever the filter
            self._core_filters["images"] = self.topics.images
        self._separate: dict[str, str] = {}  # core filters subscribed on their own
        self._gen = 0
        self._separate_by_gen: dict[int, set[str]] = {}
        self._pending_subs: dict[int, list[str]] = {}
        self._status_prefix = self.topics.status_prefix + "/"
        self._reply_prefix = self.topics.reply_prefix + "/"
        self._results_topic = self.topics.results
        self._images_topic = self.topics.images if max_images > 0 else None
        now = clock()
        self._connection = Connection("idle", now, None, None, protocol or 5, address.url)
        self._ever_connected = False
        self._outage_reported = False
        self._retry_delay: float | None = None
        self._retry_min, self._retry_max = 0.5, 8.0
        self._seq = itertools.count(1)
        # roles
        self._roles: dict[tuple[str, str], _RoleState] = {}
        self._ignored = 0  # malformed statuses and status fields
        self.forget_after = FORGET_OFFLINE_AFTER
        self.max_roles = MAX_ROLES
        # results
        self._results: deque[ResultRow] = deque(maxlen=max_results)
        self._result_seq = 0
        self._latencies: deque[float] = deque(maxlen=2048)
        self._reset_result_stats()
        self._results_mark = 0
        # images as they came (the newest max_images, at most max_image_bytes), for a result's detail view
        self._images: deque[bytes] = deque()
        self._image_bytes = 0
        # inspector
        self._topic_states: dict[str, _TopicState] = {}
        self._topics_version = 0
        self._topics_dropped = 0
        self._all_messages: deque[tuple[_TopicState, Message]] = deque(maxlen=max_topics * max_messages)
        self._bytes = 0
        self._inspected = 0
        self._paused = False
        self._missed = 0
        self._rate_mark_t = now
        # events and replies
        self._events: deque[Event] = deque(maxlen=200)
        self._event_seq = 0
        self._replies: deque[Reply] = deque(maxlen=100)
        self._our_reqs: deque[str] = deque(maxlen=1000)
        self._req_counter = itertools.count(1)
        # the broker's verdicts on the console's own publishes (MQTT 5 PUBACK reason codes)
        self._pending_pubs: OrderedDict[int, _Pending] = OrderedDict()
        self._early: OrderedDict[int, tuple[float, Any]] = OrderedDict()  # PUBACKs that beat publish()
        self._verdicts: deque[Verdict] = deque(maxlen=50)
        self._statuses_seen = 0  # status messages read (a console that reads none may lack the right)
        self._read_hint_given = False
        self.read_hint_after = READ_HINT_AFTER

    # ------------------------------------------------------------------------------------------------
    # lifecycle

    @property
    def protocol(self) -> int:
        return self._connection.protocol

    @property
    def filter(self) -> str:
        return self._filter

    @property
    def topics_version(self) -> int:
        """Changes whenever a topic appears or the tree is reset (an int: read without the lock)."""
        return self._topics_version

    def start(self) -> None:
        """Connect in the background; an unreachable broker is retried with backoff (see snapshot)."""
        protocol = self._protocol_wanted
        if protocol is None:
            try:
                protocol = probe(self.address, timeout=3.0)
            except BrokerError as exc:
                protocol = 5  # falls back to 3.1.1 if the broker says so once it is reachable
                with self._lock:
                    self._set_connection("reconnecting", error=str(exc), next_try=self._clock() + 1)
        self._start_client(protocol)

    def _start_client(self, protocol: int) -> None:
        client = make_client(self.address, self.client_id, protocol=protocol)
        client.reconnect_delay_set(min_delay=1, max_delay=int(self._retry_max))
        self._retry_min = 1.0
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        with self._lock:
            self._client = client
            c = self._connection
            state = "connecting" if c.state in ("idle", "stopped") else c.state
            self._connection = c._replace(state=state, protocol=protocol)
        client.connect_async(self.address.host, self.address.port, **connect_kwargs(client, keepalive=15))
        client.loop_start()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            client = self._client
            self._set_connection("stopped")
        if client is not None:
            client.disconnect()
            client.loop_stop()

    def __enter__(self) -> Observer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------------------
    # connection callbacks (network thread)

    def _set_connection(self, state: str, *, error: str | None = None, next_try: float | None = None) -> None:
        c = self._connection
        since = c.since if state == c.state else self._clock()
        self._connection = Connection(state, since, next_try, error, c.protocol, c.url)

    def _next_retry(self) -> float:
        delay = self._retry_min if self._retry_delay is None else min(self._retry_delay * 2, self._retry_max)
        self._retry_delay = delay
        return self._clock() + delay

    def _on_connect(self, client: mqtt.Client, _u: Any, _flags: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            text = reason_text(rc)
            if self.protocol == 5 and "MQTT version" in text:
                # An MQTT 3.1.1-only broker (the embedded Python one, for instance): start over with 3.1.1.
                with self._lock:
                    self._add_event("information", "the broker speaks MQTT 3.1.1 only: switching to it")
                client.loop_stop()
                client.disconnect()
                threading.Thread(target=self._restart_as_v4, daemon=True).start()
                return
            with self._lock:
                self._set_connection("reconnecting", error=f"refused: {text}", next_try=self._next_retry())
                if not self._outage_reported:
                    self._outage_reported = True
                    self._add_event("error", f"broker {self.address.url} refused the connection: {text}")
            return
        with self._lock:
            self._retry_delay = None
            recovered = self._outage_reported
            self._outage_reported = False
            self._ever_connected = True
            self._pending_subs.clear()
            self._set_connection("connected")
            if recovered:
                self._add_event("information", f"connected to {self.address.url} again")
            self._subscribe_all(client)

    def _restart_as_v4(self) -> None:
        if not self._stopping:
            self._start_client(4)

    def _on_connect_fail(self, _client: mqtt.Client, _u: Any) -> None:
        with self._lock:
            if self._stopping:
                return
            self._set_connection(
                "reconnecting", error=f"cannot reach {self.address.url}", next_try=self._next_retry()
            )
            if not self._outage_reported:
                self._outage_reported = True
                self._add_event("warning", f"cannot reach the broker at {self.address.url}; retrying")

    def _on_disconnect(self, _client: mqtt.Client, _u: Any, _flags: Any, rc: Any, _p: Any) -> None:
        with self._lock:
            if self._stopping:
                self._set_connection("stopped")
                return
            text = reason_text(rc)
            if text == "Unspecified error":
                text = "connection closed"
            self._set_connection("reconnecting", error=f"lost connection: {text}", next_try=self._next_retry())
            if not self._outage_reported:
                self._outage_reported = True
                self._add_event("warning", f"lost the broker at {self.address.url} ({text}); reconnecting")

    # ------------------------------------------------------------------------------------------------
    # subscriptions

    def _subscribe_all(self, client: mqtt.Client) -> None:
        """Subscribe the inspector's filter, then each core filter it does not cover (lock held)."""
        self._gen += 1
        self._separate = {
            kind: f for kind, f in self._core_filters.items() if not filter_covers(self._filter, f)
        }
        self._separate_by_gen[self._gen] = set(self._separate)
        self._separate_by_gen.pop(self._gen - 3, None)
        self._subscribe(client, [self._filter], self._gen * 2 + _SUB_INSPECT)
        if self._separate:
            self._subscribe(client, list(self._separate.values()), self._gen * 2 + _SUB_CORE)

    def _subscribe(self, client: mqtt.Client, filters: list[str], sub_id: int) -> None:
        if self.protocol == 5:
            props = Properties(PacketTypes.SUBSCRIBE)
            props.SubscriptionIdentifier = sub_id
            _rc, mid = client.subscribe([(f, SubscribeOptions(qos=2)) for f in filters], properties=props)
        else:
            _rc, mid = client.subscribe([(f, 2) for f in filters])
        if mid is not None:
            self._pending_subs[mid] = filters

    def _on_subscribe(self, _client: mqtt.Client, _u: Any, mid: int, reason_codes: Any, _p: Any) -> None:
        with self._lock:
            filters = self._pending_subs.pop(mid, None)
            if filters is None:
                return
            for f, rc in zip(filters, reason_codes, strict=False):
                if rc.is_failure:
                    self._add_event("error", f"the broker refused the subscription to {f}: {reason_text(rc)}")

    def set_filter(self, filter_text: str) -> None:
        """Change the inspector's filter (validated: ConfigError on a bad one); the topic tree starts over.

        Status, result and reply topics stay subscribed whatever the filter.
        """
        new = validate_filter(filter_text.strip())
        with self._lock:
            old = [self._filter, *self._separate.values()]
            self._filter = new
            self._clear_topics()
            client = self._client
            if client is not None and self._connection.state == "connected":
                client.unsubscribe(old)
                self._subscribe_all(client)
            else:
                self._separate = {}

    def pause(self) -> None:
        """Freeze the inspector (topic tree and recent messages); roles and results keep updating."""
        with self._lock:
            self._paused = True
            self._missed = 0

    def resume(self) -> None:
        with self._lock:
            self._paused = False

    @property
    def paused(self) -> bool:
        return self._paused

    # ------------------------------------------------------------------------------------------------
    # messages (network thread): O(1) each

    def _on_message(self, _client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        ids = None
        props = msg.properties
        if props is not None:
            ids = getattr(props, "SubscriptionIdentifier", None)
        self.ingest(msg.topic, msg.payload, msg.qos, bool(msg.retain), ids, props=message_props(props))

    def ingest(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        sub_ids: list[int] | None = None,
        *,
        props: MessageProps | None = None,
    ) -> None:
        """Take one message as if it came from the broker (the paho callback uses this; so can replays).

        `props`: its MQTT 5 properties, already cleaned (`message_props`).
        """
        now = self._clock()
        with self._lock:
            kind = self._core_kind(topic)
            if sub_ids:
                # Which subscription delivered this copy: the current inspector one, a core one, or one of
                # a filter just replaced (still in flight). A core message is taken from exactly one copy.
                inspect = self._gen * 2 + _SUB_INSPECT in sub_ids
                core = False
                if kind is not None:
                    for sub_id in sub_ids:
                        if self._is_core_copy(sub_id, kind):
                            core = True
                            break
            else:
                inspect = not self._separate or topic_matches(self._filter, topic)
                core = kind is not None
            if inspect:
                self._inspect(topic, payload, qos, retain, now, props)
            if core:
                if kind == "results":
                    self._on_result(payload, now)
                elif kind == "images":
                    self._on_image(payload)
                elif kind == "status":
                    self._on_status(topic, payload, retain, now)
                else:
                    self._on_reply(topic, payload, now)

    def _core_kind(self, topic: str) -> str | None:
        if topic == self._results_topic:
            return "results"
        if topic == self._images_topic:
            return "images"
        if topic.startswith(self._status_prefix):
            return "status"
        if topic.startswith(self._reply_prefix):
            return "reply"
        return None

    def _is_core_copy(self, sub_id: int, kind: str) -> bool:
        gen, which = divmod(sub_id, 2)
        if which == 0:  # a core subscription (ids 2g+2 are stored as gen g+1, remainder 0)
            return True
        separate = self._separate_by_gen.get(gen)
        return separate is not None and kind not in separate

    def _inspect(self, topic: str, payload: bytes, qos: int, retain: bool, now: float,
                 props: MessageProps | None = None) -> None:
        self._inspected += 1
        if self._paused:
            self._missed += 1
            return
        state = self._topic_states.get(topic)
        if state is None:
            if len(self._topic_states) >= self.max_topics:
                self._topics_dropped += 1
                return
            state = self._topic_states[topic] = _TopicState(topic, self.max_messages)
            self._topics_version += 1
        size = len(payload)
        state.count += 1
        state.last_size = size
        state.last_t = now
        state.retained = retain
        kept = payload if size <= self.max_payload else payload[: self.max_payload]
        msgs = state.messages
        if len(msgs) == msgs.maxlen:
            self._bytes -= len(msgs[0].payload)
        message = Message(next(self._seq), now, topic, qos, retain, size, kept, props)
        msgs.append(message)
        self._bytes += len(kept)
        self._all_messages.append((state, message))
        while self._bytes > self.max_bytes and self._all_messages:
            old_state, old = self._all_messages.popleft()
            if old_state.messages and old_state.messages[0] is old:
                old_state.messages.popleft()
                self._bytes -= len(old.payload)

    def _on_result(self, payload: bytes, now: float) -> None:
        try:
            r = parse_result(payload)
        except ValueError:
            self._malformed += 1
            return
        self._result_seq += 1
        latency = (now - r.t_sent) * 1000.0 if r.t_sent is not None else None
        if latency is not None:
            latency = max(0.0, latency)
            self._latencies.append(latency)
        probs = tuple(r.probs) if r.probs is not None else None
        row = ResultRow(
            self._result_seq, now, r.id, r.pred, r.label, r.conf, latency, r.worker, r.error, probs, r.model,
            r.legacy,
        )
        self._results.append(row)
        self._received += 1
        if r.error is not None:
            self._errors += 1
        elif r.label is not None and r.pred is not None:
            self._labelled += 1
            if r.pred == r.label:
                self._correct += 1
            self._confusion[r.label][r.pred] += 1

    def _on_image(self, payload: bytes) -> None:
        """Keep an image as it came, the oldest going first past either bound: one append, no parsing.

        At a publisher's full speed images come by the thousand a second and only the odd one is ever
        looked at, so its id is read from its metadata when someone asks for it (`images`), not here.
        """
        if len(payload) > MAX_IMAGE_PAYLOAD or not has_meta(payload):  # no id: no result can match it
            return
        images = self._images
        images.append(payload)
        self._image_bytes += len(payload)
        while len(images) > self.max_images or self._image_bytes > self.max_image_bytes:
            self._image_bytes -= len(images.popleft())

    def image(self, image_id: str) -> bytes | None:
        """The PNG of image `image_id` as it went over the broker, if it is still kept."""
        return self.images([image_id]).get(image_id)

    def images(self, ids: list[str]) -> dict[str, bytes]:
        """The PNGs of those of `ids` that are still kept (the newest one of an id given twice)."""
        wanted = set(ids)
        found: dict[str, bytes] = {}
        with self._lock:
            kept = list(self._images)
        for payload in reversed(kept):  # newest first; the copy lets images arrive meanwhile
            if not wanted:
                break
            image_id = extract_meta(payload).id
            if image_id in wanted:
                found[image_id] = payload
                wanted.discard(image_id)
        return found

    def _on_status(self, topic: str, payload: bytes, retain: bool, now: float) -> None:
        self._statuses_seen += 1
        parsed = self.topics.parse_status(topic)
        if parsed is None:
            return
        key = (parsed[0], clean_text(parsed[1], 128))
        if not payload:  # a cleared status: the role is gone from every console
            if self._roles.pop(key, None) is not None:
                self._add_event("information", f"{key[0]} {key[1]} removed")
            return
        raw = json_object(payload, non_finite=True)  # a NaN or Infinity field is dropped and counted below
        if raw is None:
            self._ignored += 1
            return
        data, bad = clean_status(raw)
        self._ignored += bad
        entry = self._roles.get(key)
        prev = entry.state if entry is not None else None
        if entry is None:
            if len(self._roles) >= self.max_roles:
                self._forget_roles(now)
            entry = self._roles[key] = _RoleState(*key)
        state = data.get("state") or "?"
        entry.state = state
        entry.data = MappingProxyType(data)
        entry.received = now
        rate = data.get("rate_actual" if key[0] == "input" else "rate")
        if isinstance(rate, (int, float)) and not isinstance(rate, bool) and state != "offline":
            entry.history.append(float(rate))
            entry.history_t.append(now)
            lat = data.get("lat_ms")
            p50 = lat.get("p50") if isinstance(lat, dict) else None
            ok = isinstance(p50, (int, float)) and not isinstance(p50, bool)
            entry.lat_history.append(float(p50) if ok else None)
        name = f"{key[0]} {key[1]}"
        self._problem_events(name, data, prev, entry, retain)
        if state == "offline" and prev is not None and prev != "offline":
            reason = data.get("reason")
            why = f" ({reason})" if isinstance(reason, str) else ""
            self._add_event("warning", f"{name} went offline{why}")
        elif state != "offline" and prev == "offline" and not retain:
            self._add_event("information", f"{name} is back online")
        elif prev is None and state != "offline" and not retain:
            self._add_event("information", f"{name} is online")

    def _forget_roles(self, now: float) -> None:
        """Drop roles offline or silent for `forget_after` seconds; past `max_roles`, the oldest heard."""
        cutoff = now - self.forget_after
        for k in [k for k, e in self._roles.items() if e.received < cutoff]:
            del self._roles[k]
        while len(self._roles) >= self.max_roles:
            oldest = min(self._roles, key=lambda k: (self._roles[k].state != "offline", self._roles[k].received))
            del self._roles[oldest]

    def _problem_events(self, name: str, data: dict[str, Any], prev: str | None, entry: _RoleState,
                        retain: bool) -> None:
        """A role that reports an error (a dead thread) or a lost durable session: one notification each."""
        if data.get("state") == "error" and prev != "error":
            reason = data.get("reason")
            why = " ".join(reason.split())[:200] if isinstance(reason, str) else "no reason given"
            self._add_event("error", f"{name} failed: {why}")
        lost = data.get("sessions_lost")
        if isinstance(lost, int) and not isinstance(lost, bool) and lost > entry.sessions_lost:
            if not retain or entry.sessions_lost == 0:
                self._add_event("warning", f"{name} lost its broker session ({lost} so far): "
                                           "what was queued for it while it was away is gone")
            entry.sessions_lost = lost

    def _on_reply(self, topic: str, payload: bytes, now: float) -> None:
        parts = topic[len(self._reply_prefix):].split("/")
        if len(parts) != 2:
            return
        data = json_object(payload)
        if data is None:
            return
        req = data.get("req")
        ours = isinstance(req, str) and req in self._our_reqs
        error = data.get("error")
        reply = Reply(now, clean_text(parts[0], 40), clean_text(parts[1], 128), req if ours else None,
                      clean_text(data.get("cmd", "?"), 40), data.get("ok") is True,
                      clean_text(error) if error is not None else None, ours)
        self._replies.append(reply)
        if ours and not reply.ok:
            self._add_event("error", f"{reply.role} {reply.id}: {reply.cmd}: {reply.error or 'refused'}")

    def note(self, level: str, text: str) -> None:
        """Add an event of one's own (level: "information", "warning" or "error") for the UI to show."""
        with self._lock:
            self._add_event(level, text)

    def _add_event(self, level: str, text: str) -> None:
        self._event_seq += 1
        self._events.append(Event(self._event_seq, self._clock(), level, clean_text(text, 400)))

    # ------------------------------------------------------------------------------------------------
    # snapshot (UI thread)

    def snapshot(
        self,
        topic: str | None = None,
        *,
        results: int | None = None,
        topics: bool = True,
        events_after: int = 0,
        results_after: int | None = None,
    ) -> Snapshot:
        """An immutable copy of the state.

        `topic`: whose recent messages to include; `results`: copy only the newest N results;
        `results_after`: only results with a larger seq (O(new ones)); `topics`: include the topic list
        (O(topics)); `events_after`: only events with a larger seq.
        """
        with self._lock:
            now = self._clock()
            self._update_rates(now)
            roles = tuple(
                RoleStatus(e.role, e.id, e.state, e.data, e.received, tuple(e.history), tuple(e.history_t),
                           tuple(e.lat_history))
                for _k, e in sorted(self._roles.items())
            )
            if results_after is not None:
                fresh = max(0, self._result_seq - results_after)
                results = fresh if results is None else min(results, fresh)
            if results is None or results >= len(self._results):
                rows = tuple(self._results)
            elif results <= 0:
                rows = ()
            else:
                rows = tuple(itertools.islice(self._results, len(self._results) - results, None))
            stats = ResultStats(
                self._received, self._labelled, self._correct, self._errors, self._malformed,
                self._result_rate, self._lat_p50, self._lat_p99, tuple(tuple(r) for r in self._confusion),
            )
            topic_list: tuple[TopicInfo, ...] = ()
            if topics:
                topic_list = tuple(
                    TopicInfo(s.name, s.count, s.rate, s.last_size, s.last_t, s.retained)
                    for s in sorted(self._topic_states.values(), key=lambda s: s.name)
                )
            messages: tuple[Message, ...] = ()
            if topic is not None and topic in self._topic_states:
                messages = tuple(self._topic_states[topic].messages)
            events = tuple(e for e in self._events if e.seq > events_after)
            return Snapshot(
                now, self._connection, roles, rows, stats, topic_list, self._topics_version,
                len(self._topic_states), self._topics_dropped, messages, self._filter, self._paused,
                self._missed, events, tuple(self._replies), self._inspected,
                self._connection.state == "connected" and not self._pending_subs, self._ignored,
                tuple(self._verdicts),
            )

    def _update_rates(self, now: float) -> None:
        dt = now - self._rate_mark_t
        if dt < 1.0:
            return
        self._rate_mark_t = now
        self._forget_roles(now)
        self._expire_pending(now)
        self._hint_unreadable(now)
        if not self._paused:
            for s in self._topic_states.values():
                s.rate = (s.count - s.mark) / dt
                s.mark = s.count
        self._result_rate = (self._result_seq - self._results_mark) / dt
        self._results_mark = self._result_seq
        if self._latencies:
            values = sorted(self._latencies)
            self._lat_p50 = values[len(values) // 2]
            self._lat_p99 = values[min(len(values) - 1, int(len(values) * 0.99))]

    # ------------------------------------------------------------------------------------------------
    # results

    def _reset_result_stats(self) -> None:
        self._received = 0
        self._labelled = 0
        self._correct = 0
        self._errors = 0
        self._malformed = 0
        self._result_rate = 0.0
        self._lat_p50: float | None = None
        self._lat_p99: float | None = None
        self._confusion = [[0] * 10 for _ in range(10)]

    def clear_results(self) -> None:
        """Forget the results seen so far (this console's view only; the collector keeps its own)."""
        with self._lock:
            self._results.clear()
            self._latencies.clear()
            self._reset_result_stats()

    def _clear_topics(self) -> None:
        self._topic_states.clear()
        self._all_messages.clear()
        self._bytes = 0
        self._topics_dropped = 0
        self._missed = 0
        self._topics_version += 1

    # ------------------------------------------------------------------------------------------------
    # steering (UI thread)

    def _connected_client(self) -> mqtt.Client:
        client = self._client
        if client is None or self._connection.state != "connected":
            raise BrokerError(f"not connected to the broker at {self.address.url}: nothing was sent")
        return client

    def send_control(
        self, role: str, cmd: str, client_id: str | None = None, *, req: str | None = None, **args: Any
    ) -> str:
        """Send a control command to one role (`client_id`) or all roles of a kind; returns the req id.

        The answer arrives on the reply topic (see `snapshot().replies`); a refusal, by the role or by the
        broker (MQTT 5 PUBACK), becomes an event.
        """
        if role not in ROLES:
            raise ConfigError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
        req = req or f"{self.client_id}-{next(self._req_counter)}"
        body = {"cmd": cmd, "req": req, **args}
        with self._lock:
            self._connected_client()
            self._our_reqs.append(req)
        target = f"{role} {client_id}" if client_id else f"every {role} role"
        self._send(self.topics.control(role, client_id), json.dumps(body).encode(), 1, False,
                   _Pending("command", req, f"the command {cmd} to {target}", 0))
        return req

    def publish(self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False, *,
                tag: str | None = None, action: str = "publish") -> None:
        """Publish one message (validated: ConfigError for a bad topic or QoS, BrokerError offline).

        The broker's verdict comes later as a `Verdict` in `snapshot().verdicts` (and, for `action`
        "publish", an event): accepted or refused by its MQTT 5 reason code at QoS 1 and 2, unconfirmed
        at QoS 0 or on MQTT 3.1.1 (where a broker drops a denied message without a word).
        """
        validate_topic(topic)
        if qos not in (0, 1, 2):
            raise ConfigError(f"QoS must be 0, 1 or 2, not {qos!r}")
        data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
        what = f"{_size(len(data))} on {topic}" if action == "publish" else f"the image on {topic}"
        self._send(topic, data, qos, retain, _Pending(action, tag, what, len(data)))

    def clear_retained(self, topic: str) -> None:
        """Remove the retained message of `topic` at the broker (an empty retained message at QoS 1).

        Whether the broker let it happen comes as an event (and a `Verdict` with action "clear").
        """
        validate_topic(topic)
        self._send(topic, b"", 1, True, _Pending("clear", None, f"the retained message of {topic}", 0))

    def _send(self, topic: str, data: bytes, qos: int, retain: bool, pending: _Pending) -> None:
        """Publish and wait (in the background) for the broker's verdict.

        The client publishes outside the lock: paho calls on_publish holding a lock of its own, so a
        PUBACK can come before `publish` returns; it then waits in `_early` for its pending entry.
        """
        with self._lock:
            client = self._connected_client()
            v5 = self.protocol == 5
        info = client.publish(topic, data, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise BrokerError(f"publish on {topic!r} failed: {mqtt.error_string(info.rc)}")
        now = self._clock()
        pending = pending._replace(topic=topic, t=now)
        with self._lock:
            early = self._early.pop(info.mid, None)
            if qos == 0 or not v5:
                why = "QoS 0 gets no acknowledgement" if qos == 0 else (
                    "MQTT 3.1.1 has no reason codes: a broker drops a denied message without a word")
                self._verdict(pending, "unconfirmed", why)
            elif early is not None:
                self._verdict_of(pending, early[1])
            else:
                if len(self._pending_pubs) >= 1000:  # acknowledgements lost with a connection
                    self._pending_pubs.pop(next(iter(self._pending_pubs)))
                self._pending_pubs[info.mid] = pending

    def _on_publish(self, _client: mqtt.Client, _u: Any, mid: int, rc: Any, _p: Any) -> None:
        with self._lock:
            pending = self._pending_pubs.pop(mid, None)
            if pending is not None:
                self._verdict_of(pending, rc)
                return
            now = self._clock()
            self._early[mid] = (now, rc)
            while self._early and (len(self._early) > 64 or next(iter(self._early.values()))[0] < now - 30):
                self._early.popitem(last=False)

    def _verdict_of(self, pending: _Pending, rc: Any) -> None:
        if getattr(rc, "is_failure", False):
            self._verdict(pending, "refused", str(getattr(rc, "getName", lambda: rc)()).lower())
        else:
            self._verdict(pending, "accepted", None)

    def _verdict(self, p: _Pending, outcome: str, reason: str | None) -> None:
        """Record the broker's answer and say it (lock held)."""
        self._verdicts.append(Verdict(self._clock(), p.tag, p.action, p.topic, outcome, reason))
        if p.action == "clear" and outcome != "refused":
            state = self._topic_states.get(p.topic)
            if state is not None:
                state.retained = False
        if outcome == "refused":
            verb = "publish" if p.action in ("publish", "draw") else "send" if p.action == "command" else "clear"
            self._add_event("error", f"the broker refused to {verb} {p.what}: {reason}")
        elif p.action == "publish":
            if outcome == "accepted":
                self._add_event("information", f"published {p.what}")
            else:
                self._add_event("information", f"sent {p.what} (not confirmed: {reason})")
        elif p.action == "clear":
            if outcome == "accepted":
                self._add_event("information", f"cleared {p.what}")
            else:
                self._add_event("warning", f"asked the broker to clear {p.what} (not confirmed: {reason})")

    def _hint_unreadable(self, now: float) -> None:
        """Logged in, subscribed, and no status at all after a while: say what that may mean (lock held).

        mosquitto acknowledges a subscription its ACL denies and then delivers nothing, so a console
        logged in with a role's account sees an empty pipeline; the broker never says why. This is a
        hint, not a verdict: an empty broker looks the same.
        """
        c = self._connection
        if (self._read_hint_given or self._statuses_seen or not self.address.username
                or c.state != "connected" or self._pending_subs or now - c.since < self.read_hint_after):
            return
        self._read_hint_given = True
        self._add_event(
            "warning",
            f"logged in as {self.address.username} for {self.read_hint_after:g} s and no role status has come: either "
            f"no role runs on this broker or this account may not read {self.topics.status_filter()} "
            "(a broker's ACL denies a subscription without a word)")

    def _expire_pending(self, now: float) -> None:
        """Publishes without an acknowledgement for PUBACK_WAIT seconds: say so (lock held)."""
        while self._pending_pubs:
            mid, p = next(iter(self._pending_pubs.items()))
            if p.t > now - PUBACK_WAIT:
                break
            del self._pending_pubs[mid]
            self._verdict(p, "unconfirmed", f"no acknowledgement within {PUBACK_WAIT:g} s")
