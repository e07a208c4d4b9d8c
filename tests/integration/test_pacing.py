"""A publisher at "max" keeps to what the workers take, by their retained statuses on a real mosquitto
(engine/roles/pacer.py); `--flood` (pace off) sends as fast as it can whatever they say. The worker here is
a client of the test that publishes a worker's statuses, so that what the workers say is known exactly;
waits with deadlines, no time asserted."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
from helpers import started, wait_for

from engine.roles import pacer
from engine.roles.publisher import Publisher
from engine.settings import Settings

STATUS = "mnist/status/infer/w-said"


class SaidWorker:
    """Publishes a running worker's status every 0.25 s, as a worker would (its own clock in `ts`): it has
    received what the publisher under test sent, answered `capacity` images a second, and has `queue` queued."""

    def __init__(self, address: Any, received: Callable[[], int]) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="said-worker")
        self.client.connect(address.host, address.port)
        self.client.loop_start()
        self.received = received
        self.queue = 0
        self.capacity = 1000.0
        self.said = 0  # statuses published so far
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        ts, processed = time.time(), 0.0
        while not self._stop.wait(0.25):
            now = time.time()
            processed += self.capacity * (now - ts)
            ts = now
            status = {"role": "infer", "id": "w-said", "state": "running", "ts": ts, "processed": int(processed),
                      "received": self.received(), "dropped": 0, "queue": self.queue, "queue_max": 2000,
                      "group": None}
            self.client.publish(STATUS, json.dumps(status), qos=1, retain=True)
            self.said += 1

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
def _paced_to_the_floor(address: Any, client_id: str) -> Iterator[tuple[Publisher, SaidWorker]]:
    """A publisher at max beside a worker that says it answers 5 images/s with its queue nearly full: once
    the publisher is paced at the least there is."""
    publisher = Publisher(address, Settings(rate=0, autostart=True), client_id)
    worker = SaidWorker(address, lambda: publisher.sent)
    try:
        with started(publisher):
            worker.capacity, worker.queue = 5.0, 1900
            wait_for(lambda: _paced(publisher) == pacer.FLOOR, timeout=30,
                     message=lambda: f"paced at {_paced(publisher)}, not at {pacer.FLOOR}")
            yield publisher, worker
    finally:
        worker.close()


def _paced(publisher: Publisher) -> float | None:
    return publisher.status()["paced"]


def _sent_over(publisher: Publisher, worker: SaidWorker, statuses: int) -> tuple[int, float]:
    """(images sent, seconds) while the worker says `statuses` more statuses."""
    sent, t0, said = publisher.sent, time.monotonic(), worker.said
    wait_for(lambda: worker.said >= said + statuses, timeout=30, message="the worker's statuses stopped")
    return publisher.sent - sent, time.monotonic() - t0


def test_a_publisher_at_max_keeps_to_what_the_workers_take(mosquitto_broker) -> None:
    """A worker that answers little with its queue nearly full is offered the least there is, and the
    publisher sends no more than that; once its queue is empty it is offered more; with no worker left, as
    fast as possible."""
    with _paced_to_the_floor(mosquitto_broker.address, "paced-in") as (publisher, worker):
        sent, seconds = _sent_over(publisher, worker, 8)
        # the token bucket lets at most a tenth of a second (and one image) more through after a change
        assert sent <= pacer.FLOOR * (seconds + 0.1) + 2, (sent, seconds)
        worker.capacity, worker.queue = 1000.0, 0
        wait_for(lambda: (_paced(publisher) or 0) > 2 * pacer.FLOOR, timeout=30,
                 message=lambda: f"paced at {_paced(publisher)} with the worker's queue empty")
        assert publisher.status()["rate"] == 0  # what the user set is still "max"
        worker.gone()
        wait_for(lambda: _paced(publisher) is None, timeout=30, message="still paced with no worker")


def test_flood_ignores_the_workers(mosquitto_broker) -> None:
    """Pace off (`--flood`, or `set` with `"pace": false`): the workers' statuses are not followed."""
    with _paced_to_the_floor(mosquitto_broker.address, "flood-in") as (publisher, worker):
        answer = publisher.handle_control(json.dumps({"cmd": "set", "pace": False}).encode())
        assert answer["ok"], answer
        status = publisher.status()
        assert status["pace"] is False and status["paced"] is None
        sent, seconds = _sent_over(publisher, worker, 8)
        assert sent > 20 * pacer.FLOOR * seconds, (sent, seconds)  # far past what the pace allowed
        answer = publisher.handle_control(json.dumps({"cmd": "set", "pace": "no"}).encode())
        assert not answer["ok"] and "pace" in answer["error"]
