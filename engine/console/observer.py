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

The parts, each bounded and used under the observer's one lock: `snapshot.py` (the immutable records a UI
gets), `subscriptions.py` (the filters subscribed, and which copy of a message is which),
`topic_filters.py` (filter validation and matching), `topic_table.py` (the inspector's topics and
messages), `role_table.py` (every role's status), `result_log.py` (results, counts, latency),
`image_store.py` (recent images), `keep_up.py` (skipping ahead when the view falls behind),
`sampling.py` (which results and images are decoded at thousands a second, the rest only counted),
`publish_verdicts.py` (the broker's answers to the console's own publishes), `oversize.py` (a publish the
broker closes the connection on, on MQTT 3.1.1, given up rather than sent at every reconnect);
`observer_common.py` holds the checks it shares with `ObserverProcess`.

Nothing here imports textual (engine rule); the Textual console lives in `tui/`.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from engine.console.image_store import ImageStore
from engine.console.image_store import find as find_images
from engine.console.keep_up import KeepUp
from engine.console.message_props import MessageProps, message_props
from engine.console.observer_common import ObserverCommon, check_filter, check_publish, check_role
from engine.console.oversize import OversizeGuard, given_up_text
from engine.console.publish_verdicts import PUBACK_WAIT, Pending, PublishVerdicts, size_text
from engine.console.result_log import ResultLog, drawing_prefix
from engine.console.role_table import FORGET_OFFLINE_AFTER, MAX_ROLES, RoleTable
from engine.console.sampling import IMAGES_PER_SECOND, RESULTS_PER_SECOND, Sampling
from engine.console.snapshot import (
    HISTORY,
    STALE_AFTER,
    Connection,
    Event,
    Message,
    Reply,
    ResultRow,
    ResultStats,
    RoleStatus,
    Snapshot,
    TopicInfo,
    Verdict,
)
from engine.console.subscriptions import Subscriptions
from engine.console.topic_filters import (
    filter_covers,
    topic_matches,
    validate_filter,
    validate_topic,
    validate_watch_filter,
)
from engine.console.topic_table import TopicTable
from engine.errors import BrokerError
from engine.mqtt.address import BrokerAddress
from engine.mqtt.client import (
    connect_kwargs,
    make_client,
    max_packet_size,
    probe,
    publish_packet_size,
    reason_text,
)
from engine.mqtt.fastclient import FastClient, payload_of
from engine.topics import Topics
from engine.untrusted import clean_text, json_object, visible_text

READ_HINT_AFTER = 10.0  # seconds logged in and subscribed without a single status: then a hint
# After a read that emptied the socket the client waits this long before the next one (FastClient.read_pause):
# at a few thousand messages a second each read otherwise brings in a handful, and the wake-up, select and recv
# cost more than the messages. The screen shows ten frames a second; a command waits as long at most.
READ_PAUSE = 0.02

# Names that other modules import from here (they live in the modules named above).
__all__ = [
    "FORGET_OFFLINE_AFTER", "HISTORY", "MAX_ROLES", "PUBACK_WAIT", "STALE_AFTER", "Connection", "Event",
    "Message", "Observer", "Reply", "ResultRow", "ResultStats", "RoleStatus", "Snapshot", "TopicInfo",
    "Verdict", "filter_covers", "topic_matches", "validate_filter", "validate_topic", "validate_watch_filter",
]


class Observer(ObserverCommon):
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
        sampling: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(address, topics, filter, client_id, max_results)
        self._clock = clock
        self._protocol_wanted = protocol
        self._lock = threading.Lock()
        self._client: mqtt.Client | None = None
        self._stopping = False
        self._subs = Subscriptions(self.topics, keep_images=max_images > 0)
        self._reply_prefix = self._subs.reply_prefix
        now = clock()
        self._connection = Connection("idle", now, None, None, protocol or 5, address.url)
        self._ever_connected = False
        self._outage_reported = False
        self._retry_delay: float | None = None
        self._retry_min, self._retry_max = 0.5, 8.0
        self._seq = itertools.count(1)
        # roles
        self._roles = RoleTable(self.topics, self._add_event)
        # results
        self._results = ResultLog(max_results, drawing_prefix(self.client_id))
        self._keep_up = KeepUp()
        self._skipped_before = 0  # skipped by clients this observer replaced (a switch to MQTT 3.1.1)
        # at thousands a second, only a sample of the QoS 0 results and images is decoded (sampling.py)
        self._sampling = Sampling({self.topics.results.encode(): RESULTS_PER_SECOND,
                                   self.topics.images.encode(): IMAGES_PER_SECOND}) if sampling else None
        self._own_id = self.client_id.encode()  # in the id of every image this console sends (a drawing)
        self._results_topic = self.topics.results.encode()
        # images as they came (the newest max_images, at most max_image_bytes), for a result's detail view
        self._images = ImageStore(max_images, max_image_bytes)
        # inspector
        self._topics = TopicTable(max_topics, max_messages, max_payload, max_bytes)
        self._rate_mark_t = now
        # events and replies
        self._events: deque[Event] = deque(maxlen=200)
        self._event_seq = 0
        self._replies: deque[Reply] = deque(maxlen=100)
        self._our_reqs: deque[str] = deque(maxlen=1000)
        self._req_counter = itertools.count(1)
        # the broker's verdicts on the console's own publishes (MQTT 5 PUBACK reason codes)
        self._publishes = PublishVerdicts(clock, self._add_event, self._cleared)
        # MQTT 3.1.1: the dialog's QoS 1/2 publishes until acknowledged, and those the broker closes the connection on
        self._oversize = OversizeGuard()
        self._read_hint_given = False
        self.read_hint_after = READ_HINT_AFTER

    # ------------------------------------------------------------------------------------------------
    # lifecycle

    @property
    def protocol(self) -> int:
        return self._connection.protocol

    @property
    def max_images(self) -> int:
        return self._images.max_images

    @property
    def forget_after(self) -> float:
        """Seconds an offline (or silent) role stays listed."""
        return self._roles.forget_after

    @forget_after.setter
    def forget_after(self, seconds: float) -> None:
        self._roles.forget_after = seconds

    @property
    def max_roles(self) -> int:
        return self._roles.max_roles

    @max_roles.setter
    def max_roles(self, n: int) -> None:
        self._roles.max_roles = n

    @property
    def topics_version(self) -> int:
        """Changes whenever a topic appears or the tree is reset (an int: read without the lock)."""
        return self._topics.version

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
        client.shed_when = self._keep_up.skipping
        if self._sampling is not None:
            client.count_only = self._count_only
        client.read_pause = READ_PAUSE
        with self._lock:
            self._skipped_before += getattr(self._client, "shed", 0)
            self._client = client
            self._oversize.forget()
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

    # ------------------------------------------------------------------------------------------------
    # connection callbacks (network thread)

    def _connection_now(self) -> Connection:
        """The connection as a snapshot says it, with the size the broker closed it on, if any (oversize.py).
        Lock held."""
        return self._connection._replace(closed_on=self._oversize.closed_on)

    def _set_connection(self, state: str, *, error: str | None = None, next_try: float | None = None) -> None:
        c = self._connection
        since = c.since if state == c.state else self._clock()
        self._connection = c._replace(state=state, since=since, next_try=next_try, error=error)

    def _next_retry(self) -> float:
        delay = self._retry_min if self._retry_delay is None else min(self._retry_delay * 2, self._retry_max)
        self._retry_delay = delay
        return self._clock() + delay

    def _on_connect(self, client: mqtt.Client, _u: Any, _flags: Any, rc: Any, props: Any) -> None:
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
            self._subs.pending.clear()
            self._keep_up.forget()
            self._connection = self._connection._replace(max_packet=max_packet_size(props))
            self._set_connection("connected")
            if recovered:
                self._add_event("information", f"connected to {self.address.url} again")
            self._subs.subscribe_all(client, self._filter, self.protocol == 5)

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

    def _on_disconnect(self, client: mqtt.Client, _u: Any, _flags: Any, rc: Any, _p: Any) -> None:
        with self._lock:
            if self._stopping:
                self._set_connection("stopped")
                return
            # A connection that was up: the publishes the broker closed it on each time, given up (oversize.py).
            given = self._oversize.lost() if self._connection.state == "connected" else []
            text = reason_text(rc)
            if text == "Unspecified error":
                text = "connection closed"
            self._set_connection("reconnecting", error=f"lost connection: {text}", next_try=self._next_retry())
            for g in given:  # the one line that says why the connection was lost, and what becomes of the message
                self._publishes.forget(g.mid)
                self._publishes.verdict(g.pending, "refused", given_up_text(g))
            if given:
                self._outage_reported = True  # "connected again" follows
            elif not self._outage_reported:
                self._outage_reported = True
                self._add_event("warning", f"lost the broker at {self.address.url} ({text}); reconnecting")
        for g in given:  # before paho reconnects and sends every unacknowledged publish again
            if isinstance(client, FastClient):
                client.drop_outgoing(g.mid)

    # ------------------------------------------------------------------------------------------------
    # subscriptions

    def _on_subscribe(self, _client: mqtt.Client, _u: Any, mid: int, reason_codes: Any, _p: Any) -> None:
        with self._lock:
            for refusal in self._subs.acknowledged(mid, reason_codes):
                self._add_event("error", refusal)

    def set_filter(self, filter_text: str) -> None:
        """Change the inspector's filter (validated: ConfigError on a bad one); the topic tree starts over.

        Status, result and reply topics stay subscribed whatever the filter.
        """
        new = check_filter(filter_text)
        with self._lock:
            old, self._filter = self._filter, new
            self._topics.clear()
            client = self._client if self._connection.state == "connected" else None
            self._subs.replace(old, new, client, self.protocol == 5)

    def pause(self) -> None:
        """Freeze the inspector (topic tree and recent messages); roles and results keep updating."""
        with self._lock:
            self._topics.pause()

    def resume(self) -> None:
        with self._lock:
            self._topics.paused = False

    @property
    def paused(self) -> bool:
        return self._topics.paused

    # ------------------------------------------------------------------------------------------------
    # messages (network thread): O(1) each

    def _on_message(self, client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        ids = None
        props = msg.properties
        if props is not None:
            ids = getattr(props, "SubscriptionIdentifier", None)
        self.ingest(msg.topic, payload_of(msg), msg.qos, bool(msg.retain), ids, props=props,
                    arrived_after=getattr(client, "arrived_after", None))

    def ingest(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        sub_ids: list[int] | None = None,
        *,
        props: Any = None,
        arrived_after: float | None = None,
    ) -> None:
        """Take one message as if it came from the broker (the paho callback uses this; so can replays).

        `props`: its MQTT 5 properties (paho's, read only when the inspector keeps the message, or `MessageProps`).
        `arrived_after`: the client's read pause began then, and the message came during it (see
        FastClient.arrived_after): a result's latency then leaves the pause out.
        """
        now = self._clock()
        with self._lock:
            inspect, kind = self._subs.route(topic, sub_ids, self._filter)
            if inspect:
                kept_props = props if props is None or isinstance(props, MessageProps) else message_props(props)
                self._topics.add(topic, payload, qos, retain, now, kept_props)
            if kind is not None:
                if kind == "results":
                    r = self._results.add(payload, now, arrived_after)
                    if r is not None:
                        self._keep_up.result(r.worker, r.t_done, qos)
                elif kind == "images":
                    self._images.add(payload)
                elif kind == "status":
                    self._roles.on_status(topic, payload, retain, now)
                else:
                    self._on_reply(topic, payload, now)

    def _count_only(self, topic: bytes, payload: bytes) -> bool:
        """Asked by the client before it decodes a plain QoS 0 message: True when it is only counted.

        Only while the subscriptions stand (each message then comes once, and its topic alone says where
        it goes); while a change of filter is in flight every message is decoded and routed by its
        subscription identifiers.
        """
        sampling = self._sampling
        if sampling is None or self._own_id in payload:
            return False  # this console's own images (a drawing) and their results are always decoded
        if topic == self._results_topic and not (payload[:1] == b"{" and payload[-1:] == b"}"):
            return False  # not shaped like a worker's result (JSON): decoded, so counted as malformed if it is
        if sampling.decode(topic):
            return False
        now = self._clock()
        name = topic.decode()
        with self._lock:
            if self._subs.pending or self._connection.state != "connected":
                return False
            inspect, kind = self._subs.route(name, None, self._filter)
            if inspect:
                self._topics.count(name, len(payload), now)
            if kind == "results":
                self._results.count_only()
            elif kind == "images":
                self._images.add(payload)
        return True

    def image(self, image_id: str) -> bytes | None:
        """The PNG of image `image_id` as it went over the broker, if it is still kept."""
        return self.images([image_id]).get(image_id)

    def images(self, ids: list[str]) -> dict[str, bytes]:
        """The PNGs of those of `ids` that are still kept (ids are read only now: see image_store)."""
        with self._lock:
            kept = self._images.copy()
        return find_images(kept, ids)

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
        reply = Reply(now, visible_text(parts[0], 40), visible_text(parts[1], 128), req if ours else None,
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
        self._events.append(Event(self._event_seq, self._clock(), level, visible_text(text, 400)))

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
            roles = self._roles.roles()
            rows = self._results.rows(results, results_after)
            stats = self._results.stats()
            t = self._topics
            topic_list = t.topics() if topics else ()
            messages = t.messages(topic) if topic is not None else ()
            events = tuple(e for e in self._events if e.seq > events_after)
            return Snapshot(
                now, self._connection_now(), roles, rows, stats, topic_list, t.version,
                len(t), t.dropped, messages, self._filter, t.paused,
                t.missed, events, tuple(self._replies), t.inspected,
                self._connection.state == "connected" and not self._subs.pending, self._roles.ignored,
                tuple(self._publishes.verdicts), self._skipped(),
            )

    def _skipped(self) -> int:
        """Messages skipped so far to keep the view current, over every connection of this observer."""
        client = self._client
        return self._skipped_before + getattr(client, "shed", 0)

    def _update_rates(self, now: float) -> None:
        dt = now - self._rate_mark_t
        if dt < 1.0:
            return
        self._rate_mark_t = now
        self._roles.forget(now)
        self._publishes.expire(now)
        self._hint_unreadable(now)
        self._topics.update_rates(dt)
        self._results.update_rates(dt)

    # ------------------------------------------------------------------------------------------------
    # results

    def clear_results(self) -> None:
        """Forget the results seen so far (this console's view only; the collector keeps its own)."""
        with self._lock:
            self._results.clear()

    # ------------------------------------------------------------------------------------------------
    # steering (UI thread)

    def _connected_client(self) -> mqtt.Client:
        client = self._client
        if client is None or self._connection.state != "connected":
            raise self.not_connected()
        return client

    def send_control(
        self, role: str, cmd: str, client_id: str | None = None, *, req: str | None = None, **args: Any
    ) -> str:
        """Send a control command to one role (`client_id`) or all roles of a kind; returns the req id.

        The answer arrives on the reply topic (see `snapshot().replies`); a refusal, by the role or by the
        broker (MQTT 5 PUBACK), becomes an event.
        """
        check_role(role, client_id)
        req = req or f"{self.client_id}-{next(self._req_counter)}"
        body = {"cmd": cmd, "req": req, **args}
        with self._lock:
            self._connected_client()
            self._our_reqs.append(req)
        target = f"{role} {client_id}" if client_id else f"every {role} role"
        self._send(self.topics.control(role, client_id), json.dumps(body).encode(), 1, False,
                   Pending("command", req, f"the command {cmd} to {target}", 0))
        return req

    def publish(self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False, *,
                tag: str | None = None, action: str = "publish", forget_limit: bool = False) -> None:
        """Publish one message (validated: ConfigError for a bad topic or QoS, BrokerError offline).

        The broker's verdict comes later as a `Verdict` in `snapshot().verdicts` (and, for `action`
        "publish", an event): accepted or refused by its MQTT 5 reason code at QoS 1 and 2, unconfirmed
        at QoS 0 or on MQTT 3.1.1 (where a broker drops a denied message without a word).
        `forget_limit`: first forget the size the broker closed the connection on (MQTT 3.1.1, oversize.py),
        so that a message as large goes out; given up again if the broker closes the connection on it again.
        """
        with self._lock:
            if forget_limit:
                self._oversize.forget_limit()
            connection = self._connection_now()
        data = check_publish(topic, payload, qos, connection)
        what = f"{size_text(len(data))} on {topic}" if action == "publish" else f"the image on {topic}"
        self._send(topic, data, qos, retain, Pending(action, tag, what, len(data)))

    def clear_retained(self, topic: str) -> None:
        """Remove the retained message of `topic` at the broker (an empty retained message at QoS 1).

        Whether the broker let it happen comes as an event (and a `Verdict` with action "clear").
        """
        validate_topic(topic)
        with self._lock:  # one retained after we subscribed comes without the flag (no retain-as-published)
            which = "the" if self._topics.has_retained(topic) else "any"
        self._send(topic, b"", 1, True, Pending("clear", None, f"{which} retained message of {topic}", 0))

    def _send(self, topic: str, data: bytes, qos: int, retain: bool, pending: Pending) -> None:
        """Publish and wait (in the background) for the broker's verdict.

        The client publishes outside the lock: paho calls on_publish holding a lock of its own, so a
        PUBACK can come before `publish` returns; PublishVerdicts then keeps it until `sent` is told.
        """
        with self._lock:
            client = self._connected_client()
            v5 = self.protocol == 5
            mark = self._oversize.losses
        info = client.publish(topic, data, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise BrokerError(f"publish on {topic!r} failed: {mqtt.error_string(info.rc)}")
        now = self._clock()
        pending = pending._replace(topic=topic, t=now)
        with self._lock:
            acknowledged = self._publishes.sent(info.mid, pending, qos, v5)
            if not v5 and qos and pending.action == "publish" and not acknowledged:
                self._oversize.sent(info.mid, pending, publish_packet_size(topic, len(data), qos, protocol=4), mark)

    def _on_publish(self, _client: mqtt.Client, _u: Any, mid: int, rc: Any, _p: Any) -> None:
        with self._lock:
            self._publishes.acknowledged(mid, rc)
            self._oversize.acknowledged(mid)  # it may take a packet as large as one it closed on, after all

    def _cleared(self, topic: str) -> None:
        """The broker did not refuse to clear the retained message of `topic` (lock held)."""
        self._topics.retained_cleared(topic)

    def _hint_unreadable(self, now: float) -> None:
        """Logged in, subscribed, and no status at all after a while: say what that may mean (lock held).

        mosquitto acknowledges a subscription its ACL denies and then delivers nothing, so a console
        logged in with a role's account sees an empty pipeline; the broker never says why. This is a
        hint, not a verdict: an empty broker looks the same.
        """
        c = self._connection
        if (self._read_hint_given or self._roles.statuses_seen or not self.address.username
                or c.state != "connected" or self._subs.pending or now - c.since < self.read_hint_after):
            return
        self._read_hint_given = True
        self._add_event(
            "warning",
            f"logged in as {self.address.username} for {self.read_hint_after:g} s and no role status has come: either "
            f"no role runs on this broker or this account may not read {self.topics.status_filter()} "
            "(a broker's ACL denies a subscription without a word)")
