"""The output role: collects results, keeps accuracy, a confusion matrix, latency and duplicates."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, ClassVar

import paho.mqtt.client as mqtt

from engine.mqtt.address import BrokerAddress
from engine.mqtt.fastclient import payload_of
from engine.protocol import Result, parse_result
from engine.roles.role import Role
from engine.settings import Settings
from engine.stats import RateMeter, ResultCounts, Window, rounded

log = logging.getLogger(__name__)


class Collector(Role):
    role: ClassVar[str] = "output"
    data_connection: ClassVar[bool] = True  # results on a client of their own: commands never wait behind them

    def __init__(
        self,
        address: BrokerAddress,
        settings: Settings | None = None,
        client_id: str | None = None,
        on_result: Callable[[Result, bytes], None] | None = None,
    ):
        super().__init__(address, settings, client_id)
        self.on_result = on_result
        self._lock = threading.Lock()
        self.latency = Window(self.settings.latency_window)
        self.meter = RateMeter()
        self.commands.update(reset=lambda _a: self.reset())
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.counts = ResultCounts()
            self.duplicates = 0
            self.legacy = 0
            self.malformed = 0
            self._seen: OrderedDict[str, None] = OrderedDict()
        self.latency.clear()

    def subscriptions(self) -> list[tuple[str, int]]:
        return [(self.topics.results, 1)]

    def start(self) -> None:
        super().start()
        # Plain QoS 0 results are taken as the data client reads them, without a message object, its MQTT 5
        # properties or paho's dispatch (about a quarter of what a result cost this role at thousands a second)
        self._results_topic = self.topics.results.encode()
        self.data_client.count_only = self._take_plain

    def _take_plain(self, topic: bytes, payload: bytes) -> bool:
        """Asked by the data client about each plain QoS 0 message: True when it was a result, taken here."""
        if topic != self._results_topic:
            return False  # another topic: on_data
        self._take(payload, time.time())
        return True

    def on_data(self, msg: mqtt.MQTTMessage) -> None:
        self._take(payload_of(msg), time.time())

    def _take(self, payload: bytes, now: float) -> None:
        try:
            result = parse_result(payload)
        except ValueError as exc:
            with self._lock:
                self.malformed += 1
            log.warning("output %s: ignored a result: %s", self.client_id, exc)
            return
        self.add(result, now)
        if self.on_result is not None:
            self.on_result(result, payload)

    def add(self, result: Result, now: float | None = None) -> bool:
        """Count one result; returns False when its id was already seen (a duplicate, counted once)."""
        now = time.time() if now is None else now
        with self._lock:
            if result.id is not None:
                if result.id in self._seen:
                    self.duplicates += 1
                    return False
                self._seen[result.id] = None
                if len(self._seen) > self.settings.dedup_window:
                    self._seen.popitem(last=False)
            if result.legacy:
                self.legacy += 1
            self.counts.add(result.pred, result.label, result.worker, result.error is not None)
        self.meter.add()
        if result.t_sent is not None:
            self.latency.add(max(0.0, now - result.t_sent))
        return True

    @property
    def received(self) -> int:
        return self.counts.received

    @property
    def labelled(self) -> int:
        return self.counts.labelled

    @property
    def correct(self) -> int:
        return self.counts.correct

    @property
    def errors(self) -> int:
        return self.counts.errors

    @property
    def accuracy(self) -> float | None:
        return self.counts.accuracy

    def status_fields(self) -> dict[str, Any]:
        with self._lock:
            c = self.counts
            acc = c.accuracy
            fields: dict[str, Any] = {
                "received": c.received,
                "labelled": c.labelled,
                "correct": c.correct,
                "accuracy": round(acc, 5) if acc is not None else None,
                "errors": c.errors,
                "duplicates": self.duplicates,
                "legacy": self.legacy,
                "malformed": self.malformed,
                "per_worker": dict(c.per_worker),
                "confusion": [row[:] for row in c.confusion],
            }
        fields["rate"] = round(self.meter.rate(), 1)
        fields["lat_ms"] = rounded(self.latency.percentiles((50, 90, 99)))
        return fields
