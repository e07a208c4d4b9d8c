"""The benchmark's load generator and measuring collector: one process, two MQTT clients.

The generator publishes PNG digits with their metadata chunk (docs/PROTOCOL.md) at a set rate, or as
fast as it can with at most `window` images unanswered (closed loop: it measures capacity without
overrunning any queue; no more than 4/5 of what the workers' statuses say their queues hold, which a
slow worker bounds by time). The collector subscribes to the results and to the workers' status, and
counts every image once by the sequence number in its id (`<prefix><seq>`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from engine.bench.stats import LatencyHistogram, ResultTracker
from engine.digits.dataset import Sample
from engine.errors import BrokerError
from engine.mqtt.address import BrokerAddress
from engine.mqtt.client import connect_kwargs, make_client, reason_text
from engine.mqtt.fastclient import FastClient, payload_of
from engine.mqtt.message_props import image_properties
from engine.protocol import MetaStamp
from engine.settings import Settings

log = logging.getLogger(__name__)

STALL_SECONDS = 2.0  # window full and no answer for this long: what is in flight is written off as lost


class LoadGenerator:
    """Publishes the image stream and collects the answers; `run()` blocks for one phase."""

    def __init__(
        self,
        address: BrokerAddress,
        settings: Settings,
        samples: list[Sample],
        client_id: str,
        protocol: int,
        tracker: ResultTracker,
        *,
        collect: str | None = None,
        watch: bool = True,
        collecting: bool = True,
    ) -> None:
        """`collect`: the topic filter the results are read from (default the results topic; a shared
        subscription when several generator processes split the collecting). `watch`: also follow the
        infer workers' status and the replies to `ping()`. `collecting=False`: read no results (collector
        processes of their own do, `bench --collectors`)."""
        if not samples:
            raise BrokerError("no images to send")
        self.address = address
        self.settings = settings
        self.topics = settings.topics
        self.samples = samples
        self.client_id = client_id
        self.prefix = f"{client_id}-"
        self._stamp = MetaStamp(self.prefix, client_id)
        self.protocol = protocol
        self.tracker = tracker
        self.sent = 0  # images published (warm-up included)
        # Images published with a sending time (their metadata's "t") at or after `measure_from`: what a collector
        # in another process counts as measured (ResultTracker.start_measuring with `since`), by the same clock
        # reading. Counting by the warm-up's end instead was off by the odd image stamped across the boundary.
        self.measure_from: float | None = None
        self.measured = 0
        self.publish_errors = 0
        self.held_back = 0  # open loop at QoS 1/2: images due while the broker had not acknowledged enough
        self.written_off = 0  # images given up on by the window's stall rule
        self.stalls = 0
        self.status: dict[str, dict[str, Any]] = {}  # latest status of each infer worker
        self.queues_hold: int | None = None  # the sum of the workers' queue_max, once a status said it
        self.status_log: list[tuple[float, str, dict[str, Any]]] = []  # (time, worker, status) while measuring
        self.logging_status = False
        self._lock = threading.Lock()
        self._last_info: mqtt.MQTTMessageInfo | None = None
        self.collect = collect or settings.topics.results
        self.accept_prefix: str | None = None  # also tally results of ids "<accept_prefix><k>-<seq>" (others')
        self.others: dict[str, ResultTracker] = {}  # those, by generator
        self.watch = watch
        self.collecting = collecting
        self.pings = LatencyHistogram()  # control-reply latency of ping()
        self.pings_sent = 0
        self.pings_lost = 0
        self._ping_sent: dict[str, float] = {}
        self._pub = self._client(f"{client_id}-pub", subscribe=False)
        self._sub = self._client(f"{client_id}-sub", subscribe=True)

    # ----- connections -----
    def _client(self, client_id: str, subscribe: bool) -> FastClient:
        client = make_client(self.address, client_id, protocol=self.protocol)
        client.max_inflight_messages_set(1000)
        ready = threading.Event()
        state: dict[str, Any] = {"ready": ready, "error": None}
        client.user_data_set(state)
        client.on_connect = self._on_connect_sub if subscribe else self._on_connect_pub
        if subscribe:
            client.on_subscribe = lambda _c, u, _m, _rc, _p: u["ready"].set()
            client.on_message = self._on_message
        return client

    def _on_connect_pub(self, _c: mqtt.Client, userdata: dict[str, Any], _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            userdata["error"] = f"broker refused the connection: {reason_text(rc)}"
        userdata["ready"].set()

    def _on_connect_sub(self, client: mqtt.Client, userdata: dict[str, Any], _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            userdata["error"] = f"broker refused the connection: {reason_text(rc)}"
            userdata["ready"].set()
            return
        subs = [(self.collect, 1)] if self.collecting else []
        if self.watch:
            subs += [(self.topics.status_filter("infer"), 0), (f"{self.topics.reply_prefix}/infer/+", 0)]
        if not subs:
            userdata["ready"].set()
            return
        client.subscribe(subs)

    def connect(self, timeout: float = 15.0) -> None:
        for client in (self._sub, self._pub):
            client.connect_async(self.address.host, self.address.port, **connect_kwargs(client))
            client.loop_start()
        for client in (self._sub, self._pub):
            state = client.user_data_get()
            if not state["ready"].wait(timeout):
                raise BrokerError(f"no connection to the broker at {self.address.url} within {timeout:.0f} s")
            if state["error"]:
                raise BrokerError(state["error"])

    def stop_collecting(self) -> None:
        """Results are collected elsewhere from now on (generator processes): unsubscribe from them."""
        self._sub.unsubscribe(self.collect)

    def close(self) -> None:
        for client in (self._pub, self._sub):
            client.disconnect()
            client.loop_stop()

    # ----- collector (paho network thread) -----
    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.time()
        try:
            payload = payload_of(msg)
            if msg.topic == self.topics.results:
                self._on_result(payload, now)
            elif msg.topic.startswith(self.topics.reply_prefix + "/"):
                self._on_reply(payload, now)
            else:
                self._on_status(msg.topic, payload, now)
        except Exception:  # a stray payload never stops the measurement
            log.debug("bench: ignored a message on %s", msg.topic, exc_info=True)

    def _on_result(self, payload: bytes, now: float) -> None:
        obj = json.loads(payload)
        msg_id = obj.get("id") if isinstance(obj, dict) else None
        tracker = self.tracker
        if not isinstance(msg_id, str) or not msg_id.startswith(self.prefix):
            accept = self.accept_prefix
            if accept is None or not isinstance(msg_id, str) or not msg_id.startswith(accept):
                self.tracker.foreign += 1
                return
            gen, _, rest = msg_id[len(accept):].partition("-")
            other = self.others.get(gen)
            if other is None:
                other = self.others[gen] = ResultTracker()
                other.start_measuring(0, self.tracker.since, self.tracker.until)
            tracker = other
            msg_id = self.prefix + rest
        seq = int(msg_id[len(self.prefix):])
        t_sent = obj.get("t_sent")
        tracker.record(
            seq, now, t_sent if isinstance(t_sent, (int, float)) else None, obj.get("worker"),
            "error" in obj, obj.get("pred"), obj.get("label"), obj.get("t_recv"), obj.get("t_done"),
        )

    def _on_reply(self, payload: bytes, now: float) -> None:
        obj = json.loads(payload)
        req = obj.get("req") if isinstance(obj, dict) else None
        with self._lock:
            sent = self._ping_sent.pop(req, None) if isinstance(req, str) else None
            if sent is not None:
                self.pings.add(now - sent)

    def ping(self, worker_ids: list[str]) -> None:
        """Send `ping` to each worker's own control topic; its reply's delay goes into `pings`."""
        now = time.time()
        with self._lock:
            stale = [req for req, t in self._ping_sent.items() if now - t > 5.0]
            for req in stale:  # no answer within 5 s: counted as lost
                del self._ping_sent[req]
            self.pings_lost += len(stale)
            for wid in worker_ids:
                self.pings_sent += 1
                req = f"{self.client_id}-ping-{self.pings_sent}"
                self._ping_sent[req] = now
                # on the collecting client: the publishing one has thousands of images queued ahead
                self._sub.publish(self.topics.control("infer", wid), json.dumps({"cmd": "ping", "req": req}), qos=0)

    def pings_unanswered(self) -> int:
        with self._lock:
            return self.pings_lost + len(self._ping_sent)

    def _on_status(self, topic: str, payload: bytes, now: float) -> None:
        parsed = self.topics.parse_status(topic)
        if parsed is None:
            return
        if not payload:  # a status cleared: that worker is gone
            with self._lock:
                self.status.pop(parsed[1], None)
                self._count_queues()
            return
        status = json.loads(payload)
        if not isinstance(status, dict):
            return
        with self._lock:
            self.status[parsed[1]] = status
            self._count_queues()
            if self.logging_status:
                self.status_log.append((now, parsed[1], status))

    def _count_queues(self) -> None:
        """queues_hold: what the running workers' queues hold at most, by their statuses. Under _lock."""
        sizes = [s.get("queue_max") for s in self.status.values() if s.get("state") == "running"]
        self.queues_hold = sum(n for n in sizes if type(n) is int and n > 0) or None

    # ----- generator -----
    def outstanding(self) -> int:
        return self.sent - self.tracker.seen_any - self.written_off

    def _publish(self, first: int, count: int) -> int:
        """Publish images `first` .. `first + count - 1`; returns how many paho took."""
        samples, n = self.samples, len(self.samples)
        stamp = self._stamp.stamp
        payloads = []
        stamps = []
        for seq in range(first, first + count):
            sample = samples[seq % n]
            t = time.time()
            stamps.append(t)
            payloads.append(stamp(sample.png, seq, sample.label, t))
        infos = self._pub.publish_many(self.topics.images, payloads, qos=self.settings.qos,
                                       properties=image_properties(self.settings.image_expiry))
        taken = 0
        for info in infos:
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                self.publish_errors += 1
                break
            taken += 1
            self._last_info = info
        if self.measure_from is not None:
            since = self.measure_from
            self.measured += sum(1 for t in stamps[:taken] if t >= since)
        return taken

    def run(
        self,
        *,
        rate: float,
        window: int,
        count: int | None,
        duration: float | None,
        stop: threading.Event,
        on_tick: Callable[[], None] | None = None,
        on_pass: Callable[[], None] | None = None,
    ) -> tuple[int, float]:
        """Send `count` images or for `duration` seconds; returns (images sent, seconds spent sending)."""
        start_sent, start_held = self.sent, self.held_back
        t0 = time.monotonic()
        end = t0 + duration if duration else None
        next_tick = t0 + 0.25
        last_answers, last_progress = self.tracker.seen_any, t0
        while not stop.is_set():
            now = time.monotonic()
            if on_tick is not None and now >= next_tick:
                next_tick = now + 0.25
                on_tick()
            if on_pass is not None:
                on_pass()
            done = self.sent - start_sent + self.held_back - start_held  # held back: due, so the rate stays the rate
            if (count is not None and done >= count) or (end is not None and now >= end):
                break
            burst = 64 if count is None else min(64, count - done)
            if rate > 0:
                due = int((now - t0) * rate) + 1 - done
                if due <= 0:
                    time.sleep(min(0.002, (done - (now - t0) * rate) / rate))
                    continue
                burst = min(burst, due)
            if rate > 0 and window <= 0 and self.settings.qos > 0:
                # Open loop at QoS 1/2: the broker takes what it acknowledges. An image due while a full window
                # waits for acknowledgements is not offered (counted), instead of waiting in this client, where
                # its latency would grow without the broker ever seeing it.
                room = self._pub.max_inflight_messages - self._pub.unacknowledged()
                if room < burst:
                    held = burst - max(room, 0)
                    self.held_back += held
                    burst -= held
                    if burst <= 0:
                        time.sleep(0.0005)
                        continue
            if window > 0:
                answers = self.tracker.seen_any
                if answers != last_answers:
                    last_answers, last_progress = answers, now
                hold = self.queues_hold
                room = (window if hold is None else min(window, max(64, hold * 4 // 5))) - self.outstanding()
                if room <= 0:
                    if now - last_progress > STALL_SECONDS:
                        self.stalls += 1
                        self.written_off = self.sent - self.tracker.seen_any
                        last_progress = now
                    time.sleep(0.0005)
                    continue
                burst = min(burst, room)
            taken = self._publish(self.sent, burst)
            self.sent += taken
            if taken < burst and not self._pub.is_connected():
                time.sleep(0.05)
        return self.sent - start_sent, time.monotonic() - t0

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the last image has left (QoS 0) or been acknowledged by the broker (QoS 1/2)."""
        info = self._last_info
        if info is None:
            return True
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    def start_status_log(self) -> None:
        """Keep every worker status from now on (for the stage times), starting with the latest ones."""
        now = time.time()
        with self._lock:
            self.status_log = [(now, worker, status) for worker, status in self.status.items()]
            self.logging_status = True

    def stop_status_log(self) -> None:
        with self._lock:
            self.logging_status = False

    def refresh_statuses(self, worker_ids: list[str], timeout: float = 3.0) -> None:
        """Ask every infer worker for its status now, and wait until those of `worker_ids` came in."""
        asked = time.time() - 0.01
        self._pub.publish(self.topics.control("infer"), json.dumps({"cmd": "status"}), qos=1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            latest = self.statuses()
            if all(latest.get(w, {}).get("ts", 0) >= asked for w in worker_ids):
                return
            time.sleep(0.02)

    def clear_statuses(self, worker_ids: list[str], timeout: float = 3.0) -> None:
        """Remove the retained statuses of the workers this run started (no litter on a shared broker)."""
        infos = [self._pub.publish(self.topics.status("infer", w), b"", qos=1, retain=True) for w in worker_ids]
        deadline = time.monotonic() + timeout
        for info in infos:
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))

    def statuses(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return dict(self.status)
