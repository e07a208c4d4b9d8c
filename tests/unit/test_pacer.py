"""The pacer of a publisher at "max" (engine/roles/pacer.py): its rate from the workers' statuses, on a
clock of the test's own."""

from __future__ import annotations

from typing import Any

import pytest

from engine.roles import pacer
from engine.roles.pacer import Pacer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def status(ts: float, processed: float, *, received: float | None = None, queue: int = 0, dropped: int = 0,
           queue_max: int = 2000, state: str = "running", group: str | None = None) -> dict[str, Any]:
    return {"role": "infer", "state": state, "ts": ts, "processed": processed,
            "received": processed if received is None else received, "dropped": dropped, "queue": queue,
            "queue_max": queue_max, "group": group}


def started(clock: Clock, *workers: tuple[str, dict[str, Any]]) -> Pacer:
    """A pacer that has heard each worker once and whose publisher starts publishing now."""
    p = Pacer(clock)
    for wid, first in workers:
        p.on_status(wid, first, 0, running=True)
    p.restart(0)
    return p


def test_no_worker_means_no_pace() -> None:
    clock = Clock()
    p = Pacer(clock)
    assert p.rate() is None
    p.on_status("w", status(1, 0, state="stopped"), 0, running=True, retained=True)  # maybe long gone
    assert p.rate() is None
    p.on_status("w", status(1, 0), 0, running=True)
    assert p.rate() == pacer.START
    p.on_status("w", None, 0, running=True)  # its retained status removed
    assert p.rate() is None


def test_a_worker_that_keeps_up_with_an_empty_queue_lets_the_rate_grow() -> None:
    clock = Clock()
    p = started(clock, ("w", status(0, 0)))
    sent = 0
    for second in range(1, 8):  # the worker answers all it is offered and its queue stays empty: offer more
        rate = p.rate()
        assert rate is not None
        clock.now += 1.0
        sent += int(rate)
        p.on_status("w", status(second, sent), sent, running=True)
        room = (1 - pacer.FILL) * 2000 / pacer.STATUS_EVERY  # at most what two thirds of its queue absorb
        assert p.rate() >= min(rate * pacer.GROW, rate + room) or p.rate() == pacer.CEILING, (second, rate, p.rate())


def feed(p: Pacer, clock: Clock, seconds: int, sent_per_s: float, **workers: dict[str, Any]) -> None:
    """`seconds` of statuses, one a second from each worker: it answers `answered`/s of the `received`/s it
    gets (default: all of it), holds `queue`, drops `drops`/s; the publisher sends `sent_per_s`."""
    start = clock.now - 1000.0
    for _ in range(seconds):
        clock.now += 1.0
        t = clock.now - 1000.0
        for wid, w in workers.items():
            answered = w["answered"]
            p.on_status(wid, status(t, answered * t, received=w.get("received", answered) * t,
                                    queue=w.get("queue", 0), dropped=int(w.get("drops", 0) * t),
                                    group=w.get("group")), int(sent_per_s * (t - start)), running=True)


def test_a_busy_worker_is_offered_a_little_less_than_it_answers() -> None:
    clock = Clock()
    p = started(clock, ("w", status(0, 0, queue=1500)))
    feed(p, clock, 15, 3000, w={"answered": 3000, "queue": 1500})  # its queue is over its aim (a third)
    assert p.rate() == pytest.approx(3000 * pacer.BELOW, rel=0.01)
    feed(p, clock, 15, 3000, w={"answered": 3000, "queue": 200})  # under its aim
    assert p.rate() == pytest.approx(3000 * pacer.ABOVE, rel=0.01)


def test_a_worker_whose_queue_came_close_to_full_is_offered_less() -> None:
    """Its queue is empty at the moment of its status, but it held 1,500 of 2,000 images since the last one."""
    clock = Clock()
    p = started(clock, ("w", status(0, 0)))
    feed(p, clock, 3, 4000, w={"answered": 4000, "queue": 1500})  # the ramp is over
    for second in range(4, 7):
        clock.now += 1.0
        p.on_status("w", status(second, 4000 * second, queue=0) | {"queue_peak": 1500}, 4000 * second,
                    running=True)
        rate = p.rate()
        assert rate is not None and rate < 4000, (second, rate)  # less than it answers, not 5% more


def test_a_worker_that_drops_images_is_offered_less_than_it_answered() -> None:
    clock = Clock()
    p = started(clock, ("w", status(0, 0)))
    feed(p, clock, 15, 6000, w={"answered": 4000, "received": 6000, "queue": 2000, "drops": 2000})
    assert p.rate() == pytest.approx(4000 * pacer.BACK_OFF, rel=0.01)


