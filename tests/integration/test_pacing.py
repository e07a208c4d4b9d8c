"""A publisher at "max" keeps to what the workers take, by their retained statuses on a real mosquitto
(engine/roles/pacer.py); `--flood` (pace off) sends as fast as it can whatever they say. The worker here is
a client of the test that publishes a worker's statuses, so that what the workers say is known exactly;
waits with deadlines, no time asserted."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from helpers import wait_for

from engine.roles import pacer
from engine.roles.publisher import Publisher
from engine.settings import Settings

STATUS = "mnist/status/infer/w-said"


class SaidWorker:
    """Publishes a running worker's retained status every 0.2 s: `per_status` more answered each time, by a
    clock that moves one second per status, and the queue it is told."""

    def __init__(self, address: Any) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="said-worker")
        self.client.connect(address.host, address.port)
        self.client.loop_start()
        self.queue = 0
        self.per_status = 1000
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        ts, processed = 1.0, 0
        while not self._stop.wait(0.2):
            ts += 1.0
            processed += self.per_status
            status = {"role": "infer", "id": "w-said", "state": "running", "ts": ts, "processed": processed,
                      "dropped": 0, "queue": self.queue, "queue_max": 2000, "group": None}
            self.client.publish(STATUS, json.dumps(status), qos=1, retain=True)

    def gone(self) -> None:
        """It stops, and its retained status is removed."""
        self._stop.set()
        self._thread.join(5)
        self.client.publish(STATUS, b"", qos=1, retain=True).wait_for_publish(10)

    def close(self) -> None:
        self._stop.set()
        self.client.loop_stop()
        self.client.disconnect()


@contextlib.contextmanager
def _started(publisher: Publisher) -> Iterator[Publisher]:
    publisher.start()
    try:
        assert publisher.wait_ready(30), publisher.last_error
        yield publisher
    finally:
        publisher.stop()


@pytest.fixture
def said_worker(mosquitto_broker) -> Iterator[SaidWorker]:
    worker = SaidWorker(mosquitto_broker.address)
    try:
        yield worker
    finally:
        worker.close()


def _paced(publisher: Publisher) -> float | None:
    return publisher.status()["paced"]


def test_a_publisher_at_max_keeps_to_what_the_workers_take(mosquitto_broker, said_worker) -> None:
    """A worker answering 1,000/s with its queue nearly full is offered less than that, so its queue
    drains; once its queue is empty it is offered more; without any running worker, as fast as possible."""
    with _started(Publisher(mosquitto_broker.address, Settings(rate=0, autostart=True), "paced-in")) as publisher:
        assert _paced(publisher) is None  # no worker heard yet: as fast as it can
        said_worker.queue = 1900
        said_worker._thread.start()
        aim = 1000 + (pacer.FILL * 2000 - 1900) / pacer.DRAIN
        wait_for(lambda: (p := _paced(publisher)) is not None and p <= aim + 1, timeout=30,
                 message=lambda: f"paced at {_paced(publisher)}, not at most {aim:.0f}")
        said_worker.queue = 0
        wait_for(lambda: (_paced(publisher) or 0) > 1000, timeout=30,
                 message=lambda: f"paced at {_paced(publisher)} with the worker's queue empty")
        assert publisher.status()["rate"] == 0  # what the user set is still "max"
        said_worker.gone()
        wait_for(lambda: _paced(publisher) is None, timeout=30, message="still paced with no worker")


def test_flood_ignores_the_workers(mosquitto_broker, said_worker) -> None:
    """Pace off (`--flood`, or `set` with `"pace": false`): the statuses are heard but the rate stays "as
    fast as possible"."""
    settings = Settings(rate=0, autostart=True)
    with _started(Publisher(mosquitto_broker.address, settings, "flood-in")) as publisher:
        said_worker.queue = 1900
        said_worker._thread.start()
        wait_for(lambda: _paced(publisher) is not None, timeout=30, message="the worker's statuses never paced it")
        answer = publisher.handle_control(json.dumps({"cmd": "set", "pace": False}).encode())
        assert answer["ok"], answer
        status = publisher.status()
        assert status["pace"] is False and status["paced"] is None
        assert publisher._pacer.rate() is not None  # the worker is still heard, only not followed
        answer = publisher.handle_control(json.dumps({"cmd": "set", "pace": "no"}).encode())
        assert not answer["ok"] and "pace" in answer["error"]
