"""A worker's queue is bounded by time as well as by count, and --max-wait skips what would pass it in the queue."""

from __future__ import annotations

import time

import paho.mqtt.client as mqtt
from fault_helpers import model
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from engine.digits.dataset import load_dataset
from engine.mqtt.address import BrokerAddress
from engine.protocol import embed_meta
from engine.roles.dataplane import DataConnection
from engine.roles.worker import DROP_INTERVAL, QUEUE_SECONDS, STALE_RUN, Worker
from engine.settings import Settings

NOWHERE = BrokerAddress.parse("mqtt://127.0.0.1:1")


def _worker(**settings: object) -> Worker:
    return Worker(NOWHERE, Settings(**settings), "w1", model=model())  # type: ignore[arg-type]


def test_the_queue_holds_about_a_second_of_work_at_the_pace_of_full_batches() -> None:
    worker = _worker(queue_size=2000, max_batch=64)
    assert worker.queue_limit == 2000 and worker.status()["queue_max"] == 2000  # no pace known yet
    for _ in range(30):
        worker._pace(64 * 0.002, 64)  # 2 ms an image: 500 images/s
    assert worker.queue_limit == int(QUEUE_SECONDS / 0.002) == 500
    assert worker.status()["queue_max"] == 500  # what the pacer of a publisher aims at
    for _ in range(30):
        worker._pace(64 * 0.1, 64)  # 10 images/s: not below two batches
    assert worker.queue_limit == 128
    for _ in range(60):
        worker._pace(64 * 0.00001, 64)  # faster than --queue-size needs: never above it
    assert worker.queue_limit == 2000


def test_a_full_queue_is_full_at_the_limit() -> None:
    worker = _worker(queue_size=2000, max_batch=64)
    for _ in range(30):
        worker._pace(64 * 0.002, 64)
    for i in range(500):
        worker.queue.put_nowait((b"", float(i), None, None))
    assert worker._queue_full()  # QoS 0 images are shed from here, 1,500 short of --queue-size
    worker.queue.get_nowait()
    assert not worker._queue_full()


def test_max_wait_skips_an_image_that_would_pass_it_in_the_queue_ahead() -> None:
    worker = _worker(queue_size=2000, max_batch=64, max_wait=1.0)
    sample = load_dataset(Settings().dataset)[0]
    png = embed_meta(sample.png, {"id": "x-1", "label": sample.label, "t": time.time() - 0.7, "src": "x"})
    assert not worker._skip(png)  # 0.7 s old, nothing ahead of it
    for _ in range(30):
        worker._pace(64 * 0.001, 64)  # 1 ms an image
    for i in range(400):
        worker.queue.put_nowait((b"", float(i), None, None))
    assert worker._skip(png)  # 0.4 s of work ahead: it would be 1.1 s old when its turn came
    old = embed_meta(sample.png, {"id": "x-2", "label": sample.label, "t": time.time() - 5, "src": "x"})
    while not worker.queue.empty():
        worker.queue.get_nowait()
    assert worker._skip(old) and not worker._skip(sample.png)  # too old; no time: never skipped


def test_a_paused_worker_queues_qos1_images_up_to_its_queue_size_without_waiting_for_room() -> None:
    """Paused, the worker takes nothing from its queue: an image past the time bound must not hold the data
    connection's thread waiting for room (5 s an image, its keepalive unanswered), only --queue-size counts."""
    import threading

    import paho.mqtt.client as mqtt
    from helpers import wait_for

    worker = _worker(queue_size=300, max_batch=64)
    for _ in range(30):
        worker._pace(64 * 0.01, 64)  # 100 images/s: a bound of 128
    assert worker.queue_limit == 128
    worker._cmd_stop({})
    for i in range(128):
        worker.queue.put_nowait((b"", float(i), None, None))
    messages = []
    for mid in range(1, 51):
        msg = mqtt.MQTTMessage(mid=mid, topic=b"mnist")
        msg.qos, msg.payload = 1, b"not an image"
        messages.append(msg)
    thread = threading.Thread(target=lambda: [worker.on_data(m) for m in messages], daemon=True)
    thread.start()
    wait_for(lambda: worker.queue.qsize() == 178, timeout=4, message="a paused worker waited for room")
    thread.join(4)
    assert worker.dropped == 0


