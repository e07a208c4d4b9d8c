"""How often the console takes a snapshot and redraws its panes: ten times a second while that is cheap,
fewer (down to two) when it is not.

A refresh at a pipeline's full speed costs the console tens of milliseconds of CPU: the Results pane
scrolls, the Topics pane's counts and the publisher's last image change, and Textual renders every changed
line. Ten of those a second took about 35% of a core, and on a small machine every millisecond the console
spends is one the worker does not get (docs/PERFORMANCE.md, "The console refreshes at its own pace"). So
the wait before the next refresh is the CPU time the console's process used since the last one, divided by
`budget` (the share of one core it may use), held between 1/max_hz and 1/min_hz and smoothed over a few
refreshes. The budget is a share of the machine, 7.5% of its CPUs: 0.15 of a core on two, so a full-speed
pipeline there is shown about three times a second, while on eight cores or more the console keeps its ten.
A quiet pipeline keeps ten everywhere. Keys are not paced at all (Textual handles them as they come); the
CPU they take only stretches the next few waits.

Nothing here imports textual.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

MAX_HZ = 10.0
MIN_HZ = 2.0
MACHINE_SHARE = 0.075  # of all the CPUs the console may run on, for everything its process does


def machine_budget(share: float = MACHINE_SHARE) -> float:
    """`share` of the CPUs this process may run on, in cores (0.15 on two)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    return share * max(1, cpus)


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
    ) -> None:
        if not 0 < min_hz <= max_hz:
            raise ValueError(f"refresh rates must be 0 < min_hz <= max_hz, not {min_hz} and {max_hz}")
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
        self._last: tuple[float, float] | None = None  # (cpu, clock) when the last wait began

    @property
    def hz(self) -> float:
        return 1.0 / self.interval

    def next_interval(self) -> float:
        """Call once per refresh, after it: how long to wait before the next one (seconds)."""
        cpu, now = self._cpu(), self._clock()
        last, self._last = self._last, (cpu, now)
        if last is None or now <= last[1]:
            return self.interval
        wanted = max(0.0, cpu - last[0]) / self.budget  # the period over which that CPU is `budget` of a core
        smoothed = self.interval + SMOOTHING * (wanted - self.interval)
        self.interval = min(self.longest, max(self.shortest, smoothed))
        return self.interval
