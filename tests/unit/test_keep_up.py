"""KeepUp: when the console's view skips ahead (engine/console/keep_up.py), with clocks under the test's control."""

from __future__ import annotations

from engine.console.keep_up import KeepUp


class Clocks:
    def __init__(self) -> None:
        self.wall = 1_000_000.0
        self.mono = 50.0


def keep_up(clocks: Clocks, run: int = 3) -> KeepUp:
    return KeepUp(late=1.0, run=run, burst=0.05, wall=lambda: clocks.wall, clock=lambda: clocks.mono)


def test_a_run_of_late_results_skips_for_a_burst_and_a_timely_one_ends_it() -> None:
    c = Clocks()
    k = keep_up(c)
    k.result("w1", c.wall - 0.01)  # the worker's usual: 10 ms
    for _ in range(2):
        k.result("w1", c.wall - 5.0)
    assert not k.skipping(), "two late results are a stall, not a backlog"
    k.result("w1", c.wall - 5.0)
    assert k.skipping()
    c.mono += 0.06
    assert not k.skipping(), "a burst ends by itself"
    k.result("w1", c.wall - 5.0)  # still late after the burst: skip again at once
    assert k.skipping()
    c.mono += 0.06
    k.result("w1", c.wall - 0.02)  # caught up
    k.result("w1", c.wall - 5.0)
    assert not k.skipping(), "the run starts over after a timely result"


def test_a_worker_with_another_clock_is_not_late() -> None:
    c = Clocks()
    k = keep_up(c, run=1)
    k.result("skewed", c.wall + 30.0)  # its clock is 30 s ahead of ours: its usual lateness is -30 s
    for _ in range(5):
        k.result("skewed", c.wall + 29.99)
    assert not k.skipping()
    k.result("skewed", c.wall + 28.0)  # 2 s later than usual
    assert k.skipping()


def test_results_without_a_worker_or_time_and_a_new_connection() -> None:
    c = Clocks()
    k = keep_up(c, run=1)
    k.result(None, c.wall - 99)
    k.result("w1", None)
    assert not k.skipping()
    k.result("w1", c.wall)
    k.result("w1", c.wall - 9)
    assert k.skipping()
    k.forget()
    assert not k.skipping()
    k.result("w1", c.wall - 9)  # the first after a new connection sets the usual again
    assert not k.skipping()


def test_a_clock_step_or_a_forged_result_is_forgotten_within_two_windows() -> None:
    c = Clocks()
    k = keep_up(c, run=1)
    k.result("w1", c.wall - 0.01)
    k.result("w1", c.wall + 9e4)  # forged: "finished" a day from now, the least lateness ever
    k.result("w1", c.wall - 0.01)
    assert k.skipping(), "right after it, every timely result looks late"
    for _ in range(25):  # 25 s of timely results, one a second
        c.mono += 1.0
        k.result("w1", c.wall - 0.01)
    c.mono += 1.0
    k.result("w1", c.wall - 0.01)
    assert not k.skipping(), "the forged result was not forgotten"


def test_qos1_results_are_not_measured() -> None:
    c = Clocks()
    k = keep_up(c, run=1)
    k.result("w1", c.wall - 0.01, qos=1)
    k.result("w1", c.wall - 0.01)
    k.result("w1", c.wall - 30, qos=1)  # skipping cannot make QoS 1 results come sooner
    assert not k.skipping()