def test_publishers_share_what_a_worker_takes() -> None:
    """Two publishers send to one worker; each sees the worker receive twice what it sent itself, so each
    offers about half of what the worker answers."""
    clock = Clock()
    p = started(clock, ("w", status(0, 0, queue=1000)))
    feed(p, clock, 40, 1500, w={"answered": 3000, "received": 3000, "queue": 1000})
    assert p.rate() == pytest.approx(3000 * pacer.BELOW / 2, rel=0.02)


def test_a_shared_group_adds_up_and_workers_outside_one_get_every_image() -> None:
    clock = Clock()
    p = started(clock, *((wid, status(0, 0, queue=600, group="g")) for wid in ("a", "b")))
    feed(p, clock, 15, 4000, a={"answered": 2000, "queue": 600, "group": "g"},
         b={"answered": 2000, "queue": 600, "group": "g"})
    assert p.rate() == pytest.approx(4000 * pacer.ABOVE, rel=0.01)  # 1,200 queued of 4,000: under the aim

    clock = Clock()
    p = started(clock, ("a", status(0, 0, queue=600)), ("b", status(0, 0, queue=600)))
    # each gets all 3,000/s; b answers only 2,000/s of them
    feed(p, clock, 15, 3000, a={"answered": 3000, "queue": 600}, b={"answered": 2000, "received": 3000, "queue": 600})
    assert p.rate() == pytest.approx(2000 * pacer.ABOVE, rel=0.01)  # the slower one sets it


def test_a_worker_that_gets_none_of_the_images_says_nothing_of_the_pace() -> None:
    clock = Clock()
    p = started(clock, ("w", status(0, 0, queue=1500)), ("idle", status(0, 0)))
    feed(p, clock, 15, 3000, w={"answered": 3000, "queue": 1500}, idle={"answered": 0})
    assert p.rate() == pytest.approx(3000 * pacer.BELOW, rel=0.01)


def test_no_decision_while_not_publishing_and_a_restart_begins_low() -> None:
    clock = Clock()
    p = Pacer(clock)
    p.on_status("w", status(0, 0, queue=1900), 0, running=False)
    for i in range(1, 4):
        clock.now += 1
        p.on_status("w", status(i, i * 100, queue=1900, dropped=i * 50), 0, running=False)
    assert p.rate() == pacer.START
    p.restart(0)
    assert p.rate() == pacer.START


def test_a_paused_worker_holds_the_rate_and_a_silent_one_is_forgotten() -> None:
    clock = Clock()
    p = started(clock, ("w", status(0, 0, queue=1500)))
    feed(p, clock, 2, 3000, w={"answered": 3000, "queue": 1500})
    held = p.rate()
    for second in (3, 4, 5):  # paused (or going offline): it takes nothing, but it is there
        clock.now += 1.0
        p.on_status("w", status(second, 6000, state="stopped"), 6000 + 100 * second, running=True)
        assert p.rate() == held
    clock.now += pacer.HOLD
    assert p.rate() is None  # heard of no more: as fast as possible
    p.on_status("v", status(9, 0), 0, running=True, retained=True)  # a running worker's retained status
    assert p.rate() is not None
    clock.now += pacer.FORGET
    assert p.rate() is None  # and nothing since


def test_a_restarted_worker_a_clock_step_and_bad_numbers_give_no_rate() -> None:
    clock = Clock()
    p = started(clock, ("w", status(0, 0, queue=1000)))
    feed(p, clock, 2, 9000, w={"answered": 9000, "queue": 1000})
    before = p.rate()
    clock.now += 1.0
    p.on_status("w", status(3, 10, queue=1000), 27_000, running=True)  # restarted: its counters begin at 0
    assert p.rate() == before
    clock.now += 1.0
    p.on_status("w", status(3604, 9010, queue=1000), 36_000, running=True)  # its clock stepped an hour
    assert p.rate() == before
    for bad in ({"state": "running", "ts": "soon", "processed": 1, "received": 1, "dropped": 0, "queue": 0,
                 "queue_max": 9},
                {"state": "running", "ts": 5, "processed": float("nan"), "received": 1, "dropped": 0, "queue": 0,
                 "queue_max": 9},
                {"state": "running", "ts": 5, "processed": -4, "received": 1, "dropped": 0, "queue": 0,
                 "queue_max": 9},
                {"state": ["running"]}):
        clock.now += 1.0
        p.on_status("w", bad, 45_000, running=True)
        assert p.rate() == before  # counted as a worker that is not running: the rate holds


def test_at_most_so_many_workers_are_followed() -> None:
    clock = Clock()
    p = Pacer(clock)
    for i in range(pacer.MAX_WORKERS + 50):
        p.on_status(f"w{i}", status(0, 0), 0, running=False)
    assert len(p._workers) == pacer.MAX_WORKERS


