"""The input role: plays a dataset of PNG digits onto the image topic at a set rate."""

from __future__ import annotations

import base64
import contextlib
import random
import threading
import time
from collections import deque
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

import paho.mqtt.client as mqtt

from engine.digits.dataset import Sample, load_dataset
from engine.mqtt.address import BrokerAddress
from engine.mqtt.fastclient import payload_of
from engine.mqtt.message_props import image_properties
from engine.protocol import CommandError, MetaStamp, number_arg
from engine.roles.pacer import Pacer
from engine.roles.role import Role
from engine.settings import Settings
from engine.stats import RateMeter
from engine.untrusted import json_object

MAX_RATE = 100_000.0
MIN_RATE = 0.01  # images/s: one every 100 s; a rate is this or more, or 0 (max)
BURST = 64  # images handed to paho at once at full speed (and at rates above 1 per loop pass)
# The shortest wait between two passes of a run at a set rate, or at max paced by the workers: above 500 images/s
# what fell due meanwhile goes out as one burst (one joined write, one wake-up of the network thread), not one image
# a pass. At max beside a worker answering 9,000/s, a wait and a wake-up for each image took a quarter of the roles
# process's samples, and the burst cut its CPU from half a core to 37% (docs/PERFORMANCE.md).
MIN_WAIT = 0.002


def valid_rate(rate: float) -> bool:
    """The one rule for a rate, wherever it is given: 0 (max) or MIN_RATE..MAX_RATE images/s (not nan)."""
    return rate == 0 or MIN_RATE <= rate <= MAX_RATE


def underflows(text: str, value: float) -> bool:
    """Whether a rate typed as `text` reads as `value` 0 without being a zero: `1e-400` is 0.0 to a float, and
    0 means max, the opposite of what it asks. (A decimal is exact: `0e5` is a zero.)"""
    if value != 0:
        return False
    try:
        return Decimal(text.strip()) != 0
    except (InvalidOperation, ValueError):
        return False


def rate_arg(args: dict[str, Any], name: str) -> float:
    """A rate command argument (`valid_rate`); CommandError otherwise."""
    rate = number_arg(args, name, 0, MAX_RATE)
    if not valid_rate(rate):
        raise CommandError(f"{name} {rate:g} is below {MIN_RATE:g}/s (one image every {1 / MIN_RATE:g} s); "
                           "0 is max")
    return rate


