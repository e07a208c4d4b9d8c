"""Keeping the console's view current: when results reach the observer late, it skips ahead.

An observer that takes fewer messages a second than the pipeline makes falls behind: the broker queues
the rest for it (up to `max_queued_messages`, 100,000 in our mosquitto.conf) and the console shows
results many seconds old, however fast the pipeline itself is. `KeepUp` measures how late each result
reaches the observer (its arrival against the worker's `t_done`), relative to the least lateness seen
from the same worker over the last 10-20 s, so a worker whose clock differs from ours does not look
late, and a clock that steps (or one forged result) is forgotten within 20 s. When `run` results
in a row come more than `late` seconds late (a backlog, not a moment's stall at a low rate), it asks
the observer's client to skip what waits for it in short bursts (`FastClient.shed_when`: whole QoS 0
PUBLISH packets dropped by their length, about 1 us each). Statuses
and replies travel at QoS 1 and are never skipped; QoS 1 results are not either, nor measured (the view
then lags, as the broker holds them). The client counts what it skipped, and the console says so.

Nothing here imports textual; used on the observer's network thread only.
"""

from __future__ import annotations

import time
from collections.abc import Callable

LATE = 1.0  # seconds behind (beyond a worker's usual) from which the view skips ahead
RUN = 200  # ...once this many results in a row came that late: at the 500 a second decoded at most, 0.4 s
BURST = 0.05  # seconds of skipping per late result: the next result decoded after it measures again
MAX_WORKERS = 256  # workers whose usual lateness is remembered (more: the others are not measured)
WINDOW = 10.0  # seconds: a worker's usual lateness is the least of this window and the one before


class KeepUp:
    def __init__(self, late: float = LATE, run: int = RUN, burst: float = BURST, window: float = WINDOW,
                 wall: Callable[[], float] = time.time, clock: Callable[[], float] = time.monotonic) -> None:
        self.late = late
        self.run = run
        self.burst = burst
        self.window = window
        self._late_run = 0  # results in a row that came late
        self._wall = wall
        self._clock = clock
        # per worker: [window start (monotonic), least lateness in this window, least in the one before]
        self._usual: dict[str, list[float]] = {}
        self._until = 0.0  # skip until this monotonic time

    def result(self, worker: str | None, t_done: float | None, qos: int = 0) -> None:
        """A result from `worker`, finished at `t_done` (its wall clock), has just arrived at `qos`."""
        if worker is None or t_done is None or qos:
            return
        lateness = self._wall() - t_done
        now = self._clock()
        usual = self._usual.get(worker)
        if usual is None:
            if len(self._usual) < MAX_WORKERS:
                self._usual[worker] = [now, lateness, lateness]
            return
        if now - usual[0] > self.window:
            usual[0], usual[2], usual[1] = now, usual[1], lateness
        elif lateness < usual[1]:
            usual[1] = lateness
        if lateness - min(usual[1], usual[2]) <= self.late:
            self._late_run = 0
            return
        self._late_run += 1
        if self._late_run >= self.run:
            self._until = now + self.burst

    def skipping(self) -> bool:
        """Asked by the client before each packet it reads: True while the view should skip ahead."""
        return self._clock() < self._until

    def forget(self) -> None:
        """A new connection: the workers' usual lateness is measured again."""
        self._usual.clear()
        self._until = 0.0
        self._late_run = 0
