"""The console's observer in a child process, behind the same API as `engine.console.observer.Observer`.

Why: with the filter `#` the observer's paho client takes every image and result. At a publisher's full
speed that is several thousand messages a second, and paho's Python loop then holds the GIL most of the
time: in the console's own process the screen answered a key after half a second or more. In a child
process the observer has a core (and a GIL) of its own, and the screen only ever unpickles a small
delta ten times a second: the results that are new since the last one, the roles, the events, and (a few
times a second) the topic list and the selected topic's messages.

Commands (control, publish, filter, pause, ...) go the other way over a second pipe. Anything that can
be checked here (filters, topics, QoS, the connection state) is checked here, so mistakes are reported at
once, as with the in-process observer; what fails in the child comes back as an error event.
Nothing here imports textual.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections import deque
from multiprocessing.connection import Connection
from types import MappingProxyType
from typing import Any

from engine.console.child import ChildProcess, child_prologue
from engine.console.observer import Observer
from engine.console.observer_common import ObserverCommon, check_filter, check_publish, check_role
from engine.console.snapshot import Connection as MqttConnection
from engine.console.snapshot import Event, Message, ResultRow, ResultStats, Snapshot, SnapshotDelta, TopicInfo
from engine.console.topic_filters import validate_topic
from engine.errors import BrokerError, MnistError
from engine.mqtt.address import BrokerAddress
from engine.topics import Topics

PUSH_HZ = 10
TOPICS_EVERY = 4  # pushes between topic-list and message refreshes
START_TIMEOUT = 30.0
PAUSE_WAIT = 2.0  # seconds pause() and resume() wait for the child to say it has (milliseconds, unless swamped)
# The screen's own priority, above the local roles (nice 5, their publisher 10): the view keeps up before
# the pipeline does.
# Not lower: on a machine shared with other work at nice 0, an observer at nice 5 got a tenth of a core,
# fell behind the pipeline and showed everything (results, statuses) ten seconds late.
NICE = 0


# ----------------------------------------------------------------------------------------------------
# the child


def _child_main(cmd_conn: Connection, push_conn: Connection, address: BrokerAddress, topics: Topics,
                kwargs: dict[str, Any], push_hz: float) -> None:
    child_prologue(NICE)
    observer = Observer(address, topics, **kwargs)
    observer.start()
    selected: list[str | None] = [None]
    force = threading.Event()
    stop = threading.Event()
    send_lock = threading.Lock()

    def send(item: Any) -> bool:
        try:
            with send_lock:
                push_conn.send(item)
            return True
        except (OSError, ValueError, BrokenPipeError):
            stop.set()
            return False

    def pusher() -> None:
        last_seq = 0
        events_seen = 0
        last_messages: tuple[str | None, int] | None = None
        last_roles: tuple[Any, ...] | None = None
        last_version = -1
        for tick in itertools.count():
            # A new topic sends the list at once: the tree never shows a count without its topics.
            full = tick % TOPICS_EVERY == 0 or force.is_set() or observer.topics_version != last_version
            force.clear()
            topic = selected[0]
            snap = observer.snapshot(topic, topics=full, events_after=events_seen, results_after=last_seq)
            if snap.results:
                last_seq = snap.results[-1].seq
            if snap.events:
                events_seen = snap.events[-1].seq
            if full:
                last_version = snap.topics_version
            messages: tuple[Message, ...] | None = None
            key = (topic, snap.messages[-1].seq if snap.messages else 0)
            if full and key != last_messages:
                last_messages = key
                messages = snap.messages
            roles_key = tuple((r.role, r.id, r.state, r.received) for r in snap.roles)
            roles = None  # unchanged since the last push (statuses come about once a second)
            if roles_key != last_roles:
                last_roles = roles_key
                roles = tuple(r._replace(data=dict(r.data)) for r in snap.roles)
            delta = SnapshotDelta(snap._replace(roles=(), topics=(), messages=()), roles,
                                  snap.topics if full else None, messages)
            if not send(("snap", topic, delta)) or stop.wait(1 / push_hz):
                return

    thread = threading.Thread(target=pusher, name="observer-push", daemon=True)
    thread.start()
    try:
        while not stop.is_set():
            try:
                command = cmd_conn.recv()
            except (EOFError, OSError):
                break  # the console is gone
            name, args, kw = command
            if name == "stop":
                break
            if name == "select":
                selected[0] = args[0]
                force.set()
                continue
            token = kw.pop("reply_token", None)  # a call the console waits for: the answer goes back with it
            answer = None
            try:
                answer = getattr(observer, name)(*args, **kw)
            except MnistError as exc:
                observer.note("error", str(exc))
            if token is not None:
                send(("reply", token, answer))
            if name in ("set_filter", "pause", "resume", "clear_retained"):
                force.set()
    finally:
        stop.set()
        observer.stop()
        thread.join(2)
        send(("stopped", None, None))


# ----------------------------------------------------------------------------------------------------
# the console's side


class ObserverProcess(ObserverCommon):
    """Drop-in for `Observer` in the console: start(), snapshot(), the steering methods, stop()."""

    def __init__(
        self,
        address: BrokerAddress,
        topics: Topics | None = None,
        *,
        filter: str = "#",
        protocol: int | None = None,
        client_id: str | None = None,
        max_results: int = 10_000,
        max_images: int = 5_000,
        push_hz: float = PUSH_HZ,
        **kwargs: Any,
    ) -> None:
        super().__init__(address, topics, filter, client_id, max_results)
        self.max_images = max_images
        self.push_hz = push_hz
        self._kwargs = dict(kwargs, filter=filter, protocol=protocol, client_id=self.client_id,
                            max_results=max_results, max_images=max_images)
        self._child = ChildProcess("mnist-tui-observer", "the observer process")
        self._lock = threading.Lock()
        self._rows: deque[ResultRow] = deque(maxlen=max_results)
        self._dropped_before = 0  # rows with a seq up to this one were cleared here
        self._base: Snapshot | None = None
        self._topic_list: tuple[TopicInfo, ...] = ()
        self._messages: tuple[str | None, tuple[Message, ...]] = (None, ())
        self._events: deque[Event] = deque(maxlen=200)
        self._local_events = itertools.count(10**9)  # our own events sort after the child's
        self._selected: str | None = None
        self._paused = False
        self._dead = False
        self._reqs = itertools.count(1)
        self._tokens = itertools.count(1)
        self._replies: dict[int, Any] = {}  # answers to calls, by token
        now = time.time()
        self._idle = MqttConnection("connecting", now, None, None, protocol or 5, address.url)

    # ----- lifecycle -----
    @property
    def pid(self) -> int | None:
        return self._child.pid

    def start(self, timeout: float = START_TIMEOUT) -> None:
        self._child.start(_child_main, self.address, self.topics, self._kwargs, self.push_hz)
        # the first snapshot says the child is up
        self._child.wait_ready(timeout, lambda: self._base is not None, lambda: self._drain(at_start=True))

    def stop(self) -> None:
        if not self._child.running:
            return
        self._child.stop(5.0)
        self._dead = True

    # ----- talking to the child -----
    def _send(self, name: str, *args: Any, **kw: Any) -> None:
        self._child.send((name, args, kw))

    def _call(self, name: str, *args: Any, timeout: float) -> Any:
        """Run `name` in the child and wait for its answer (on the push pipe, with a token). Any thread.

        BrokerError when the child is gone or does not answer within `timeout` seconds.
        """
        token = next(self._tokens)
        self._send(name, *args, reply_token=token)
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                self._drain()
                found = token in self._replies
                answer = self._replies.pop(token, None)
                conn = self._child.events
            if found:
                return answer
            if conn is None or self._dead:
                raise BrokerError("the observer process is gone")
            if time.monotonic() > deadline:
                raise BrokerError(f"the observer process did not answer within {timeout:g} s")
            with contextlib.suppress(OSError, ValueError):
                conn.poll(0.02)  # wait for the child to write (another thread may read it first: fine)

    def _note(self, level: str, text: str) -> None:
        self._events.append(Event(next(self._local_events), time.time(), level, text))

    def _drain(self, *, at_start: bool = False) -> None:
        conn = self._child.events
        if conn is None:
            return
        try:
            while conn.poll(0):
                kind, topic, delta = conn.recv()
                if kind == "snap":
                    self._merge(topic, delta)
                elif kind == "reply":  # (kind, token, answer)
                    self._replies[topic] = delta
                    while len(self._replies) > 16:  # answers nobody waits for any more
                        del self._replies[min(self._replies)]
                elif kind == "stopped":
                    self._dead = True
        except (EOFError, OSError):
            if at_start:
                raise
            if not self._dead:
                self._dead = True
                self._note("error", "the observer process died: the screen no longer updates")

    def _merge(self, topic: str | None, delta: SnapshotDelta) -> None:
        snap = delta.snapshot
        rows = [r for r in snap.results if r.seq > self._dropped_before]
        self._rows.extend(rows)
        if delta.topics is not None:
            self._topic_list = delta.topics
        if delta.messages is not None:
            self._messages = (topic, delta.messages)
        self._events.extend(snap.events)
        if delta.roles is not None:
            roles = tuple(r._replace(data=MappingProxyType(r.data)) for r in delta.roles)
        else:
            roles = self._base.roles if self._base is not None else ()
        base = snap._replace(roles=roles, results=(), topics=(), messages=(), events=())
        if delta.topics is None and self._base is not None:  # version and count go with the list
            base = base._replace(topics_version=self._base.topics_version, topic_count=self._base.topic_count)
        self._base = base

    # ----- the Observer API -----
    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def protocol(self) -> int:
        return self._base.connection.protocol if self._base is not None else self._idle.protocol

    def snapshot(
        self,
        topic: str | None = None,
        *,
        results: int | None = None,
        topics: bool = True,
        events_after: int = 0,
        results_after: int | None = None,
    ) -> Snapshot:
        with self._lock:
            if topic != self._selected:
                self._selected = topic
                with contextlib.suppress(BrokerError):
                    self._send("select", topic)
            self._drain()
            base = self._base
            rows: tuple[ResultRow, ...] = tuple(self._rows)
            if results_after is not None:
                rows = tuple(r for r in rows if r.seq > results_after)
            if results is not None:
                rows = rows[-results:] if results > 0 else ()
            messages = self._messages[1] if self._messages[0] == topic and topic is not None else ()
            events = tuple(e for e in self._events if e.seq > events_after)
            if base is None:
                stats = ResultStats(0, 0, 0, 0, 0, 0.0, None, None, tuple((0,) * 10 for _ in range(10)))
                return Snapshot(time.time(), self._idle, (), rows, stats, (), 0, 0, 0, (), self._filter,
                                self._paused, 0, events, (), 0, False)
            conn = base.connection
            if self._dead and conn.state != "stopped":
                conn = conn._replace(state="stopped", error="observer process stopped")
            return base._replace(
                time=time.time(), connection=conn, results=rows, topics=self._topic_list if topics else (),
                messages=messages, events=events, filter=self._filter, paused=self._paused,
                # a new filter is subscribed once the child says so under that filter, not before
                subscribed=base.subscribed and base.filter == self._filter,
            )

    def image(self, image_id: str, timeout: float = 2.0) -> bytes | None:
        return self.images([image_id], timeout).get(image_id)

    def images(self, ids: list[str], timeout: float = 2.0) -> dict[str, bytes]:
        """The kept PNGs of those of `ids` the child still has: a request answered on the push pipe.

        Blocks until the answer comes (milliseconds); BrokerError when the child is gone or does not answer
        within `timeout` seconds. Safe from any thread.
        """
        answer: dict[str, bytes] = self._call("images", list(ids), timeout=timeout)
        return answer

    def _require_connected(self) -> None:
        base = self._base
        if base is None or base.connection.state != "connected" or self._dead:
            raise self.not_connected()

    def send_control(self, role: str, cmd: str, client_id: str | None = None, **args: Any) -> str:
        check_role(role, client_id)
        self._require_connected()
        req = f"{self.client_id}-{next(self._reqs)}"
        self._send("send_control", role, cmd, client_id, req=req, **args)
        return req

    def publish(self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False, *,
                tag: str | None = None, action: str = "publish", forget_limit: bool = False) -> None:
        """As `Observer.publish`: the broker's verdict comes in a later snapshot."""
        self._require_connected()
        base = self._base
        connection = base.connection if base is not None else None
        if forget_limit and connection is not None:  # the child forgets it before it checks and sends
            connection = connection._replace(closed_on=None)
        data = check_publish(topic, payload, qos, connection)
        self._send("publish", topic, data, qos, retain, tag=tag, action=action, forget_limit=forget_limit)

    def clear_retained(self, topic: str) -> None:
        validate_topic(topic)
        self._require_connected()
        self._send("clear_retained", topic)

    def set_filter(self, filter_text: str) -> None:
        new = check_filter(filter_text)
        self._send("set_filter", new)
        with self._lock:
            self._filter = new
            self._topic_list = ()
            self._messages = (None, ())

    def pause(self, timeout: float = PAUSE_WAIT) -> None:
        """Freeze the inspector; returns once the child has (so nothing that comes after shows).

        A child too busy to answer within `timeout` seconds: BrokerError, and the pause is still on its way.
        """
        self._paused = True
        self._call("pause", timeout=timeout)

    def resume(self, timeout: float = PAUSE_WAIT) -> None:
        """As `pause`: returns once the child shows new messages again."""
        self._paused = False
        self._call("resume", timeout=timeout)

    def clear_results(self) -> None:
        self._send("clear_results")
        with self._lock:
            if self._rows:
                self._dropped_before = self._rows[-1].seq
            self._rows.clear()