class Publisher(Role):
    role: ClassVar[str] = "input"
    data_connection: ClassVar[bool] = True  # images on a client of their own: commands never wait behind them

    def __init__(
        self,
        address: BrokerAddress,
        settings: Settings | None = None,
        client_id: str | None = None,
        samples: list[Sample] | None = None,
    ):
        super().__init__(address, settings, client_id)
        s = self.settings
        self.samples = samples if samples is not None else load_dataset(s.dataset, s.list_file)
        self.rate = float(s.rate)
        self.qos = s.qos
        self._image_props = image_properties(s.image_expiry)  # paho leaves them out on MQTT 3.1.1
        self.order = s.order
        self.pace = s.pace  # at rate 0: as fast as the running workers keep up, by their statuses
        self._pacer = Pacer()
        self.loop = s.loop
        self.remaining: int | None = s.count
        self._counts = 0  # counts set by play(count): a pass counts its images against the count it began under
        self.sent = 0
        self.errors = 0
        self.meter = RateMeter()
        self.last: dict[str, Any] | None = None
        self._running = threading.Event()
        self._wake = threading.Event()
        self._pending_steps = 0
        self._lock = threading.Lock()
        # Held by the publishing thread while it checks that it is running and hands images to paho (no waiting
        # inside): `pause` takes it once, so after `pause` returns no image is handed over.
        self._burst_lock = threading.Lock()
        self._carry: list[Sample] = []  # drawn for a burst that a stop overtook: they go first next time
        self._epoch = 0  # a reset's number: samples drawn before it are not put back after it
        self._seq = 0
        self._stamp: MetaStamp | None = None  # the images' metadata, made for this client id
        self._order = list(range(len(self.samples)))
        self._pos = 0
        self._finished = False
        self._rng = random.Random(0)
        self._in_flight: deque[tuple[mqtt.MQTTMessageInfo, int]] = deque()  # (info, images it tracks)
        self._in_flight_count = 0
        if self.order == "shuffle":
            self._rng.shuffle(self._order)
        self.commands.update(
            start=self._cmd_start, stop=self._cmd_stop, toggle=self._cmd_toggle, step=self._cmd_step,
            rate=self._cmd_rate, set=self._cmd_set, reset=self._cmd_reset,
        )
        self._thread = threading.Thread(target=self.guarded(self._run), name="input-publish", daemon=True)
        self.publish_nice = 0  # the publishing thread's nice value above the process's (Linux; set before start)
        if s.autostart:
            self._running.set()

    def data_topic(self) -> str | None:
        return self.topics.images

    def control_subscriptions(self) -> list[tuple[str, int]]:
        return [(self.topics.status_filter("infer"), 0)]  # the workers' statuses pace a publisher at "max"

    def on_data(self, msg: mqtt.MQTTMessage) -> None:
        """A worker's retained status (an empty payload: removed): the pacer's signal."""
        found = self.topics.parse_status(msg.topic)
        if found is None or found[0] != "infer":
            return
        payload = payload_of(msg)
        status = json_object(payload) if payload else None
        self._pacer.on_status(found[1], status, self.sent, self._paced(), retained=bool(msg.retain))

    def _paced(self) -> bool:
        return self.pace and self.rate == 0 and self._running.is_set()

    def data_qos(self) -> int:
        return self.qos

    def start(self) -> None:
        super().start()
        self._thread.start()

    def shutdown(self) -> None:
        self._running.clear()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    @property
    def state(self) -> str:
        return "running" if self._running.is_set() else "stopped"

    @property
    def finished(self) -> bool:
        """True once a counted or non-looping run has sent everything it was asked to."""
        return self._finished

    # ----- API (also reached through control commands) -----
    def play(self, count: int | None = None) -> None:
        with self._lock:
            if count is not None:
                self.remaining = count
                self._counts += 1
            self._finished = False
        self._running.set()
        self._wake.set()

    def pause(self) -> None:
        """Stop publishing; when this returns, no new image is handed to paho and those already handed
        over have been written (within a bound), so a reply to `stop` follows the last image."""
        self._running.clear()
        self._wake.set()
        if threading.current_thread() is self._thread:
            return
        with self._burst_lock:  # a hand-over in progress ends; later ones see `_running` cleared
            pass
        try:
            info = self._in_flight[-1][0]
        except IndexError:  # nothing in flight (or the publishing thread just let it go)
            return
        with contextlib.suppress(RuntimeError, ValueError):
            info.wait_for_publish(timeout=0.2)

    def step(self, n: int = 1) -> None:
        with self._lock:
            self._pending_steps += n
        self._wake.set()

    def set_rate(self, rate: float) -> None:
        self.rate = float(rate)
        self._wake.set()

    # ----- commands -----
    def _cmd_start(self, args: dict[str, Any]) -> None:
        count = args.get("count")
        if count is not None:
            count = int(number_arg(args, "count", 1, 10**12))
        self.play(count)

    def _cmd_stop(self, _args: dict[str, Any]) -> None:
        self.pause()

    def _cmd_toggle(self, _args: dict[str, Any]) -> None:
        if self._running.is_set():
            self.pause()
        else:
            self.play()

    def _cmd_step(self, args: dict[str, Any]) -> None:
        self.step(int(number_arg(args, "n", 1, 100_000, default=1)))

    def _cmd_rate(self, args: dict[str, Any]) -> None:
        self.set_rate(rate_arg(args, "value"))

    def _cmd_set(self, args: dict[str, Any]) -> None:
        known = {"qos", "order", "loop", "rate", "pace"}
        unknown = set(args) - known
        if unknown or not args:
            raise CommandError(f"set takes {', '.join(sorted(known))}; got {', '.join(sorted(unknown)) or 'nothing'}")
        qos = int(number_arg(args, "qos", 0, 2)) if "qos" in args else self.qos
        if qos != args.get("qos", qos):
            raise CommandError("qos must be 0, 1 or 2")
        order = args.get("order", self.order)
        if order not in ("sequential", "shuffle"):
            raise CommandError("order must be 'sequential' or 'shuffle'")
        loop = args.get("loop", self.loop)
        if not isinstance(loop, bool):
            raise CommandError("loop must be true or false")
        rate = rate_arg(args, "rate") if "rate" in args else self.rate
        pace = args.get("pace", self.pace)
        if not isinstance(pace, bool):
            raise CommandError("pace must be true or false")
        with self._lock:
            self.qos, self.loop, self.pace = qos, loop, pace
            if order != self.order:
                self.order = order
                self._order = list(range(len(self.samples)))
                if order == "shuffle":
                    self._rng.shuffle(self._order)
        self.set_rate(rate)

    def _cmd_reset(self, _args: dict[str, Any]) -> None:
        with self._lock:
            self._pos = 0
            self._carry.clear()
            self._epoch += 1
            self.sent = 0
            self.errors = 0
            self.no_subscriber = 0
            self._finished = False
        self._pacer.recount(0)

    # ----- the publishing thread -----
    def _next_sample(self) -> Sample | None:
        with self._lock:
            if self._carry:
                return self._carry.pop(0)
            if self._pos >= len(self._order):
                if not self.loop:
                    return None
                self._pos = 0
                if self.order == "shuffle":
                    self._rng.shuffle(self._order)
            sample = self.samples[self._order[self._pos]]
            self._pos += 1
            return sample

    def _payload(self, sample: Sample) -> tuple[str, bytes]:
        """The id and the stamped PNG of the next image. The numbers of the images sent are consecutive (one
        built but not sent gives its number back), so that an image's number less that of the status's `last`
        says how many went out after that status's `sent`. Only the publishing thread numbers images."""
        self._seq += 1
        msg_id = f"{self.client_id}-{self._seq}"
        stamp = self._stamp
        if stamp is None or stamp.src != self.client_id:
            stamp = self._stamp = MetaStamp(f"{self.client_id}-", self.client_id)
        return msg_id, stamp.stamp(sample.png, self._seq, sample.label, time.time())

    def _sent(self, sample: Sample, msg_id: str, count: int, info: mqtt.MQTTMessageInfo) -> None:
        """Book `count` images handed to paho (`sample` the last of them, `info` tracking them)."""
        self._in_flight.append((info, count))
        self._in_flight_count += count
        self.meter.add(count)
        # `last` before `sent`, which status_fields reads first: a status never counts an image past its `last`
        # (a console adds to `sent` the images numbered past `last` that it has results of: tui/publisher/)
        self.last = {"id": msg_id, "label": sample.label, "name": sample.name, "png": sample.png}
        self.sent += count

    def _put_back(self, samples: list[Sample], epoch: int) -> None:
        """Samples drawn for the run but not sent (a stop came): they go first next time, unless a reset
        came meanwhile."""
        with self._lock:
            if epoch == self._epoch:
                self._carry[:0] = samples

    def _send(self, sample: Sample, running: bool = False) -> bool:
        """Publish one image, waiting out a disconnect at QoS 0 (nothing lost); False if stopped meanwhile.

        `running`: part of the run, not a step: handed over only while running (else False, and the caller
        puts it back).
        """
        msg_id, payload = self._payload(sample)
        while not self._stop.is_set():
            with self._burst_lock:
                if running and not self._running.is_set():
                    self._seq -= 1  # not sent: its number goes to the next image
                    return False
                info = self.data_client.publish(self.topics.images, payload, qos=self.qos,
                                                properties=self._image_props)
                kept = self._kept(info)
                if kept:
                    self._sent(sample, msg_id, 1, info)
            if kept:
                self._bound_in_flight()
                return True
            if info.rc == mqtt.MQTT_ERR_NO_CONN:
                self.data_connected.wait(0.5)  # QoS 0 while offline: wait for the reconnect, lose nothing
                continue
            self.errors += 1
            time.sleep(0.001)
        self._seq -= 1
        return False

    def _kept(self, info: mqtt.MQTTMessageInfo) -> bool:
        """Sent, or (QoS 1/2 while offline) kept by paho, which sends it on reconnect under the same id:
        publishing it again would send the image twice under two ids."""
        return info.rc == mqtt.MQTT_ERR_SUCCESS or (info.rc == mqtt.MQTT_ERR_NO_CONN and self.qos > 0)

    def _send_burst(self, samples: list[Sample]) -> int:
        """Publish several images of the run with one wake-up of the network thread; returns how many went
        out, in order (the caller puts the rest back). Built first, then handed over only if still running.

        What paho refuses (a disconnect in the middle) goes through `_send` one by one, which waits.
        """
        made = [self._payload(sample) for sample in samples]
        ids = [msg_id for msg_id, _ in made]
        payloads = [payload for _, payload in made]
        with self._burst_lock:
            if not self._running.is_set():  # a stop came while they were built
                self._seq -= len(made)  # never sent: the numbers go to the next images (see _payload)
                return 0
            infos = self.data_client.publish_many(self.topics.images, payloads, qos=self.qos,
                                                  properties=self._image_props)
            ok = 0
            while ok < len(infos) and self._kept(infos[ok]):
                ok += 1
            if not any(self._kept(info) for info in infos[ok:]):  # none of theirs went out after a refused one
                self._seq -= len(made) - ok  # the rest go through _send, which numbers them anew
            # else the numbers stay taken (an id is never sent twice) and the count has a gap there
            if ok:
                shared = infos[0] is infos[ok - 1]  # one joined QoS 0 write: one info for all
                if shared:
                    self._sent(samples[ok - 1], ids[ok - 1], ok, infos[0])
                else:
                    for i in range(ok):
                        self._sent(samples[i], ids[i], 1, infos[i])
        self._bound_in_flight()
        for sample in samples[ok:]:
            if not self._send(sample, running=True):
                break
            ok += 1
        return ok

    def _bound_in_flight(self, window: int = 2000) -> None:
        """Wait while more than `window` images are still in paho's queue: bounded memory, backpressure."""
        while self._in_flight_count > window:
            oldest, count = self._in_flight[0]
            if self.qos == 0 and not self.data_connected.is_set():
                self._in_flight.clear()  # QoS 0 packets queued before a disconnect are never confirmed
                self._in_flight_count = 0
                return
            try:
                if not oldest.is_published():
                    oldest.wait_for_publish(timeout=0.5)
                    if not oldest.is_published():
                        if self._stop.is_set():
                            return
                        continue
            except (RuntimeError, ValueError):
                pass
            self._in_flight.popleft()
            self._in_flight_count -= count

    def _run(self) -> None:
        if self.publish_nice:
            from engine.child_process import lower_thread_priority

            lower_thread_priority(self.publish_nice)
        next_at = time.monotonic()
        planned = 0.0  # the rate next_at was planned at: a new rate plans again (from 0.01/s to 10/s: now)
        paced = False  # publishing at "max" paced by the workers: starting so (again) starts the pacer low
        heard = False  # subscribed to the workers' statuses once (before that, max would flood)
        while not self._stop.is_set():
            if self._pending_steps:
                with self._lock:
                    steps, self._pending_steps = self._pending_steps, 0
                for _ in range(steps):
                    sample = self._next_sample()
                    if sample is None or not self._send(sample):
                        break
                continue
            if not self._running.is_set() or not self.data_connected.is_set():
                paced = False
                self._wake.wait(0.2)
                self._wake.clear()
                next_at = time.monotonic()
                continue
            rate = self.rate
            if rate == 0 and self.pace:
                if not heard:  # the first time: the workers' retained statuses come with the subscription
                    if not self.ready.is_set():
                        self._wake.wait(0.05)
                        self._wake.clear()
                        next_at = time.monotonic()
                        continue
                    heard = True
                if not paced:
                    paced = True
                    self._pacer.restart(self.sent)
                rate = self._pacer.rate() or 0.0
            else:
                paced = False
            burst = BURST
            if rate > 0:
                now = time.monotonic()
                if rate != planned:  # after max (planned 0) from now: the sends max skipped are not owed
                    next_at, planned = (min(next_at, now + 1 / rate) if planned else now), rate
                if next_at > now:
                    self._wake.wait(min(max(next_at - now, MIN_WAIT), 1.0))  # a wait is bounded, whatever the rate
                    self._wake.clear()
                    continue
                burst = max(1, min(BURST, int((now - next_at) * rate) + 1))  # what is due, at high rates several
                next_at = max(next_at + burst / rate, now - 0.1)
            else:
                planned = 0.0
            self._publish(burst)

    def _publish(self, count: int) -> None:
        with self._lock:
            if self.remaining is not None:
                count = min(count, self.remaining)
            counts = self._counts
            epoch = self._epoch
        samples = []
        for _ in range(count):
            sample = self._next_sample()
            if sample is None:
                break
            samples.append(sample)
        sent = 0
        if len(samples) == 1:
            sent = int(self._send(samples[0], running=True))
        elif samples:
            sent = self._send_burst(samples)
        done = len(samples) < count  # the dataset ran out (no loop)
        if self.remaining is not None:
            with self._lock:
                if self._counts == counts:  # a count given meanwhile (start N) counts from what follows
                    self.remaining -= sent
                done = done or self.remaining <= 0
        if sent < len(samples):  # a stop came: the rest goes first next time
            self._put_back(samples[sent:], epoch)
            return
        if done:
            self._finish()

    def _finish(self) -> None:
        self._running.clear()
        self._finished = True
        self.publish_status()

    # ----- status -----
    def status_fields(self) -> dict[str, Any]:
        remaining = self.remaining  # lowered after a burst's `sent`: read first, it is never ahead of `sent`
        sent = self.sent  # before `last` (see _sent)
        last = self.last
        return {
            "dataset": str(self.settings.dataset),
            "size": len(self.samples),
            "sent": sent,
            "rate": self.rate,
            "rate_actual": round(self.meter.rate(), 1),
            "pace": self.pace,
            "paced": round(paced) if self._paced() and (paced := self._pacer.rate()) is not None else None,
            "qos": self.qos,
            "order": self.order,
            "loop": self.loop,
            "remaining": remaining,
            "errors": self.errors,
            "no_subscriber": self.no_subscriber,  # QoS 1 images nobody was subscribed to (MQTT 5)
            "skipped": len(getattr(self.samples, "skipped", ())),  # unusable files of the dataset
            "last": None if last is None else {
                "id": last["id"], "label": last["label"], "name": last["name"],
                "png": base64.b64encode(last["png"]).decode("ascii"),
            },
        }
