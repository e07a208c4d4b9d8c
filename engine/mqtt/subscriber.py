"""One paho client that subscribes to a list of filters on every connect: start, wait for the SUBACK, stop.

Used by the commands that read the broker without being a role: `metrics`/`health` (engine/monitor/
status_feed.py) and `record` (engine/recorder.py). paho reconnects on its own and the filters are
subscribed again in on_connect, so retained messages come again after an outage. A refused connection
becomes one line in `error` (and `on_refused` is called); `start` raises it as BrokerError.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from engine.errors import BrokerError
from engine.mqtt.address import BrokerAddress
from engine.mqtt.client import connect_kwargs, make_client, reason_text

MessageHandler = Callable[[mqtt.MQTTMessage], None]


class Subscriber:
    def __init__(self, address: BrokerAddress, client_id: str, filters: list[tuple[str, int]],
                 on_message: MessageHandler, *, protocol: int, on_refused: Callable[[], None] | None = None) -> None:
        self.address = address
        self.client_id = client_id
        self.filters = filters
        self.on_refused = on_refused
        self.error: str | None = None
        self.connected = threading.Event()
        self.subscribed = threading.Event()  # the broker acknowledged a subscription
        self._acked: set[int] = set()
        self._acked_cond = threading.Condition()
        self.client = make_client(address, client_id, protocol=protocol)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_a: self.connected.clear()
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda _c, _u, msg: on_message(msg)

    def start(self, timeout: float) -> None:
        """Connect and subscribe; BrokerError with one line when that fails within `timeout` seconds."""
        self.client.connect_async(self.address.host, self.address.port, **connect_kwargs(self.client))
        self.client.loop_start()
        deadline = time.monotonic() + timeout
        while not self.subscribed.wait(0.05):
            if self.error or time.monotonic() >= deadline:
                self.stop()
                raise BrokerError(self.error or f"no subscription acknowledged by {self.address.url} "
                                                f"within {timeout:g} s")

    def acknowledged(self, mid: int, timeout: float) -> bool:
        """Wait until the broker has acknowledged the subscription `mid`; False on timeout."""
        with self._acked_cond:
            return self._acked_cond.wait_for(lambda: mid in self._acked, timeout)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            self.error = f"broker at {self.address.url} refused the connection: {reason_text(rc)}"
            if self.on_refused is not None:
                self.on_refused()
            return
        self.connected.set()
        client.subscribe(self.filters)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, mid: int, *_a: Any) -> None:
        with self._acked_cond:
            self._acked.add(mid)
            self._acked_cond.notify_all()
        self.subscribed.set()
