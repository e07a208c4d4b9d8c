"""How often the console takes a snapshot and redraws its panes: ten times a second while that is cheap or
the machine has CPU to spare, fewer (down to two) when neither holds.

A refresh at a pipeline's full speed costs the console tens of milliseconds of CPU: the Results pane
scrolls, the Topics pane's counts and the publisher's last image change, and Textual renders every changed
line. Ten of those a second took about 35% of a core, and on a machine whose CPUs are all busy every
millisecond the console spends is one the worker does not get (docs/PERFORMANCE.md, "The console refreshes
at its own pace"). So the wait before the next refresh is the CPU time the console's process used since the
last one, divided by what it may use: a budget of 7.5% of the CPUs it may run on (0.15 of a core on two),
plus what those CPUs left idle over that period beyond a tenth of a core (Linux's /proc/stat). The wait is
held between 1/max_hz and 1/min_hz and smoothed over a few refreshes. CPU the console spends whatever its
pace (the observer's updates arrive ten times a second) is counted too, so where that alone nears the
budget the pace stays at its slowest.

So a quiet pipeline, or a moderate one that leaves a core idle, is shown ten times a second, and so is any
pipeline on a machine of eight cores or more; only when the pipeline takes every CPU does the console step
back, to about three refreshes a second on two cores at full speed. Keys are not paced at all (Textual
handles them as they come); the CPU they take only stretches the next few waits.

Nothing here imports textual.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import partial

MAX_HZ = 10.0
MIN_HZ = 2.0
MACHINE_SHARE = 0.075  # of all the CPUs the console may run on, for everything its process does
SPARE_KEPT = 0.1  # cores of the machine's idle time the console leaves alone: no machine is ever quite full


def _allowed_cpus() -> set[int] | None:
    """The CPUs this process may run on; None where that is not known (not Linux)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def machine_budget(share: float = MACHINE_SHARE) -> float:
    """`share` of the CPUs this process may run on, in cores (0.15 on two)."""
    cpus = _allowed_cpus()
    return share * max(1, len(cpus) if cpus is not None else os.cpu_count() or 1)


def _clock_ticks() -> int:
    try:
        return os.sysconf("SC_CLK_TCK")
    except (AttributeError, ValueError, OSError):
        return 100


CLOCK_TICKS = _clock_ticks()


def machine_idle(cpus: set[int] | None = None) -> float | None:
    """Idle CPU time so far (seconds) of the CPUs in `cpus` (default: those this process may run on), all
    together, from /proc/stat; None where unknown. A console pinned to two cores of many sees those two."""
    cpus = _allowed_cpus() if cpus is None else cpus
    try:
        with open("/proc/stat", "rb") as stat:  # the cpu lines come first; what follows is not read
            fields = stat.readline().split()  # every CPU
            if cpus is None:
                return (int(fields[4]) + int(fields[5])) / CLOCK_TICKS  # idle + iowait
            ticks = 0
            for line in stat:
                if not line.startswith(b"cpu"):
                    break
                fields = line.split()
                if int(fields[0][3:]) in cpus:
                    ticks += int(fields[4]) + int(fields[5])
            return ticks / CLOCK_TICKS
    except (OSError, ValueError, IndexError):
        return None


SMOOTHING = 0.5  # weight of the newest period in the wait: a single slow refresh (a key) moves it halfway


class RefreshPace:
    """The wait before each refresh, from the CPU the process used over the period before it."""

    def __init__(
        self,
        max_hz: float = MAX_HZ,
        min_hz: float = MIN_HZ,
        budget: float | None = None,  # cores; None: machine_budget()
        cpu: Callable[[], float] = time.process_time,
        clock: Callable[[], float] = time.monotonic,
        idle: Callable[[], float | None] | None = None,  # None: machine_idle() of the CPUs allowed now
    ) -> None:
        min_hz = min(min_hz, max_hz)  # a console asked for fewer refreshes than the least gets those
        if min_hz <= 0:
            raise ValueError(f"refresh rates must be above 0, not {min_hz}")
        if budget is None:
            budget = machine_budget()
        if budget <= 0:
            raise ValueError(f"the CPU budget must be above 0, not {budget}")
        self.shortest = 1.0 / max_hz
        self.longest = 1.0 / min_hz
        self.budget = budget
        self.interval = self.shortest
        self._cpu = cpu
        self._clock = clock
        self._idle = idle if idle is not None else partial(machine_idle, _allowed_cpus())
        self._last: tuple[float, float, float | None] | None = None  # (cpu, clock, idle) when the last wait began

    @property
    def hz(self) -> float:
        return 1.0 / self.interval

    def next_interval(self) -> float:
        """Call once per refresh, after it: how long to wait before the next one (seconds)."""
        cpu, now, idle = self._cpu(), self._clock(), self._idle()
        last, self._last = self._last, (cpu, now, idle)
        if last is None or now <= last[1]:
            return self.interval
        allowed = self.budget  # cores
        if idle is not None and last[2] is not None:
            allowed += max(0.0, (idle - last[2]) / (now - last[1]) - SPARE_KEPT)
        wanted = max(0.0, cpu - last[0]) / allowed  # the period over which that CPU is what it may use
        smoothed = self.interval + SMOOTHING * (wanted - self.interval)
        self.interval = min(self.longest, max(self.shortest, smoothed))
        return self.interval
