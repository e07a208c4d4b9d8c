"""What every role shares: one paho client, status and last will, control commands, clean stop."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import paho.mqtt.client as mqtt

from engine.mqtt.address import BrokerAddress
from engine.mqtt.client import connect_kwargs, make_client, reason_text
from engine.mqtt.fastclient import FastClient, payload_of
from engine.protocol import CommandError, parse_command
from engine.settings import Settings, default_client_id
from engine.topics import sanitize_id

if TYPE_CHECKING:
    from engine.roles.dataplane import DataConnection

log = logging.getLogger(__name__)

_GOODBYE_WAIT = 5.0  # s: the goodbye status and the DISCONNECT are each waited for at most this long

Handler = Callable[[dict[str, Any]], Any]


class Role:
    """Base of the input, infer and output roles.

    The paho network thread runs the callbacks; they only parse, count and enqueue. A status thread
    publishes the retained status about once a second. Subclasses add subscriptions (`subscriptions`),
    data handling (`on_data`), status fields (`status_fields`) and commands (`commands`).
    """

    role: ClassVar[str] = "role"
    receive_maximum: int | None = None  # MQTT 5: unacknowledged QoS 1/2 messages the broker may send us
    # True: data messages are acknowledged by the subclass once handled (`client.ack`); control
    # messages are always acknowledged here, else each would hold a receive-maximum slot for good
    # and come back after a reconnect.
    manual_ack: ClassVar[bool] = False
    # True: data subscriptions and publishes go through a second client (engine.roles.dataplane), so that
    # control and status never wait behind data on one socket, whatever the load.
    data_connection: ClassVar[bool] = False
    # True (with data_connection): what the role publishes on its data topic goes through a third client
    # that subscribes to nothing, so that the broker's acknowledgements of it never wait behind incoming
    # data on one socket (engine.roles.dataplane).
    results_connection: ClassVar[bool] = False

    def __init__(self, address: BrokerAddress, settings: Settings | None = None, client_id: str | None = None):
        self.address = address
        self.settings = settings or Settings()
        self.topics = self.settings.topics
        self.client_id = sanitize_id(client_id or default_client_id(self.role, stable=self.settings.durable))
        self.status_topic = self.topics.status(self.role, self.client_id)
        self.started_at = time.time()
        self.connected = threading.Event()
        self.ready = threading.Event()  # connected and every subscription acknowledged
        self._sub_mid: int | None = None
        self._subscribed = False
        self._hello_mid: int | None = None  # the first status after a connect: its PUBACK says if we may write
        self._tracked: dict[int, str] = {}  # mid -> topic of status and reply publishes awaiting their PUBACK
        self.last_error: str | None = None
        self.fatal_error: str | None = None  # set when the broker refuses what the role cannot work without
        self.refused = 0  # publishes the broker refused (MQTT 5 PUBACK reason codes)
        # the input role's QoS 1 images the broker took with nobody subscribed to them (MQTT 5 "no matching
        # subscribers"): gone
        self.no_subscriber = 0
        self._refusals_logged: set[str] = set()
        self._early_refusals: list[str] = []  # said once the first status is answered (unless that is refused)
        self.reconnects = 0
        self.sessions_lost = 0  # reconnects of a durable session that the broker no longer had
        self.error_reason: str | None = None  # one line: why a thread of this role died (state "error")
        self.last_outage: float | None = None  # seconds from losing the connection to getting it back
        self._lost_at: float | None = None
        self._ever_connected = False
        self._stop = threading.Event()
        self._disconnected = threading.Event()  # set by the network thread once a stopping role has disconnected
        self._status_thread: threading.Thread | None = None
        self._client: FastClient | None = None
        self._data: DataConnection | None = None
        self._results: DataConnection | None = None
        self.commands: dict[str, Handler] = {"ping": lambda _a: None, "status": lambda _a: self.publish_status()}

    # ----- lifecycle -----
    @property
    def persistent(self) -> bool:
        """A durable session (MQTT 5 clean start off + session expiry, 3.1.1 clean session off): while the
        role is away, the broker keeps its subscriptions and queues its QoS 1 messages. Consumers only."""
        return self.settings.session_expiry > 0 and self.role in ("infer", "output")

    def make_client(self) -> FastClient:
        if self.data_connection:  # control and status only: no session to keep, nothing to acknowledge late
            return make_client(self.address, self.client_id, protocol=self.settings.protocol)
        persistent = self.persistent
        return make_client(
            self.address,
            self.client_id,
            protocol=self.settings.protocol,
            clean_start=not persistent,
            session_expiry=self.settings.session_expiry if persistent else None,
            receive_maximum=self.receive_maximum,
            manual_ack=self.manual_ack,
        )

    def start(self) -> None:
        client = self.make_client()
        will = json.dumps(self._base_status("offline") | {"connected": False, "reason": "connection lost"})
        client.will_set(self.status_topic, will, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        self._client = client
        if self.data_connection:  # before the control client runs: its first status reads the data client
            from engine.roles.dataplane import DataConnection

            self._data = DataConnection(self)
            if self.results_connection:
                self._results = DataConnection(self, outbound=True)
                self._results.start()
            self._data.start()
        client.connect_async(self.address.host, self.address.port, **connect_kwargs(client))
        client.loop_start()
        self._status_thread = threading.Thread(target=self.guarded(self._status_loop), name=f"{self.role}-status",
                                               daemon=True)
        self._status_thread.start()

    def stop(self) -> None:
        """Clean stop: subclass work ends first (`shutdown`), then an offline status, then disconnect."""
        if self._stop.is_set():
            return
        self._stop.set()
        self.shutdown()
        if self._results is not None:
            # A worker's last answers reach the broker first: the acknowledgements of their images follow.
            self._results.flush(self.settings.drain_seconds + 2)
        if self._data is not None:
            # What the role published on its data connection (a worker's last answers) reaches the broker
            # before the goodbye says it was done, and before a disconnect could drop what paho still holds.
            self._data.flush(self.settings.drain_seconds + 2)
        client = self._client
        if client is not None:
            if self.connected.is_set():
                # the goodbye carries the final counters, so a console can check that nothing was left undone
                goodbye = self.status() | {"state": "offline"}
                info = client.publish(self.status_topic, json.dumps(goodbye), qos=1, retain=True)
                with contextlib.suppress(RuntimeError, ValueError):
                    info.wait_for_publish(timeout=_GOODBYE_WAIT)  # at once, unless the machine is very busy
            was_connected = self.connected.is_set()
            client.disconnect()
            # Let the network thread write the DISCONNECT before it is stopped: a socket closed without one
            # makes the broker publish the last will over the goodbye ("connection lost").
            if was_connected and not self._disconnected.wait(_GOODBYE_WAIT):
                log.warning("%s %s: the disconnect was not written within %g s; the broker may publish the last "
                            "will (connection lost) over the goodbye", self.role, self.client_id, _GOODBYE_WAIT)
            client.loop_stop()
        if self._results is not None:  # first: an acknowledgement it still reads acknowledges images on the other
            self._results.stop()
        if self._data is not None:
            self._data.stop()
        if self._status_thread is not None:
            self._status_thread.join(timeout=3)

    def shutdown(self) -> None:
        """Subclasses stop their worker threads here (called before the offline status goes out)."""

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """Wait until connected and subscribed; False on timeout."""
        return self.ready.wait(timeout)

    @property
    def client(self) -> FastClient:
        assert self._client is not None, "role not started"
        return self._client

    @property
    def data_client(self) -> FastClient:
        """The client of the data topics: the data connection's, or the one client of the role."""
        return self._data.client if self._data is not None else self.client

    @property
    def results_client(self) -> FastClient:
        """The client the role publishes its data on: the results connection's, else the data client."""
        return self._results.client if self._results is not None else self.data_client

    @property
    def data_connected(self) -> threading.Event:
        return self._data.connected if self._data is not None else self.connected

    def data_qos(self) -> int:
        """The QoS of what the role publishes on its data topic (its data client listens for PUBACKs if > 0)."""
        return 0

    def on_data_connect(self) -> None:
        """Called on the data connection's network thread each time it (re)connects."""

    def on_data_disconnect(self) -> None:
        """Called on the data connection's network thread each time it is lost or ended."""

    # ----- paho callbacks (network thread: parse and enqueue only) -----
    def subscriptions(self) -> list[tuple[str, int]]:
        return []

    def control_subscriptions(self) -> list[tuple[str, int]]:
        """Subscriptions of the control client besides the control topics (other roles' statuses); its
        messages go to `on_data` too."""
        return []

    def check_session(self, flags: Any) -> None:
        """On a reconnect: a durable session that the broker no longer has is counted and logged."""
        if self.persistent and not getattr(flags, "session_present", True):
            self.sessions_lost += 1
            log.warning("%s %s: the broker lost this role's session (session present = 0 on reconnect): "
                        "messages queued for it while it was away are gone (is the broker's persistence "
                        "on and writable?)", self.role, self.client_id)

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            self.last_error = f"broker refused the connection: {reason_text(rc)}"
            log.error("%s %s: %s", self.role, self.client_id, self.last_error)
            return
        self.last_error = None
        if self._ever_connected:
            self.reconnects += 1
            if self._lost_at is not None:
                self.last_outage = time.monotonic() - self._lost_at
            log.info("%s %s: reconnected%s", self.role, self.client_id,
                     f" after {self.last_outage:.1f} s" if self.last_outage is not None else "")
            if not self.data_connection:  # else the session is the data connection's (engine.roles.dataplane)
                self.check_session(flags)
        self._ever_connected = True
        self._lost_at = None
        self._subscribed = False
        # A role that acknowledges its data itself takes commands at QoS 0: they then never wait behind
        # the receive maximum (a stuck worker full of unacknowledged images must still hear "start"),
        # and a command sent while it was away is not replayed when it comes back.
        qos = 0 if self.manual_ack and not self.data_connection else 1
        subs = [(self.topics.control(self.role), qos), (self.topics.control(self.role, self.client_id), qos)]
        if not self.data_connection:
            subs += self.subscriptions()
        subs += self.control_subscriptions()
        _rc, self._sub_mid = client.subscribe(subs)
        self.connected.set()
        info = self.publish_status()
        self._hello_mid = info.mid if info is not None else None

    def _check_ready(self) -> None:
        data_ready = all(c is None or c.ready.is_set() for c in (self._data, self._results))
        if (self._subscribed and self._hello_mid is None and self.connected.is_set() and data_ready
                and not self.ready.is_set()):
            self.ready.set()
            self.publish_status()  # says "subscribed" now, not at the next second's status

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, mid: int, reason_codes: Any, _p: Any) -> None:
        if mid == self._sub_mid:
            refused = [str(rc) for rc in reason_codes if rc.is_failure]
            if refused:
                self.last_error = f"broker refused a subscription: {', '.join(refused)}"
                log.error("%s %s: %s", self.role, self.client_id, self.last_error)
            self._subscribed = True
            self._check_ready()

    def data_topic(self) -> str | None:
        """The topic the role publishes its data on (for messages about refused publishes)."""
        return None

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, rc: Any, _p: Any) -> None:
        """MQTT 5 brokers say in the PUBACK when the ACL denies a QoS 1 publish; say so once per topic.

        (MQTT 3.1.1 has no way to say it: a denied publish is acknowledged and dropped.)
        """
        topic = self._tracked.pop(mid, None)
        hello = mid == self._hello_mid
        if hello:
            self._hello_mid = None
        if rc.is_failure:
            topic = topic or self.data_topic() or "a topic"
            self.refused += 1
            why = str(getattr(rc, "getName", lambda: rc)()).lower()
            text = f"the broker refused to let {self.role} {self.client_id} publish on {topic}: {why}"
            self.last_error = text
            if hello:  # a role that may not even say it is alive cannot work here: whoever started it says so
                self.fatal_error = text + " (check the user name and the broker's ACL)"
            elif topic not in self._refusals_logged and self.fatal_error is None:
                self._refusals_logged.add(topic)
                if self._hello_mid is None:
                    log.error("%s", text)
                else:  # the first status is still unanswered: if it is refused too, that is the one line
                    self._early_refusals.append(text)
        if hello:
            if self.fatal_error is None:
                for text in self._early_refusals:
                    log.error("%s", text)
            self._early_refusals.clear()
            self._check_ready()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self.connected.clear()
        if self._stop.is_set():
            self._disconnected.set()
        self.ready.clear()
        self._hello_mid = None
        if self._lost_at is None:
            self._lost_at = time.monotonic()
        if not self._stop.is_set():
            why = reason_text(rc)
            why = "connection lost" if why == "Unspecified error" else why  # what paho says when the socket closes
            self.last_error = f"disconnected: {why}; reconnecting"
            log.warning("%s %s: %s", self.role, self.client_id, self.last_error)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            if msg.topic.startswith(self.topics.control_prefix + "/"):
                try:
                    self.handle_control(payload_of(msg))
                finally:
                    if self.manual_ack and msg.qos and not self.data_connection:
                        self.client.ack(msg.mid, msg.qos)
            else:
                self.on_data(msg)
        except Exception:  # a role must never die of one message
            log.exception("%s %s: unexpected error handling a message on %s", self.role, self.client_id, msg.topic)

    def on_data(self, msg: mqtt.MQTTMessage) -> None:
        """Subclasses handle their data topics here."""

    # ----- control -----
    def handle_control(self, payload: bytes) -> dict[str, Any]:
        """Run one command and answer it; whatever the payload, exactly one answer and no exception."""
        req = None
        cmd = "?"
        try:
            cmd, args, req = parse_command(payload)
            cmd = cmd if len(cmd) <= 40 else cmd[:40] + "..."
            handler = self.commands.get(cmd)
            if handler is None:
                known = ", ".join(sorted(self.commands))
                raise CommandError(f"unknown command {cmd!r} for {self.role} (known: {known})")
            handler(args)
            answer: dict[str, Any] = {"req": req, "cmd": cmd, "ok": True}
        except CommandError as exc:
            answer = {"req": req, "cmd": cmd, "ok": False, "error": str(exc)}
            log.warning("%s %s: bad command: %s", self.role, self.client_id, exc)
        except Exception as exc:  # a bug in a handler: answered like a bad command, and logged in full
            answer = {"req": req, "cmd": cmd, "ok": False, "error": f"command failed: {type(exc).__name__}: {exc}"}
            log.exception("%s %s: command %r failed", self.role, self.client_id, cmd)
        if self._client is not None:
            topic = self.topics.reply(self.role, self.client_id)
            self._track(self._client.publish(topic, json.dumps(answer), qos=1), topic)
        if answer["ok"]:
            self.publish_status()
        return answer

    # ----- status -----
    @property
    def state(self) -> str:
        return "running"

    def status_fields(self) -> dict[str, Any]:
        return {}

    def _base_status(self, state: str) -> dict[str, Any]:
        return {
            "role": self.role,
            "id": self.client_id,
            "state": state,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "ts": round(time.time(), 3),
            "uptime": round(time.time() - self.started_at, 1),
            "connected": True,
            "subscribed": self.ready.is_set(),  # to everything it takes (a worker: its images)
        } | ({"data_connected": self._data.connected.is_set()} if self._data is not None else {})

    def status(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"sessions_lost": self.sessions_lost}
        if self.error_reason is not None:
            extra |= {"state": "error", "reason": self.error_reason}
        return self._base_status(self.state) | self.status_fields() | extra

    def guarded(self, target: Callable[[], None]) -> Callable[[], None]:
        """`target` for a thread of this role: an exception that escapes it puts the role in state "error"
        with a one-line reason in its retained status (and the log), instead of a silent dead thread."""

        def run() -> None:
            try:
                target()
            except Exception as exc:
                self.fail(f"{type(exc).__name__}: {exc}", exc)

        return run

    def fail(self, why: str, exc: BaseException | None = None) -> None:
        """Put the role in state "error" for good, with `why` (one line) as the reason."""
        line = " ".join(why.split())[:300]
        self.error_reason = f"{threading.current_thread().name} stopped: {line}"
        log.error("%s %s: %s", self.role, self.client_id, self.error_reason)
        if exc is not None:
            log.debug("%s %s: traceback", self.role, self.client_id, exc_info=exc)
        with contextlib.suppress(Exception):
            self.publish_status()

    def publish_status(self) -> mqtt.MQTTMessageInfo | None:
        if self._client is not None and self.connected.is_set() and not self._stop.is_set():
            status = self.status()
            info = self._client.publish(self.status_topic, json.dumps(status), qos=1, retain=True)
            self._track(info, self.status_topic)
            self.status_published(status)
            return info
        return None

    def status_published(self, status: dict[str, Any]) -> None:
        """Called with each status published on the status topic (a figure "since the last status" starts
        again here, not when `status()` is read for a log line)."""

    def _track(self, info: mqtt.MQTTMessageInfo, topic: str) -> None:
        """Remember the topic of a control-plane publish until its PUBACK (to name it if refused)."""
        if len(self._tracked) > 1000:  # PUBACKs lost with a connection: never let this grow
            self._tracked.clear()
        self._tracked[info.mid] = topic

    def _status_loop(self) -> None:
        while not self._stop.wait(self.settings.status_interval):
            try:
                self.publish_status()
            except Exception:
                log.exception("%s %s: status publish failed", self.role, self.client_id)