def test_a_new_batch_size_is_paced_again() -> None:
    """`set max_batch`: the pace of the old batch size says nothing of the new one, and a bound of less than two
    of the new batches would never let one fill (so that the pace would never be measured again)."""
    worker = _worker(queue_size=2000, max_batch=64)
    for _ in range(30):
        worker._pace(64 * 0.01, 64)
    assert worker.queue_limit == 128
    worker._cmd_set({"max_batch": 512})
    assert worker.queue_limit == 2000 and worker._per_image is None
    worker._cmd_set({"max_delay_ms": 5})  # the same batch size: the pace stands
    worker._pace(512 * 0.0008, 512)
    assert worker.queue_limit == 1250


def test_the_look_ahead_counts_whole_batches_only() -> None:
    """An image behind less than a batch goes in the next batch, which starts at once: no wait is foreseen."""
    worker = _worker(queue_size=2000, max_batch=20, max_wait=0.2)
    for _ in range(30):
        worker._pace(20 * 0.003, 20)  # 3 ms an image
    sample = load_dataset(Settings().dataset)[0]
    png = embed_meta(sample.png, {"id": "x-1", "label": sample.label, "t": time.time() - 0.15, "src": "x"})
    for i in range(19):
        worker.queue.put_nowait((b"", float(i), None, None))
    assert not worker._skip(png)  # 19 ahead: its batch is the next one
    for i in range(21):
        worker.queue.put_nowait((b"", float(i), None, None))
    assert worker._skip(png)  # 40 ahead: two batches of 20 at 3 ms an image first, 0.12 s; 0.27 s old then


class _Connection:
    """Stands for the worker's image connection: counts the sessions it was asked to drop, and the packet ids
    its client was asked to acknowledge."""

    def __init__(self) -> None:
        self.drops = 0
        self.acked: list[int] = []
        self.subscribed: list[list[tuple[str, int]]] = []
        self.unsubscribed: list[list[str]] = []
        self.client = self

    def drop_session(self) -> bool:
        self.drops += 1
        return True

    def ack_many(self, acks: list[tuple[int, int]]) -> None:
        self.acked += [mid for mid, _qos in acks]

    def subscribe_again(self) -> None:
        self.subscribed.append([("mnist", 1)])

    def unsubscribe(self, topics: list[str]) -> None:
        self.unsubscribed.append(topics)


def test_a_stale_backlog_is_dropped_after_a_run_of_stale_images_not_too_often() -> None:
    """STALE_RUN images in a row too old: the image connection's session is dropped once; not again before the
    connection is back, nor within DROP_INTERVAL of the last drop (a publisher's clock far behind ours makes every
    image stale: a drop each 256 images would end the connection every few milliseconds); a fresh image in
    between starts the run again; a durable worker never drops its session."""
    worker = _worker(max_wait=0.05)
    data = _Connection()
    worker._data = data  # type: ignore[assignment]
    sample = load_dataset(Settings().dataset)[0]
    stale = embed_meta(sample.png, {"id": "x-1", "label": sample.label, "t": time.time() - 60, "src": "x"})
    fresh = embed_meta(sample.png, {"id": "x-2", "label": sample.label, "t": time.time() + 60, "src": "x"})

    def feed(n: int) -> None:
        assert all(worker._skip(stale) for _ in range(n))

    assert worker.max_wait < DROP_INTERVAL / 2
    feed(STALE_RUN - 1)
    assert not worker._skip(fresh) and data.drops == 0  # a fresh one ends the run
    feed(STALE_RUN - 1)
    assert data.drops == 0
    feed(1)
    assert data.drops == 1 and worker.backlogs_dropped == 1
    feed(STALE_RUN * 3)  # what the old connection still had in hand
    assert data.drops == 1
    worker.on_data_connect()  # back, and past max_wait but within DROP_INTERVAL of the drop: skipped one by one
    worker._dropped_at -= DROP_INTERVAL / 2
    feed(STALE_RUN * 3)
    assert data.drops == 1
    worker._dropped_at -= DROP_INTERVAL  # past DROP_INTERVAL now
    feed(1)
    assert data.drops == 2 and worker.backlogs_dropped == 2

    durable = _worker(max_wait=0.5, durable=True, session_expiry=3600)
    durable._data = data  # type: ignore[assignment]
    assert durable.persistent
    assert all(durable._skip(stale) for _ in range(STALE_RUN * 2))
    assert data.drops == 2 and durable.backlogs_dropped == 0


