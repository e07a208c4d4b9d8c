"""The infer role: classifies PNG digits from the image topic with dynamic batching.

The paho callback only stamps and enqueues. With max_wait, an image published too long ago is skipped
before that, as the data client decodes it (FastClient.skip_when; in the callback for one paho decoded):
acknowledged at once and counted as expired, so a backlog at the broker drains at reading speed. One
batching thread takes what is queued, up to max_batch, waiting at most max_delay for more (as Triton's
dynamic batcher does), decodes, runs one forward pass and publishes one result per image. Every image it
takes gets exactly one answer: a prediction, or an error result when the payload cannot be classified.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from typing import Any, ClassVar

import numpy as np
import paho.mqtt.client as mqtt

from engine.digits.fastpng import SIDE, decode_batch, inflate_grey28
from engine.digits.model import LoadedModel, load_model, set_threads
from engine.digits.preprocess import ImageError, decode_png
from engine.errors import ModelError
from engine.mqtt.address import BrokerAddress
from engine.mqtt.fastclient import FastClient, payload_of, skip_asked
from engine.mqtt.message_props import ImageProps, merge_meta, read_image_props, result_properties
from engine.protocol import CommandError, extract_meta, number_arg, published_at
from engine.result_json import encode_results
from engine.roles.role import Role
from engine.settings import Settings
from engine.stats import RateMeter, Window, rounded
from engine.topics import sanitize_id

log = logging.getLogger(__name__)

_STOP = object()
QUEUE_SECONDS = 1.0  # s of work a full queue holds at most, at the worker's measured pace (see _pace)
MAX_WAIT_LIMIT = 86_400.0  # s: the largest max_wait (a day); larger is a mistake, not a bound
# --max-wait: this many images in a row too old when read means that what the broker holds for the worker is
# stale at its head. The worker then ends its image connection (a session that does not outlive it), and the
# broker drops that backlog with the session, instead of sending it to be read and skipped image by image.
STALE_RUN = 256
# ...but not sooner than this after the last drop: a publisher whose clock is far behind ours makes every image
# look stale, and the worker would end its connection every few milliseconds. Under a flood a fresh backlog
# goes stale again within half of max_wait (the look-ahead), and until the next drop it is skipped image by image.
DROP_INTERVAL = 0.25

# A queued image: payload, receive time, (mid, qos, connection) to acknowledge or None, MQTT 5 properties
Item = tuple[bytes, float, Any, ImageProps | None]


class Worker(Role):
    role: ClassVar[str] = "infer"
    manual_ack: ClassVar[bool] = True  # an image is acknowledged once the broker has its result (see _ack)
    data_connection: ClassVar[bool] = True  # images on a client of their own (engine.roles.dataplane)
    results_connection: ClassVar[bool] = True  # and results on another: their acknowledgements never wait on images

    def __init__(
        self,
        address: BrokerAddress,
        settings: Settings | None = None,
        client_id: str | None = None,
        model: LoadedModel | None = None,
    ):
        super().__init__(address, settings, client_id)
        s = self.settings
        self.model = model if model is not None else load_model(s.model_path, allow_torchscript=s.allow_torchscript)
        self.warmup_ms: float | None = None  # of the warm-up forward pass before the worker reports running
        self.loads = 0  # models swapped in by the load command
        self.max_batch = s.max_batch
        self.max_delay = s.max_delay_ms / 1000.0
        self.max_wait = s.max_wait  # s since publication past which an image is skipped (None: never)
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=s.queue_size)
        # The most images queued now: --queue-size, or fewer once full batches show that it is more than
        # QUEUE_SECONDS of work at this worker's pace (a slow CPU, a share of one, a larger model): a full
        # queue then still holds that much, not seconds. See _pace.
        self.queue_limit = s.queue_size
        self._per_image: float | None = None  # s of a full batch's wall time per image answered (average)
        self._room = threading.Condition()  # notified when a batch is taken: room under queue_limit, maybe
        # QoS 1/2 images are acknowledged only once their result is published (at-least-once: a worker
        # killed with images in hand gets them again from its session), and MQTT 5 brokers send no more
        # unacknowledged images than the queue holds, so at QoS 1 the queue never overflows.
        self.receive_maximum = s.queue_size
        self._results_qos = s.result_qos or 0  # of the last batch's results (see _OnPublishWhenNeeded)
        self._conn_gen = 0  # packet ids of one connection mean nothing on the next
        self._held = 0  # images taken from the queue but held because the worker was paused meanwhile
        self._queue_peak = 0  # the longest queue a batch was taken from since the last status published
        self._filled = False  # the queue reached the bound in force (queue_limit) since the last status published
        self._peak_lock = threading.Lock()
        self._intake = threading.Lock()  # closing the intake and the last enqueue do not interleave
        self._intake_closed = False
        self._drain_deadline: float | None = None
        self.processed = 0
        self.errors = 0
        self.dropped = 0
        self.received = 0
        self.expired = 0  # past its MQTT 5 expiry or older than max_wait: not inferred, not answered
        self._skip_told = False  # the first image skipped for max_wait is logged
        self._stale_run = 0  # images too old for max_wait in a row, as the data connection read them
        self.backlogs_dropped = 0  # times the image connection was ended to drop a stale backlog at the broker
        self._dropped_at = float("-inf")  # time.monotonic() of the last drop (or attempt)
        # The image connection is down (lost, or ended by a drop) and not back: its acknowledgements wait for
        # nothing (the packet ids mean nothing on the next one), and QoS 0 results go on the results connection.
        # Held by a QoS 0 publish on the data connection and by an acknowledgement, as well as to change it.
        self._data_down = False
        self._data_lock = threading.Lock()
        # A QoS 0 flood past a full queue: the worker leaves its image subscription until the queue is half
        # empty again (_leave_while_full), so that the broker drops (or gives the rest of a shared group) what
        # the worker could only read and shed. _left and _rejoined change under _sub_lock; each (re)connect
        # subscribes anew and clears them.
        self._left = False
        self._rejoined = False  # subscribed again on this connection: a retained image now is one answered
        # a QoS 1/2 image came (ever, on any connection): never leave again, one published meanwhile would be lost
        self._reliable_seen = False
        self.intake_pauses = 0  # times it left so
        self._sub_lock = threading.Lock()
        self._stale = 0  # older than max_wait on arrival, decoded by paho (with MQTT 5 properties): skipped here
        self._auto_ids = 0
        self.meter = RateMeter()
        self.latency = Window(5_000)
        self.batches = Window(200)
        self.stage = {name: Window(200) for name in ("queue", "decode", "infer", "publish")}
        self._paused = threading.Event()
        self.commands.update(start=self._cmd_start, stop=self._cmd_stop, set=self._cmd_set, load=self._cmd_load)
        self._thread = threading.Thread(target=self.guarded(self._run), name="infer-batch", daemon=True)

    def subscriptions(self) -> list[tuple[str, int]]:
        topic = self.topics.images
        if self.settings.share_group:
            topic = f"$share/{sanitize_id(self.settings.share_group)}/{topic}"
        return [(topic, 1)]

    def data_topic(self) -> str | None:
        return self.topics.results

    def on_data_connect(self) -> None:
        with self._data_lock:
            self._conn_gen += 1
            self._data_down = False
        with self._sub_lock:
            self._left = self._rejoined = False
        self._stale_run = 0

    def on_data_disconnect(self) -> None:
        with self._data_lock:
            self._data_down = True

    def data_qos(self) -> int:
        """The QoS of the last batch's results (that of its images, or --result-qos)."""
        return self._results_qos

    def _queue_full(self) -> bool:
        """Asked by the data client before it reads: while True, QoS 0 images are dropped unread."""
        full = self.queue.qsize() >= self.queue_limit and not self._intake_closed
        if full:
            self._filled = True
        return full

    def _leave_while_full(self) -> None:
        """Unsubscribe from the images while the queue is full (FastClient.on_shed, network thread).

        Offered ten times what it takes, a worker that stays subscribed reads ten images for each it answers
        and sheds nine, 2-3 us each with the reads: a fifth of its CPU at 10x (docs/PERFORMANCE.md, "A full
        worker leaves its subscription"). Unsubscribed, it is sent nothing until it subscribes again with its
        queue half empty (`_rejoin`): the broker drops what is published meanwhile, or gives it to the other
        workers of a shared group, at no cost here. Only for QoS 0 images: not for a worker told its images come
        at QoS 1 (`--qos 1`, `--durable`), nor once a QoS 1/2 image came at all (the broker keeps one for a
        subscriber, and would drop one published in a pause); not with a durable session (the subscription
        is part of it), nor while stopping. What the broker dropped is not counted (it does not say);
        `intake_pauses` in the status counts the pauses, `shed` what came before the broker stopped."""
        data = self._data
        if (self._left or self._reliable_seen or self.settings.qos or data is None or self.persistent
                or self._intake_closed or self._stop.is_set()):
            return
        # _left may change on the batching thread too (_rejoin); _reliable_seen and _data_down on this one only
        with self._sub_lock:
            if self._left or self._data_down:
                return
            self._left = True
            self.intake_pauses += 1
            data.client.unsubscribe([t for t, _ in self.subscriptions()])
        if self.intake_pauses == 1:
            log.info("infer %s: queue full under a QoS 0 flood: unsubscribing from the images until it is half "
                     "empty (counted in intake_pauses; the broker drops what is published meanwhile)", self.client_id)

    def _rejoin(self) -> None:
        """Subscribe to the images again after `_leave_while_full` (the batching thread, queue half empty).
        Not while the image connection is down: its next connection subscribes anew (on_data_connect), and a
        SUBSCRIBE queued ahead of its CONNECT would end it."""
        data = self._data
        with self._sub_lock, self._data_lock:
            if (not self._left or data is None or self._data_down or self._intake_closed
                    or self._stop.is_set()):
                return
            self._left = False
            self._rejoined = True
            data.subscribe_again()

    @property
    def shed(self) -> int:
        """QoS 0 images dropped unread while the queue was full (FastClient.shed_when)."""
        return self._data_client_count("shed")

    @property
    def skipped(self) -> int:
        """Images older than max_wait dropped by the data client as it decoded them (FastClient.skip_when)."""
        return self._data_client_count("skipped")

    def _data_client_count(self, name: str) -> int:
        # the data client may not exist yet: the control connection's first status can come before it
        return getattr(getattr(self._data, "_client", None), name, 0)

    def start(self) -> None:
        # One torch thread unless told otherwise: LeNet-5 at batch 64 runs about as fast on one core as
        # on two, and the spare core is better spent on the paho thread, the broker and other workers
        # (docs/PERFORMANCE.md). Scale out with more worker processes instead.
        if self.settings.durable and self.max_wait:
            log.warning("infer %s: --max-wait with --durable: an image published more than %g s ago is "
                        "acknowledged unanswered (counted as expired), not kept", self.client_id, self.max_wait)
        set_threads(self.settings.threads or 1)
        self.warmup_ms = self._warm_up(self.model)  # before the first status says "running"
        super().start()
        # Overload: while the queue is full, QoS 0 images are dropped in whole reads from the socket,
        # before paho or Python touches each one; QoS 1 images wait at the broker (the receive maximum, and where
        # mosquitto 2.0.11 overshoots it, on_data holding the data thread: TCP back-pressure).
        self.data_client.shed_when = self._queue_full
        self.data_client.on_shed = self._leave_while_full  # and leaves its subscription until there is room
        # --max-wait: an image too old is dropped as the data client decodes it (acknowledged, counted)
        self.data_client.skip_when = self._skip
        self._thread.start()

    def shutdown(self) -> None:
        """Finish and publish every image already received before going offline.

        Without a durable session, unsubscribe first (and wait for the broker's answer), so that no
        image arrives after the queue is drained. With one, keep the subscription: the broker holds
        what comes next until the worker is back, and images received but not answered are not
        acknowledged, so the broker sends them again then.
        """
        client = self._data.client if self._data is not None else None
        if client is not None and self.data_connected.is_set() and not self.persistent:
            done = threading.Event()
            mids: list[int | None] = []  # the answer to this UNSUBSCRIBE, not to a pause's (_leave_while_full)
            client.on_unsubscribe = lambda _c, _u, mid, *_a: done.set() if mid in mids else None
            with self._sub_lock:  # after a subscribe of _rejoin's, never before it
                mids.append(client.unsubscribe([t for t, _ in self.subscriptions()])[1])
            done.wait(1)  # bounded: behind a flood the answer queues after the images; intake closes anyway
        self._paused.clear()
        drain = self.settings.drain_seconds
        with self._intake:  # what arrives from now on is neither counted nor acknowledged (see on_data)
            self._intake_closed = True
            self._drain_deadline = time.monotonic() + drain
            with contextlib.suppress(queue.Full):
                self.queue.put(_STOP, timeout=drain)
        if self._thread.is_alive():  # not when its start failed before the thread began
            self._thread.join(timeout=drain + 30)

    @property
    def state(self) -> str:
        return "stopped" if self._paused.is_set() else "running"

    # ----- network thread: stamp and enqueue only -----
    def on_data(self, msg: mqtt.MQTTMessage) -> None:
        if msg.qos:
            self._reliable_seen = True
        elif msg.retain and self._rejoined:
            return  # the retained image the broker sends at each subscribe: answered at the first one
        ack = None if msg.qos == 0 else (msg.mid, msg.qos, self._conn_gen)
        now = time.time()
        payload = payload_of(msg)
        if not skip_asked(msg) and self._skip(payload):  # paho decoded it (other MQTT 5 properties): not asked
            with self._intake:
                if self._intake_closed:
                    return
                self.received += 1
                self._stale += 1
            if ack is not None:  # acknowledged here: the broker's window opens for the next image at once
                with self.data_client.one_wakeup(wake_at_end=False):  # this thread writes the PUBACK next
                    self.data_client.ack(msg.mid, msg.qos)
            return
        # MQTT 5 properties: FastClient decodes property-less images itself, paho's decoder the others
        item = (payload, now, ack, read_image_props(msg.properties, now, self.topics))
        with self._intake:
            if self._intake_closed:
                # Stopping, queue drained: not taken. Unacknowledged, a QoS 1 image comes back to a durable
                # session; without one the broker drops it with the session, as for any worker that leaves.
                return
            self.received += 1
            if msg.qos == 0:
                if self._queue_full():
                    self.dropped += 1
                    self._leave_while_full()
                    return
                try:
                    self.queue.put_nowait(item)
                except queue.Full:
                    self.dropped += 1
            else:
                # QoS 1/2: hold the network thread briefly (the broker keeps the rest) rather than lose it. A
                # paused worker takes nothing from its queue: it fills it to --queue-size (the receive maximum)
                # without waiting at the limit for room that will not come.
                deadline = time.monotonic() + 5
                if not self._paused.is_set():
                    self._wait_for_room(deadline)
                try:
                    self.queue.put(item, timeout=max(0.0, deadline - time.monotonic()))
                except queue.Full:
                    self.dropped += 1
                    self._ack([item])

    def _wait_for_room(self, deadline: float) -> None:
        """Until the queue is shorter than queue_limit, or the deadline (TCP back-pressure on the broker)."""
        room = self._room
        with room:
            while self.queue.qsize() >= self.queue_limit:
                self._filled = True
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                room.wait(min(left, 0.2))

    def _skip(self, payload: bytes) -> bool:
        """Asked by the data client for each image as it is decoded: True drops it there (--max-wait)."""
        max_wait = self.max_wait
        if max_wait is None:
            return False
        # Skipped too when it would pass max_wait in the queue ahead of it, at the pace of full batches: kept,
        # an image read just under max_wait old would be too old when its turn comes, and skipped only then,
        # after the worker had read, queued and looked at it twice; under overload that was every image.
        per_image = self._per_image
        batch = max(1, self.max_batch)  # its batch starts once the whole batches ahead of it are done
        ahead = min(self.queue.qsize() // batch * batch * per_image, max_wait / 2) if per_image else 0.0
        if not self._too_old(payload, time.time() - max_wait + ahead):
            self._stale_run = 0
            return False
        self._stale_run += 1
        if self._stale_run >= STALE_RUN and not self._data_down:  # not again while a drop is under way
            self._drop_backlog()
        if not self._skip_told:  # once: from here on the status's `expired` counts them
            self._skip_told = True
            log.info("infer %s: skipping images published more than %g s ago (--max-wait), counted as expired",
                     self.client_id, max_wait)
        return True

    def _drop_backlog(self) -> None:
        """End the image connection so that the broker drops the stale backlog it holds for this worker.

        Reading and skipping a backlog costs the worker about 7-20 us an image: offered ten times what it
        takes, that was most of its CPU (docs/PERFORMANCE.md, "A stale backlog dropped at the broker"). A
        session that ends with its connection takes its queue with it at the broker, at no cost here; the
        worker connects again at once and subscribes, and goes on answering from its own queue meanwhile.
        Not with a durable session (the session is what keeps the images of a worker that is away), nor
        while stopping. What the broker dropped is not counted (it does not say how much); `backlogs_dropped`
        in the status counts the drops."""
        data = self._data
        now = time.monotonic()
        if (data is None or self.persistent or self._stop.is_set() or self._intake_closed
                or now - self._dropped_at < DROP_INTERVAL):
            return
        self._dropped_at = now  # tried: not again before DROP_INTERVAL, whether it could be done or not (websockets)
        with self._data_lock:  # no acknowledgement nor QoS 0 result is queued on the data client meanwhile
            if not data.drop_session():
                return
            self._data_down = True  # until the connection is back (on_data_connect)
        self.backlogs_dropped += 1
        if self.backlogs_dropped == 1:
            log.info("infer %s: images queued at the broker are more than %g s old (--max-wait): dropping them "
                     "with the image connection's session (counted in backlogs_dropped)", self.client_id, self.max_wait)

    @staticmethod
    def _too_old(payload: bytes, oldest: float) -> bool:
        """Whether the image's metadata says it was published before `oldest` (no time: never too old)."""
        t = published_at(payload)
        return t is not None and t < oldest

    # ----- commands -----
    def _cmd_start(self, _args: dict[str, Any]) -> None:
        self._paused.clear()

    def _cmd_stop(self, _args: dict[str, Any]) -> None:
        self._paused.set()

    def _cmd_set(self, args: dict[str, Any]) -> None:
        unknown = set(args) - {"max_batch", "max_delay_ms", "max_wait"}
        if unknown or not args:
            raise CommandError("set takes max_batch, max_delay_ms, max_wait; "
                               f"got {', '.join(sorted(unknown)) or 'nothing'}")
        # every value is checked before any is applied: a bad command changes nothing
        max_batch = int(number_arg(args, "max_batch", 1, 1024)) if "max_batch" in args else self.max_batch
        max_delay = number_arg(args, "max_delay_ms", 0, 1000) / 1000.0 if "max_delay_ms" in args else self.max_delay
        max_wait = self.max_wait
        if "max_wait" in args:  # seconds; 0 turns the bound off
            max_wait = number_arg(args, "max_wait", 0, MAX_WAIT_LIMIT) or None
        if max_batch != self.max_batch:  # another batch size, another pace: learned again from full batches
            self._per_image = None
            self.queue_limit = self.queue.maxsize
        self.max_batch, self.max_delay, self.max_wait = max_batch, max_delay, max_wait

    def _cmd_load(self, args: dict[str, Any]) -> None:
        """Swap in the model at args["path"]; the batching thread takes it up between two batches.

        The model is loaded, checked and warmed up here (on the control connection's thread), then one
        reference is replaced: a batch reads `self.model` once, so it runs wholly on the old model or
        wholly on the new one, and no queued image is dropped. A file that cannot be used changes nothing.
        """
        unknown = set(args) - {"path"}
        path = args.get("path")
        if unknown or not isinstance(path, str) or not path.strip() or len(path) > 4096:
            raise CommandError("load takes path (a model file on the worker's machine)")
        try:
            model = load_model(path.strip(), allow_torchscript=self.settings.allow_torchscript)
            self._warm_up(model)
        except ModelError as exc:
            raise CommandError(f"{exc}; still serving {self.model.name}") from None
        old = self.model
        self.model = model
        self.loads += 1
        log.info("infer %s: model %s replaced by %s", self.client_id, old.name, model.name)

    def _warm_up(self, model: LoadedModel) -> float:
        """One forward pass of a dummy batch, so that the first real batch does not pay for first-call
        setup (allocations, kernel selection); returns its time in milliseconds."""
        t0 = time.perf_counter()
        model.predict(np.zeros((max(1, self.max_batch), SIDE, SIDE), np.uint8))
        return round((time.perf_counter() - t0) * 1000, 3)

    # ----- the batching loop -----
    def _take_batch(self) -> tuple[list[Item], bool]:
        """Block for the first item, then gather up to max_batch within max_delay. (batch, stop_seen).

        Once it holds the first item, the thread takes what is queued and, if that is not a full batch,
        sleeps out the rest of the window once and takes what came meanwhile. It is not woken for each
        image that arrives in the window (a Condition notify, a GIL hand-off and a context switch per
        image: at 1,000 images/s that cost more CPU than the forward passes, docs/PERFORMANCE.md).
        """
        if self._left and self.queue.qsize() <= self.queue_limit // 2:
            self._rejoin()  # room again after a QoS 0 flood filled the queue
        try:
            first = self.queue.get(timeout=0.2)
        except queue.Empty:
            return [], False
        if first is _STOP:
            return [], True
        with self._room:
            self._room.notify()  # a QoS 1 image waiting for room in the queue goes in
        waiting = self.queue.qsize() + 1  # the queue is longest when a batch is taken: the peak the pacer wants
        if waiting > self._queue_peak:
            with self._peak_lock:
                self._queue_peak = max(self._queue_peak, waiting)
        batch = [first]
        deadline = time.monotonic() + self.max_delay
        if self._gather(batch):
            return batch, True
        if len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            if remaining > 0:
                time.sleep(remaining)
                if self._gather(batch):
                    return batch, True
        return batch, False

    def _gather(self, batch: list[Item]) -> bool:
        """Move what is queued into `batch`, up to max_batch; True when the stop marker was met."""
        get = self.queue.get_nowait
        limit = self.max_batch
        while len(batch) < limit:
            try:
                item = get()
            except queue.Empty:
                return False
            if item is _STOP:
                return True
            batch.append(item)
        return False

    def _drop_queued(self) -> None:
        """Past the drain time at stop: what is still queued is counted as dropped and not acknowledged
        (a QoS 1 image comes back to a durable session)."""
        left = 0
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            left += item is not _STOP
        if left:
            self.dropped += left
            log.warning("infer %s: stopped with %d queued images unanswered (drain limit %.1f s)", self.client_id,
                        left, self.settings.drain_seconds)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            if self._drain_deadline is not None and time.monotonic() > self._drain_deadline:
                self._drop_queued()
                break
            if self._paused.is_set() and not self._stop.is_set():
                time.sleep(0.05)
                continue
            batch, stopping = self._take_batch()
            if batch and not stopping and self._paused.is_set():
                self._held = len(batch)  # paused while gathering it: the batch waits too
                while self._paused.is_set() and not self._stop.is_set():
                    time.sleep(0.05)
                self._held = 0
            if stopping:  # finish everything received so far, in batches, then end
                while True:
                    try:
                        item = self.queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is not _STOP:
                        batch.append(item)
            for start in range(0, len(batch), max(1, self.max_batch)):
                if stopping and self._drain_deadline is not None and time.monotonic() > self._drain_deadline:
                    self.dropped += len(batch) - start  # see _drop_queued
                    log.warning("infer %s: stopped with %d queued images unanswered (drain limit %.1f s)",
                                self.client_id, len(batch) - start, self.settings.drain_seconds)
                    break
                chunk = batch[start : start + max(1, self.max_batch)]
                errors, expired = self.errors, self.expired
                try:
                    self._process(chunk)
                except Exception:
                    log.exception("infer %s: batch of %d failed; answering its images one by one", self.client_id,
                                  len(chunk))
                    self.errors, self.expired = errors, expired  # counted again, image by image
                    self._process_one_by_one(chunk)
                finally:
                    self._ack(chunk)

    def _process_one_by_one(self, batch: list[Item]) -> None:
        """After a batch failed unexpectedly (a bug, not a bad image: those get an ImageError): each image
        alone, and one that still fails gets an error result, so that every image is answered once."""
        for item in batch:
            errors, expired = self.errors, self.expired
            try:
                self._process([item])
            except Exception as exc:
                self.errors, self.expired = errors + 1, expired  # answered with an error, not expired
                self._auto_ids += 1
                try:
                    meta = merge_meta(extract_meta(item[0]), item[3])
                except Exception:
                    meta = extract_meta(b"")
                reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
                now = time.time()
                qos = self._result_qos([item])
                payload = _dump({
                    "id": meta.id or f"{self.client_id}:{self._auto_ids}", "error": f"internal error: {reason}",
                    "label": meta.label, "worker": self.client_id, "src": meta.src, "t_sent": meta.t,
                    "t_recv": item[1], "t_done": now,
                })
                self._publish_results([payload], [item], qos)

    def _result_qos(self, batch: list[Item]) -> int:
        """The QoS of a batch's results: the result-QoS setting, else the highest QoS of its images (a QoS 1
        image is answered at QoS 1: an acknowledged image never loses its answer to a disconnect)."""
        fixed = self.settings.result_qos
        if fixed is not None:
            return fixed
        return max((item[2][1] for item in batch if item[2] is not None), default=0)

    def _ack(self, batch: list[Item]) -> None:
        """Acknowledge the QoS 1/2 images of `batch` once the broker has acknowledged every result published
        so far (theirs among them): a worker that dies before has the images sent again by its session."""
        gen = self._conn_gen
        acks = [(ack[0], ack[1]) for _payload, _t, ack, _props in batch if ack is not None and ack[2] == gen]
        if acks:
            self.results_client.after_acknowledged(lambda: self._send_acks(acks, gen))

    def _send_acks(self, acks: list[tuple[int, int]], gen: int) -> None:
        # packet ids of the data connection's last session mean nothing on this one, nor while it is down (queued
        # then, they would go out ahead of the next CONNECT, and the broker closes a connection that starts so)
        with self._data_lock:
            if gen == self._conn_gen and not self._data_down:
                self.data_client.ack_many(acks)

    def _process(self, batch: list[Item]) -> None:
        t0 = time.time()
        s = self.settings
        model = self.model  # once per batch: a load command swaps models between batches, never inside one
        batch = self._drop_expired(batch, t0)
        if not batch:
            return
        max_wait = self.max_wait  # once: a set command may change it meanwhile
        oldest = t0 - max_wait if max_wait else None  # images published before this are skipped
        skipped = 0
        good: list[dict[str, Any]] = []  # result heads of the images to classify, in batch order
        t_recvs: list[float] = []
        raws: list[bytes] = []  # plain 28x28 grey PNGs, decoded together (engine.digits.fastpng)
        raw_slots: list[int] = []
        decoded: list[tuple[int, np.ndarray]] = []  # everything else, decoded by decode_png
        out: list[bytes] = []
        out_items: list[Item] = []  # the image of each result in `out`
        good_items: list[Item] = []
        fast_ok = s.max_pixels >= SIDE * SIDE
        for item in batch:
            payload, t_recv, _ack, props = item
            meta = extract_meta(payload)
            if props is not None:
                meta = merge_meta(meta, props)
            if oldest is not None and meta.t is not None and meta.t < oldest:
                skipped += 1  # waited longer than max_wait (at the broker, mostly): nobody wants it now
                continue
            if meta.id is None:
                self._auto_ids += 1
                msg_id = f"{self.client_id}:{self._auto_ids}"
            else:
                msg_id = meta.id
            head = {"id": msg_id, "label": meta.label, "worker": self.client_id, "src": meta.src, "t_sent": meta.t}
            raw = inflate_grey28(payload) if fast_ok and len(payload) <= s.max_payload else None
            if raw is not None:
                raw_slots.append(len(good))
                raws.append(raw)
            else:
                try:
                    decoded.append((len(good), decode_png(payload, max_bytes=s.max_payload, max_pixels=s.max_pixels)))
                except ImageError as exc:
                    now = time.time()
                    out.append(_dump(head | {"error": str(exc), "t_recv": t_recv, "t_done": now}))
                    out_items.append(item)
                    self.errors += 1
                    continue
            good.append(head)
            good_items.append(item)
            t_recvs.append(t_recv)
        if raws and not decoded:
            images = decode_batch(raws)
        else:
            images = np.empty((len(good), SIDE, SIDE), np.uint8)
            if raws:
                images[raw_slots] = decode_batch(raws)
            for slot, image in decoded:
                images[slot] = image
        t1 = time.time()
        if good:
            probs = model.predict(images)
            t2 = time.time()
            out.extend(encode_results(good, probs, model.name, self.client_id, t_recvs, t2))
            out_items.extend(good_items)
        else:
            t2 = t1
        qos = self._result_qos(batch)
        self._results_qos = qos
        self._publish_results(out, out_items, qos)
        t3 = time.time()
        self.expired += skipped
        count = len(batch) - skipped
        if not count:
            return
        self.processed += len(good)
        self.meter.add(count)
        self.batches.add(count)
        self.latency.extend([t3 - item[1] for item in out_items])
        self.stage["queue"].add(sum(t0 - item[1] for item in out_items) / count)
        self.stage["decode"].add((t1 - t0) / count)
        self.stage["infer"].add((t2 - t1) / count)
        self.stage["publish"].add((t3 - t2) / count)
        if len(batch) >= self.max_batch:  # a full batch: the worker is busy, and this is its pace
            self._pace(t3 - t0, count)

    def _pace(self, seconds: float, count: int) -> None:
        """Set queue_limit to about QUEUE_SECONDS of work (max_wait/2 if less) at the pace of full batches,
        never above --queue-size nor below two batches: the latency of a full queue stays bounded by time.
        Partial batches (a worker with time to spare) say nothing of its pace and leave the limit as it is."""
        per = seconds / count
        self._per_image = per if self._per_image is None else 0.8 * self._per_image + 0.2 * per
        target = QUEUE_SECONDS if not self.max_wait else min(QUEUE_SECONDS, self.max_wait / 2)
        size = self.queue.maxsize
        self.queue_limit = max(min(size, 2 * self.max_batch), min(size, int(target / max(self._per_image, 1e-9))))

    def _drop_expired(self, batch: list[Item], now: float) -> list[Item]:
        """The images of `batch` whose MQTT 5 expiry has not passed; the others are counted in `expired`
        (and acknowledged with the batch): nobody waits for their answer any more."""
        if all(item[3] is None or item[3].deadline is None for item in batch):
            return batch
        live = [item for item in batch if item[3] is None or item[3].deadline is None or item[3].deadline >= now]
        self.expired += len(batch) - len(live)
        return live

    def _publish_results(self, out: list[bytes], items: list[Item], qos: int) -> None:
        """Results on the result topic (content type JSON on MQTT 5), and each one whose image named a
        response topic there too, with the image's correlation data (MQTT 5 request/response)."""
        # QoS 1/2 results on the results connection (their PUBACKs must not queue behind unread images); QoS 0
        # ones, which nothing acknowledges, on the data connection: one network thread fewer in a busy worker.
        # Not when the worker may end its image connection to drop a stale backlog (_drop_backlog): what it wrote
        # there just before can be lost with it (the broker's kernel drops what it had not read when the closed
        # socket answers the images still coming with a reset). Nor while that connection is down.
        if qos or (self.max_wait is not None and not self.persistent):
            self._publish_on(self.results_client, out, items, qos)
            return
        with self._data_lock:
            self._publish_on(self.results_client if self._data_down else self.data_client, out, items, qos)

    def _publish_on(self, client: FastClient, out: list[bytes], items: list[Item], qos: int) -> None:
        v5 = self.settings.protocol == 5
        client.publish_many(self.topics.results, out, qos=qos, properties=_RESULT_PROPS if v5 else None)
        for payload, item in zip(out, items, strict=True):
            props = item[3]
            if props is None or props.response_topic is None:
                continue
            try:
                client.publish(props.response_topic, payload, qos=qos, properties=result_properties(props.correlation))
            except ValueError as exc:  # a topic paho will not send (checked before, so a bug): one line
                log.warning("infer %s: cannot answer on %r: %s", self.client_id, props.response_topic[:80], exc)

    # ----- status -----
    def status_published(self, status: dict[str, Any]) -> None:
        """The peak published starts again from 0 (unless a longer queue came meanwhile: it stays)."""
        with self._peak_lock:
            if self._queue_peak <= status.get("queue_peak", 0):
                self._queue_peak = 0
        if status.get("queue_full"):
            self._filled = False  # until the queue is at its bound again

    def status_fields(self) -> dict[str, Any]:
        mean_batch = self.batches.mean()
        return {
            "model": self.model.name,
            "received": self.received + self.shed + self.skipped,
            "processed": self.processed,
            "errors": self.errors,
            "expired": self.expired + self._stale + self.skipped,
            "backlogs_dropped": self.backlogs_dropped,
            "loads": self.loads,
            "warmup_ms": self.warmup_ms,
            "rate": round(self.meter.rate(), 1),
            "queue": (waiting := self.queue.qsize() + self._held),
            "queue_peak": min(max(self._queue_peak, waiting), self.queue.maxsize),  # since the last status sent
            "queue_max": self.queue_limit,
            "queue_full": self._filled,
            "dropped": self.dropped + self.shed,
            "shed": self.shed,
            "intake_pauses": self.intake_pauses,
            "batch_mean": round(mean_batch, 2) if mean_batch is not None else None,
            "max_batch": self.max_batch,
            "max_delay_ms": round(self.max_delay * 1000, 3),
            "max_wait": self.max_wait,
            "lat_ms": rounded(self.latency.percentiles((50, 90, 99))),
            "stages_ms": {k: (round(v * 1000, 4) if (v := w.mean()) is not None else None)
                          for k, w in self.stage.items()},
            "group": self.settings.share_group,
        }


_RESULT_PROPS = result_properties()


def _dump(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")
