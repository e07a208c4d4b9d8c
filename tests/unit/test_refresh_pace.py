"""The console's refresh pace: ten a second while refreshes are cheap, fewer (down to four) when they are not."""

from __future__ import annotations

import os

import pytest

from tui.refresh_pace import RefreshPace, machine_budget, machine_idle


class Clocks:
    """A process CPU clock, a wall clock and the machine's idle time, moved by hand."""

    def __init__(self) -> None:
        self.cpu = 0.0
        self.wall = 100.0
        self.idle = 5000.0
        self.idle_cores = 0.0  # what the machine leaves idle: none, unless a test says otherwise

    def period(self, wait: float, cpu_used: float) -> None:
        self.wall += wait
        self.cpu += cpu_used
        self.idle += self.idle_cores * wait


def paced(budget: float = 0.15, idle_known: bool = True) -> tuple[RefreshPace, Clocks]:
    clocks = Clocks()
    pace = RefreshPace(max_hz=10, min_hz=4, budget=budget, cpu=lambda: clocks.cpu, clock=lambda: clocks.wall,
                       idle=(lambda: clocks.idle) if idle_known else (lambda: None))
    return pace, clocks


def run(pace: RefreshPace, clocks: Clocks, cpu_per_refresh: float, refreshes: int) -> list[float]:
    waits = []
    wait = pace.next_interval()
    for _ in range(refreshes):
        clocks.period(wait, cpu_per_refresh)
        wait = pace.next_interval()
        waits.append(wait)
    return waits


def test_cheap_refreshes_keep_ten_a_second() -> None:
    pace, clocks = paced()
    waits = run(pace, clocks, cpu_per_refresh=0.005, refreshes=50)  # 5 ms each: 5% of a core at 10 Hz
    assert waits == [pytest.approx(0.1)] * 50
    assert pace.hz == pytest.approx(10)


def test_expensive_refreshes_stretch_the_wait_until_the_budget_is_kept() -> None:
    pace, clocks = paced(budget=0.15)
    waits = run(pace, clocks, cpu_per_refresh=0.03, refreshes=40)  # 30 ms each: 30% of a core at 10 Hz
    assert waits[0] > 0.1
    assert waits[-1] == pytest.approx(0.2, rel=0.01)  # 30 ms every 0.2 s: 15% of a core
    assert all(a <= b + 1e-9 for a, b in zip(waits, waits[1:], strict=False))  # no swinging back and forth


def test_a_machine_with_a_core_to_spare_keeps_ten_a_second_however_expensive() -> None:
    pace, clocks = paced(budget=0.15)
    clocks.idle_cores = 1.0  # a moderate pipeline on two cores
    waits = run(pace, clocks, cpu_per_refresh=0.04, refreshes=30)  # 40 ms each: 40% of a core at 10 Hz
    assert waits == [pytest.approx(0.1)] * 30


def test_some_idle_time_buys_some_refreshes_and_a_tenth_of_a_core_of_it_is_left_alone() -> None:
    pace, clocks = paced(budget=0.15)
    clocks.idle_cores = 0.1  # a machine at full speed is never quite full
    waits = run(pace, clocks, cpu_per_refresh=0.03, refreshes=40)
    assert waits[-1] == pytest.approx(0.03 / 0.15, rel=0.01)  # as if nothing were idle
    pace, clocks = paced(budget=0.15)
    clocks.idle_cores = 0.35
    waits = run(pace, clocks, cpu_per_refresh=0.06, refreshes=40)
    assert waits[-1] == pytest.approx(0.06 / (0.15 + 0.25), rel=0.01)


def test_where_the_idle_time_is_unknown_the_budget_alone_counts() -> None:
    pace, clocks = paced(budget=0.15, idle_known=False)
    clocks.idle_cores = 1.0
    waits = run(pace, clocks, cpu_per_refresh=0.03, refreshes=40)
    assert waits[-1] == pytest.approx(0.2, rel=0.01)


def test_the_machines_idle_time_is_read_where_there_is_one() -> None:
    first = machine_idle()
    if first is None:
        pytest.skip("no /proc/stat here")
    assert first > 0
    assert machine_idle() >= first  # type: ignore[operator]


def test_the_wait_never_goes_past_the_slowest_rate() -> None:
    pace, clocks = paced()
    waits = run(pace, clocks, cpu_per_refresh=0.2, refreshes=20)
    assert max(waits) == pytest.approx(0.25)
    assert waits[-1] == pytest.approx(0.25)


def test_when_the_flow_calms_down_ten_a_second_come_back() -> None:
    pace, clocks = paced()
    run(pace, clocks, cpu_per_refresh=0.1, refreshes=20)
    assert pace.interval == pytest.approx(0.25)
    waits = run(pace, clocks, cpu_per_refresh=0.004, refreshes=10)
    assert waits[-1] == pytest.approx(0.1)


def test_one_expensive_moment_moves_the_wait_only_for_a_few_refreshes() -> None:
    pace, clocks = paced()
    run(pace, clocks, cpu_per_refresh=0.004, refreshes=5)
    clocks.period(0.1, 0.15)  # a key that built a screen: 150 ms of CPU in one period
    after_key = pace.next_interval()
    assert after_key == pytest.approx(0.25)  # halfway from 0.1 to the 1 s that CPU asks for, then held at 0.25
    clocks.period(after_key, 0.02)
    assert pace.next_interval() == pytest.approx((0.25 + 0.02 / 0.15) / 2)  # halfway back towards 0.133
    waits = run(pace, clocks, cpu_per_refresh=0.004, refreshes=8)
    assert waits[-1] == pytest.approx(0.1)


def test_the_cpu_of_the_period_is_what_counts_not_the_time_a_timer_fired_late() -> None:
    pace, clocks = paced()
    pace.next_interval()
    clocks.period(1.0, 0.01)  # the event loop was held up: 1 s went by, with 10 ms of CPU for the refresh
    assert pace.next_interval() == pytest.approx(0.1)


def test_the_budget_is_a_share_of_the_cpus_the_console_may_use() -> None:
    cpus = len(os.sched_getaffinity(0))
    assert machine_budget(0.075) == pytest.approx(0.075 * cpus)
    assert RefreshPace().budget == pytest.approx(machine_budget())
    assert RefreshPace().longest == pytest.approx(0.5)  # two a second at the least


def test_the_idle_time_is_that_of_the_cpus_given() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    every, first = machine_idle(set(cpus)), machine_idle({cpus[0]})
    if every is None or first is None:
        pytest.skip("no /proc/stat here")
    assert 0 < first <= every
    assert machine_idle(set()) == 0.0


def test_fewer_refreshes_asked_for_than_the_least_are_what_the_console_gets() -> None:
    pace = RefreshPace(max_hz=1)
    assert pace.shortest == pace.longest == pytest.approx(1.0)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="above 0"):
        RefreshPace(max_hz=0)
    with pytest.raises(ValueError, match="budget"):
        RefreshPace(budget=0)