def test_no_stale_backlog_is_dropped_while_the_worker_stops() -> None:
    """Stopping, a worker unsubscribes and waits for the broker's answer before it closes its intake: a drop then
    would lose that answer, and the connection made after it would subscribe again (a stopping worker in a group
    taking its share of new images, to ignore them)."""
    worker = _worker(max_wait=0.05)
    data = _Connection()
    worker._data = data  # type: ignore[assignment]
    sample = load_dataset(Settings().dataset)[0]
    stale = embed_meta(sample.png, {"id": "x-1", "label": sample.label, "t": time.time() - 60, "src": "x"})
    worker._stop.set()
    assert all(worker._skip(stale) for _ in range(STALE_RUN * 2))
    assert data.drops == 0 and worker.backlogs_dropped == 0


def test_acknowledgements_wait_for_nothing_while_the_image_connection_is_down() -> None:
    """An image's acknowledgement goes out on the connection it came on, and only while that one is up: queued
    while it is down (lost, or ended to drop a backlog), it would go out ahead of the next CONNECT, and mosquitto
    closes a connection that starts with a PUBACK; on the next connection its packet id means nothing."""
    worker = _worker()
    data = _Connection()
    worker._data = data  # type: ignore[assignment]
    worker.on_data_connect()
    gen = worker._conn_gen
    worker._send_acks([(1, 1)], gen)
    assert data.acked == [1]
    worker.on_data_disconnect()
    worker._send_acks([(2, 1)], gen)  # down: not queued
    worker.on_data_connect()
    worker._send_acks([(3, 1)], gen)  # from the connection before: not sent on this one
    worker._send_acks([(4, 1)], worker._conn_gen)
    assert data.acked == [1, 4]


def _image_message(qos: int) -> mqtt.MQTTMessage:
    sample = load_dataset(Settings().dataset)[0]
    msg = mqtt.MQTTMessage(mid=1, topic=b"mnist")
    msg.qos = qos
    msg.payload = embed_meta(sample.png, {"id": "x-1", "t": time.time(), "src": "x"})
    return msg


