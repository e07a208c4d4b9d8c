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


def status(ts: float, processed: int, *, queue: int = 0, dropped: int = 0, queue_max: int = 2000,
           state: str = "running", group: str | None = None) -> dict[str, Any]:
    return {"role": "infer", "state": state, "ts": ts, "processed": processed, "dropped": dropped,
            "queue": queue, "queue_max": queue_max, "group": group}


def run(p: Pacer, clock: Clock, statuses: dict[str, list[dict[str, Any]]], sent_per_step: int = 0,
        sent: int = 0) -> int:
    """Feed one status of each worker per simulated second, the publisher publishing; returns its count."""
    steps = max(len(v) for v in statuses.values())
    for i in range(steps):
        clock.now += 1.0
        sent += sent_per_step
        for wid, seq in statuses.items():
            if i < len(seq):
                p.on_status(wid, seq[i], sent, running=True)
    return sent


def test_no_running_worker_means_no_pace() -> None:
    clock = Clock()
    p = Pacer(clock)
    assert p.rate() is None
    p.on_status("w", status(1, 0, state="stopped"), 0, running=True)
    assert p.rate() is None
    p.on_status("w", status(1, 0), 0, running=True)
    assert p.rate() == pacer.START
    p.on_status("w", None, 0, running=True)  # its retained status removed
    assert p.rate() is None


def test_a_worker_that_keeps_up_with_an_empty_queue_lets_the_rate_grow() -> None:
    clock = Clock()
    p = Pacer(clock)
    p.on_status("w", status(0, 0), 0, running=True)
    p.restart(0)
    sent = 0
    for second in range(1, 8):  # the worker answers all it is offered and its queue stays empty: offer more
        rate = p.rate()
        assert rate is not None
        clock.now += 1.0
        sent += int(rate)
        p.on_status("w", status(second, sent), sent, running=True)
        assert p.rate() >= rate * pacer.GROW or p.rate() == pacer.CEILING, (second, rate, p.rate())


def test_a_busy_worker_is_offered_its_rate_plus_what_brings_its_queue_to_a_third() -> None:
    clock = Clock()
    p = Pacer(clock)
    p.on_status("w", status(0, 0, queue=1500), 0, running=True)
    p.restart(0)
    run(p, clock, {"w": [status(1, 3000, queue=1500), status(2, 6000, queue=1500)]}, sent_per_step=3000)
    aim = pacer.FILL * 2000
    assert p.rate() == pytest.approx(3000 + (aim - 1500) / pacer.DRAIN)
    assert p.rate() < 3000  # its queue drains


def test_a_worker_that_dropped_images_is_offered_less_than_it_answered() -> None:
    clock = Clock()
    p = Pacer(clock)
    p.on_status("w", status(0, 0), 0, running=True)
    p.restart(0)
    run(p, clock, {"w": [status(1, 4000, queue=2000, dropped=0), status(2, 8000, queue=2000, dropped=700)]},
        sent_per_step=6000)
    assert p.rate() == pytest.approx(4000 * pacer.BACK_OFF)


def test_a_shared_group_adds_up_and_workers_outside_one_get_every_image() -> None:
    clock = Clock()
    shared = Pacer(clock)
    for wid in ("a", "b"):
        shared.on_status(wid, status(0, 0, queue=600, group="g"), 0, running=True)
    shared.restart(0)
    run(shared, clock, {wid: [status(1, 2000, queue=600, group="g"), status(2, 4000, queue=600, group="g")]
                        for wid in ("a", "b")}, sent_per_step=4000)
    aim = pacer.FILL * 4000
    assert shared.rate() == pytest.approx(4000 + (aim - 1200) / pacer.DRAIN)

    clock2 = Clock()
    fan_out = Pacer(clock2)
    for wid in ("a", "b"):
        fan_out.on_status(wid, status(0, 0, queue=600), 0, running=True)
    fan_out.restart(0)
    run(fan_out, clock2, {"a": [status(1, 3000, queue=600), status(2, 6000, queue=600)],
                          "b": [status(1, 2000, queue=600), status(2, 4000, queue=600)]}, sent_per_step=3000)
    aim = pacer.FILL * 2000
    assert fan_out.rate() == pytest.approx(2000 + (aim - 600) / pacer.DRAIN)  # the slower one sets it


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


def test_a_restarted_worker_and_bad_numbers_change_nothing() -> None:
    clock = Clock()
    p = Pacer(clock)
    p.on_status("w", status(0, 0), 0, running=True)
    p.restart(0)
    run(p, clock, {"w": [status(1, 9000, queue=1000), status(2, 18_000, queue=1000)]}, sent_per_step=9000)
    before = p.rate()
    # the worker restarted: its counters begin again at 0, which is no rate at all
    run(p, clock, {"w": [status(3, 10, queue=1000)]}, sent_per_step=9000)
    assert p.rate() == before
    for bad in ({"state": "running", "ts": "soon", "processed": 1, "dropped": 0, "queue": 0, "queue_max": 9},
                {"state": "running", "ts": 5, "processed": float("nan"), "dropped": 0, "queue": 0, "queue_max": 9},
                {"state": "running", "ts": 5, "processed": -4, "dropped": 0, "queue": 0, "queue_max": 9},
                {"state": ["running"]}):
        p.on_status("w", bad, 0, running=True)
        assert p.rate() is None  # a status that is not a sane running worker's takes that worker out


def test_a_silent_worker_is_forgotten() -> None:
    clock = Clock()
    p = Pacer(clock)
    p.on_status("w", status(0, 0), 0, running=True)
    clock.now += pacer.FORGET + 1
    p.on_status("other", status(0, 0, state="stopped"), 0, running=True)
    assert p.rate() is None
