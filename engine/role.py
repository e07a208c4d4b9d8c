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
from typing import Any, ClassVar

import paho.mqtt.client as mqtt

from engine.broker_address import BrokerAddress
from engine.mqtt import connect_kwargs, make_client, reason_text
from engine.protocol import CommandError, parse_command
from engine.settings import Settings, default_client_id
from engine.topics import sanitize_id

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Any]


class Role:
    """Base of the input, infer and output roles.

    The paho network thread runs the callbacks; they only parse, count and enqueue. A status thread
    publishes the retained status about once a second. Subclasses add subscriptions (`subscriptions`),
    data handling (`on_data`), status fields (`status_fields`) and commands (`commands`).
    """

    role: ClassVar[str] = "role"

    def __init__(self, address: BrokerAddress, settings: Settings | None = None, client_id: str | None = None):
        self.address = address
        self.settings = settings or Settings()
        self.topics = self.settings.topics
        self.client_id = sanitize_id(client_id or default_client_id(self.role))
        self.status_topic = self.topics.status(self.role, self.client_id)
        self.started_at = time.time()
        self.connected = threading.Event()
        self.ready = threading.Event()  # connected and every subscription acknowledged
        self._sub_mid: int | None = None
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._status_thread: threading.Thread | None = None
        self._client: mqtt.Client | None = None
        self.commands: dict[str, Handler] = {"ping": lambda _a: None, "status": lambda _a: self.publish_status()}

    # ----- lifecycle -----
    def make_client(self) -> mqtt.Client:
        persistent = self.settings.session_expiry > 0 and self.role == "infer"
        return make_client(
            self.address,
            self.client_id,
            protocol=self.settings.protocol,
            clean_start=not persistent,
            session_expiry=self.settings.session_expiry if persistent else None,
        )

    def start(self) -> None:
        client = self.make_client()
        will = json.dumps(self._base_status("offline") | {"connected": False, "reason": "connection lost"})
        client.will_set(self.status_topic, will, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._client = client
        client.connect_async(self.address.host, self.address.port, **connect_kwargs(client))
        client.loop_start()
        self._status_thread = threading.Thread(target=self._status_loop, name=f"{self.role}-status", daemon=True)
        self._status_thread.start()

    def stop(self) -> None:
        """Clean stop: subclass work ends first (`shutdown`), then an offline status, then disconnect."""
        if self._stop.is_set():
            return
        self._stop.set()
        self.shutdown()
        client = self._client
        if client is not None:
            if self.connected.is_set():
                info = client.publish(self.status_topic, json.dumps(self._base_status("offline")), qos=1, retain=True)
                with contextlib.suppress(RuntimeError, ValueError):
                    info.wait_for_publish(timeout=3)
            client.disconnect()
            client.loop_stop()
        if self._status_thread is not None:
            self._status_thread.join(timeout=3)

    def shutdown(self) -> None:
        """Subclasses stop their worker threads here (called before the offline status goes out)."""

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """Wait until connected and subscribed; False on timeout."""
        return self.ready.wait(timeout)

    @property
    def client(self) -> mqtt.Client:
        assert self._client is not None, "role not started"
        return self._client

    # ----- paho callbacks (network thread: parse and enqueue only) -----
    def subscriptions(self) -> list[tuple[str, int]]:
        return []

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            self.last_error = f"broker refused the connection: {reason_text(rc)}"
            log.error("%s %s: %s", self.role, self.client_id, self.last_error)
            return
        self.last_error = None
        subs = [(self.topics.control(self.role), 1), (self.topics.control(self.role, self.client_id), 1)]
        subs += self.subscriptions()
        _rc, self._sub_mid = client.subscribe(subs)
        self.connected.set()
        self.publish_status()

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, mid: int, reason_codes: Any, _p: Any) -> None:
        if mid == self._sub_mid:
            refused = [str(rc) for rc in reason_codes if rc.is_failure]
            if refused:
                self.last_error = f"broker refused a subscription: {', '.join(refused)}"
                log.error("%s %s: %s", self.role, self.client_id, self.last_error)
            self.ready.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self.connected.clear()
        self.ready.clear()
        if not self._stop.is_set():
            self.last_error = f"disconnected: {reason_text(rc)}; reconnecting"
            log.warning("%s %s: %s", self.role, self.client_id, self.last_error)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            if msg.topic.startswith(self.topics.control_prefix + "/"):
                self.handle_control(msg.payload)
            else:
                self.on_data(msg)
        except Exception:  # a role must never die of one message
            log.exception("%s %s: unexpected error handling a message on %s", self.role, self.client_id, msg.topic)

    def on_data(self, msg: mqtt.MQTTMessage) -> None:
        """Subclasses handle their data topics here."""

    # ----- control -----
    def handle_control(self, payload: bytes) -> dict[str, Any]:
        req = None
        cmd = "?"
        try:
            cmd, args, req = parse_command(payload)
            handler = self.commands.get(cmd)
            if handler is None:
                known = ", ".join(sorted(self.commands))
                raise CommandError(f"unknown command {cmd!r} for {self.role} (known: {known})")
            handler(args)
            answer: dict[str, Any] = {"req": req, "cmd": cmd, "ok": True}
        except CommandError as exc:
            answer = {"req": req, "cmd": cmd, "ok": False, "error": str(exc)}
            log.warning("%s %s: bad command: %s", self.role, self.client_id, exc)
        if self._client is not None:
            self._client.publish(self.topics.reply(self.role, self.client_id), json.dumps(answer), qos=1)
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
        }

    def status(self) -> dict[str, Any]:
        return self._base_status(self.state) | self.status_fields()

    def publish_status(self) -> None:
        if self._client is not None and self.connected.is_set() and not self._stop.is_set():
            self._client.publish(self.status_topic, json.dumps(self.status()), qos=1, retain=True)

    def _status_loop(self) -> None:
        while not self._stop.wait(self.settings.status_interval):
            try:
                self.publish_status()
            except Exception:
                log.exception("%s %s: status publish failed", self.role, self.client_id)