def test_a_full_worker_leaves_its_subscription_under_qos0_only_and_is_back_with_half_a_queue() -> None:
    """A full queue (FastClient.on_shed) unsubscribes once; a batch taken with more than half the queue waiting
    subscribes nothing, one with half or less subscribes again, unless the image connection is down. Never once
    a QoS 1 image came (the broker would drop one published meanwhile), nor for a worker told its images are QoS 1,
    nor with a durable session, nor while stopping."""
    worker = _worker(queue_size=100, max_batch=10)
    data = _Connection()
    worker._data = data  # type: ignore[assignment]
    worker.on_data_connect()

    def fill(w: Worker) -> None:
        while not w._queue_full():
            w.queue.put_nowait((b"", 0.0, None, None))

    fill(worker)
    worker._leave_while_full()
    worker._leave_while_full()  # left already
    assert data.unsubscribed == [["mnist"]] and worker.intake_pauses == 1
    while worker.queue.qsize() > 50:
        assert worker._take_batch()[0] and not data.subscribed
    worker._take_batch()
    assert data.subscribed == [[("mnist", 1)]]
    fill(worker)
    worker._leave_while_full()  # full again: left again
    assert len(data.unsubscribed) == 2 and worker.intake_pauses == 2

    # the image connection drops during the pause: no subscribe while it is down (one queued ahead of the next
    # CONNECT would end that connection); the next connection subscribes anew, and the worker can leave again
    worker.on_data_disconnect()
    while not worker.queue.empty():
        worker.queue.get_nowait()
    worker._take_batch()
    assert len(data.subscribed) == 1 and worker._left
    worker.on_data_connect()
    assert not worker._left
    worker._take_batch()
    assert len(data.subscribed) == 1
    fill(worker)
    worker._leave_while_full()
    assert len(data.unsubscribed) == 3 and worker.intake_pauses == 3

    worker.on_data_connect()
    while not worker.queue.empty():
        worker.queue.get_nowait()
    worker.on_data(_image_message(qos=1))
    worker.on_data_connect()  # on any later connection too: the publishers are the same
    while not worker.queue.empty():
        worker.queue.get_nowait()
    fill(worker)
    worker._leave_while_full()
    assert len(data.unsubscribed) == 3, "left with QoS 1 images coming"

    told_qos1 = _worker(queue_size=100, qos=1)
    durable = _worker(queue_size=100, durable=True, session_expiry=3600)
    stopping = _worker(queue_size=100)
    stopping._stop.set()
    for other in (told_qos1, durable, stopping):
        other._data = data  # type: ignore[assignment]
        fill(other)
        other._leave_while_full()
        assert len(data.unsubscribed) == 3 and other.intake_pauses == 0


def test_a_refused_subscribe_after_a_pause_is_reported_and_changes_no_readiness() -> None:
    """The answer to subscribe_again is checked as the one on connecting is: a refusal is logged and becomes the
    role's last error; it neither sets nor clears the connection's readiness."""
    class _Client:
        def subscribe(self, _subs: list[tuple[str, int]]) -> tuple[int, int]:
            return mqtt.MQTT_ERR_SUCCESS, 7

    worker = _worker()
    data = DataConnection(worker)
    data._client = _Client()  # type: ignore[assignment]
    data.subscribe_again()
    data._on_subscribe(None, None, 8, [ReasonCode(PacketTypes.SUBACK, "Not authorized")], None)  # type: ignore[arg-type]
    assert worker.last_error is None  # another packet id: not this one's answer
    data._on_subscribe(None, None, 7, [ReasonCode(PacketTypes.SUBACK, "Not authorized")], None)  # type: ignore[arg-type]
    assert worker.last_error is not None and "refused a subscription" in worker.last_error
    assert not data.ready.is_set()
    worker.last_error = None
    data._on_subscribe(None, None, 7, [ReasonCode(PacketTypes.SUBACK, "Not authorized")], None)  # type: ignore[arg-type]
    assert worker.last_error is None, "answered twice"


def test_queue_full_says_whether_the_bound_in_force_was_reached_since_the_last_status() -> None:
    """`queue_full` (the Workers pane's `full`): the queue at its bound when the data client asked (QoS 0 shed) or a
    QoS 1 image waited for room, since the last status published; a peak reached under a bound that then shrank
    (the pace of full batches) is not full."""
    worker = _worker(queue_size=100, max_batch=10)
    for i in range(99):
        worker.queue.put_nowait((b"", float(i), None, None))
    assert not worker._queue_full() and worker.status()["queue_full"] is False
    worker.queue.put_nowait((b"", 0.0, None, None))
    assert worker._queue_full() and worker.status()["queue_full"] is True
    worker.queue.get_nowait()
    status = worker.status()
    assert status["queue_full"] is True  # until a status has said so
    worker.status_published(status)
    assert worker.status()["queue_full"] is False
    for _ in range(30):
        worker._pace(10 * 0.05, 10)  # 20 images/s: the bound shrinks to a second of work, 20 images
    assert worker.queue_limit < 99 <= worker.queue.qsize()
    assert worker.status()["queue_full"] is False, "a queue the bound shrank under is full only once asked"