def test_a_paused_member_of_a_group_holds_the_rate() -> None:
    """The broker still gives a paused member its part of the stream, which it drops: what the running members
    answer is then no measure of what the group takes, so the rate holds instead of falling."""
    clock = Clock()
    p = started(clock, *((wid, status(0, 0, queue=600, group="g")) for wid in ("a", "b")))
    feed(p, clock, 15, 4000, a={"answered": 2000, "queue": 600, "group": "g"},
         b={"answered": 2000, "queue": 600, "group": "g"})
    held = p.rate()
    for _ in range(5):
        clock.now += 1.0
        t = clock.now - 1000.0
        p.on_status("b", status(t, 0, state="stopped", group="g"), int(4000 * (t + 15)), running=True)
        p.on_status("a", status(t, 2000 * t, queue=600, group="g"), int(4000 * (t + 15)), running=True)
        assert p.rate() == held


def test_workers_that_take_all_they_are_offered_let_the_rate_ramp_again() -> None:
    """After the first ramp, a worker that keeps up shows only what it is offered (5% a decision); a few calm
    decisions in a row and the rate grows by half again."""
    clock = Clock()
    p = started(clock, ("w", status(0, 0, queue=1500)))
    feed(p, clock, 3, 500, w={"answered": 500, "queue": 1500})  # its queue reached the aim: the ramp is over
    sent = 1500
    answered = 1500.0
    rates = []
    for _ in range(pacer.CALM + 2):
        rate = p.rate()
        assert rate is not None
        clock.now += 1.0
        sent += int(rate)
        answered += rate
        p.on_status("w", status(clock.now - 1000.0, answered, queue=0), sent, running=True)
        rates.append(p.rate())
    assert rates[-1] >= rates[-2] * pacer.GROW, rates


def test_a_known_worker_keeps_holding_the_rate_through_its_retained_status() -> None:
    """After a reconnect the broker sends the worker's retained "stopped" status again: still a worker."""
    clock = Clock()
    p = started(clock, ("w", status(0, 0)))
    p.on_status("w", status(1, 0, state="stopped"), 0, running=True)
    p.on_status("w", status(1, 0, state="stopped"), 0, running=True, retained=True)
    assert p.rate() == pacer.START


def simulate(capacity: float, seconds: float, queue_max: int = 2000) -> tuple[float, list[float]]:
    """A publisher at "max" and one worker that answers `capacity`/s with a queue of `queue_max`, in steps of
    10 ms, the worker's status once a second: (images dropped, images answered each second)."""
    clock = Clock()
    p = started(clock, ("w", status(0, 0, queue_max=queue_max)))
    sent = received = processed = dropped = queue = 0.0
    answered: list[float] = []
    mark = 0.0
    for step in range(1, int(seconds * 100) + 1):
        rate = p.rate()
        assert rate is not None
        offer = rate / 100
        take = min(offer, queue_max - queue)
        sent, received, dropped, queue = sent + offer, received + take, dropped + offer - take, queue + take
        served = min(queue, capacity / 100)
        queue, processed = queue - served, processed + served
        clock.now = 1000.0 + step / 100
        if step % 100 == 0:
            t = step / 100
            p.on_status("w", status(t, processed, received=received, queue=int(queue), dropped=int(dropped),
                                    queue_max=queue_max), int(sent), running=True)
            answered.append(processed - mark)
            mark = processed
    return dropped, answered


@pytest.mark.parametrize("capacity", [800.0, 3_000.0, 10_000.0, 30_000.0])
def test_max_keeps_a_worker_busy_without_overrunning_its_queue(capacity: float) -> None:
    """A growth by half each calm decision offered a 10,000/s worker 15,000/s for a second: its 2,000-image
    queue overflowed each time the rate ramped again (thousands dropped a minute in the console)."""
    dropped, answered = simulate(capacity, 90)
    assert dropped == 0, dropped
    busy = sum(answered[-60:]) / (60 * capacity)
    assert busy >= 0.85, busy  # and it is kept busy


def test_a_workers_queue_peak_lasts_until_a_status_is_published() -> None:
    """`run` reads the status for its log line every 5 s: that read used up the peak, and the status the pacer
    got next said the queue had stayed short."""
    from fault_helpers import model

    from engine.mqtt.address import BrokerAddress
    from engine.roles.worker import Worker
    from engine.settings import Settings

    worker = Worker(BrokerAddress.parse("mqtt://127.0.0.1:1"), Settings(queue_size=2000), "w1", model=model())
    for i in range(1500):
        worker.queue.put_nowait((b"", float(i), None, None))
    batch, _stop = worker._take_batch()  # the batching thread takes a batch from a queue of 1,500
    assert len(batch) == worker.max_batch
    logged = worker.status()  # a log line
    published = worker.status()
    assert logged["queue_peak"] == published["queue_peak"] == 1500
    worker.status_published(published)
    while not worker.queue.empty():
        worker.queue.get_nowait()
    assert worker.status()["queue_peak"] == 0  # a new count since the status published
