"""How fast an input role at "max" publishes: as fast as the workers it hears keep up with.

A publisher at rate 0 that sends as fast as it can offers a worker several times what it answers on a
small machine; the worker sheds the rest (docs/PERFORMANCE.md, "Under overload"), after the broker and
every other subscriber of the image topic have paid for it. `Pacer` sets the rate from the workers' own
retained statuses instead (about one a second each, docs/PROTOCOL.md), much as a closed loop (bench at
`--rate 0`) keeps only a window of images unanswered.

Each worker's status gives how many images it has answered (`processed`, so its rate between two
statuses, by its own clock `ts`), its queue and the queue's size, and how many it dropped. Workers in one
shared-subscription group share the stream (their rates and queues add up); a worker outside a group
gets every image. For each of those, the rate that keeps its queue at about a third full is its rate plus
what moves the queue there within two seconds; the pacer takes the lowest. A worker that dropped images
since the last decision is offered a tenth less than it answered, so its queue drains. While every queue
is nearly empty and the publisher kept to its rate, the rate grows by half each decision (a worker that
keeps up shows only what it is offered, not what it could take). So the workers never wait for images
and drop none, and an image waits at most about a third of a queue (a queue is about half a second of
work by default). Several publishers at "max" back off on the same signals and share what the workers take.

Only workers whose last status says "running" count. With none (no worker, or workers that publish no
status, such as the seed's programs), `rate()` is None and the publisher sends as fast as it can, as
before. Statuses are data from the broker: their numbers are checked here, and a status that is not a
running worker's with sane counters takes that worker out.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.untrusted import clean_number

START = 500.0  # images/s when publishing starts: the workers' queues are empty then, and their rates unknown
FLOOR = 10.0  # never paced below this
CEILING = 100_000.0  # the input role's highest rate
GROW = 1.5  # while every queue is nearly empty
FILL = 1 / 3  # the queue level aimed at, a fraction of queue_max
IDLE = 0.05  # "nearly empty"
DRAIN = 2.0  # s: a queue is brought to its aim within about this long
BACK_OFF = 0.9  # of what a worker that dropped images answered
FORGET = 5.0  # s: a worker not heard from for this long no longer counts
MIN_GAP = 0.5  # s between decisions at least
MAX_GAP = 1.5  # s: decide even if some worker's next status is late

_FIELDS = ("ts", "processed", "dropped", "queue", "queue_max")


@dataclass
class _Worker:
    seen: float  # monotonic time of its last status
    ts: float
    processed: float
    dropped: float
    queue: float
    queue_max: float
    group: str | None
    rate: float | None = None  # answered/s between its last two statuses
    dropped_mark: float | None = None  # `dropped` at the last decision
    fresh: bool = True  # a status came since the last decision


def _counters(status: dict[str, Any]) -> tuple[float, float, float, float, float, str | None] | None:
    """(ts, processed, dropped, queue, queue_max, group) of a running worker's status; None if it is not
    running or a value is missing or not a sane number."""
    if status.get("state") != "running":
        return None
    values = [clean_number(status.get(k), 0, 1e15) for k in _FIELDS]
    if any(v is None for v in values):
        return None
    ts, processed, dropped, queue, queue_max = (float(v or 0) for v in values)
    group = status.get("group")
    return ts, processed, dropped, queue, max(queue_max, 1.0), group if isinstance(group, str) else None


class Pacer:
    """The rate of a publisher at "max". Thread-safe: statuses come on a network thread, `rate()` is read by
    the publishing thread."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._workers: dict[str, _Worker] = {}
        self._rate = START
        self._decided = clock()
        self._sent_mark = 0

    def rate(self) -> float | None:
        """Images/s to publish at, or None: no running worker is known, publish as fast as possible."""
        with self._lock:
            return self._rate if self._workers else None

    def restart(self, sent: int) -> None:
        """Publishing starts (again): begin low. `sent`: the publisher's count so far."""
        with self._lock:
            self._rate = START
            self._decided = self._clock()
            self._sent_mark = sent
            for w in self._workers.values():
                w.dropped_mark = w.dropped

    def on_status(self, worker_id: str, status: dict[str, Any] | None, sent: int, running: bool) -> None:
        """A worker's status (None: its status was removed); `sent`: the publisher's count so far; `running`:
        whether it is publishing at "max" (decisions are taken only then)."""
        now = self._clock()
        found = _counters(status) if status is not None else None
        with self._lock:
            if found is None:
                self._workers.pop(worker_id, None)
            else:
                self._update(worker_id, now, *found)
            for wid in [wid for wid, w in self._workers.items() if now - w.seen > FORGET]:
                del self._workers[wid]
            gap = now - self._decided
            if running and self._workers and gap >= MIN_GAP and (
                    gap >= MAX_GAP or all(w.fresh for w in self._workers.values())):
                self._decide(now, sent)

    def _update(self, worker_id: str, now: float, ts: float, processed: float, dropped: float, queue: float,
                queue_max: float, group: str | None) -> None:
        w = self._workers.get(worker_id)
        if w is None:
            self._workers[worker_id] = _Worker(now, ts, processed, dropped, queue, queue_max, group)
            return
        rate = w.rate
        if ts > w.ts and processed >= w.processed:  # else a restarted worker (counters from 0) or a repeat
            rate = (processed - w.processed) / (ts - w.ts)
        elif processed < w.processed:
            rate, w.dropped_mark = None, None
        w.seen, w.ts, w.processed, w.dropped, w.queue, w.queue_max, w.group = (
            now, ts, processed, dropped, queue, queue_max, group)
        w.rate, w.fresh = rate, True

    def _decide(self, now: float, sent: int) -> None:
        sent_rate = max(0, sent - self._sent_mark) / max(now - self._decided, 1e-3)
        units: dict[str, list[_Worker]] = {}
        for wid, w in self._workers.items():
            units.setdefault(f"group {w.group}" if w.group else f"worker {wid}", []).append(w)
        targets: list[float] = []
        idle = True
        for members in units.values():
            queue = sum(w.queue for w in members)
            queue_max = sum(w.queue_max for w in members)
            dropped = any(w.dropped_mark is not None and w.dropped > w.dropped_mark for w in members)
            idle = idle and not dropped and queue < IDLE * queue_max
            rates = [w.rate for w in members]
            if any(r is None for r in rates):
                continue  # not known yet: a new or restarted worker
            answered = sum(r or 0.0 for r in rates)
            targets.append(answered * BACK_OFF if dropped else answered + (FILL * queue_max - queue) / DRAIN)
        rate = min(targets) if targets else self._rate
        if idle and sent_rate >= 0.8 * self._rate:
            rate = max(rate, self._rate * GROW)
        self._rate = min(CEILING, max(FLOOR, rate))
        self._decided = now
        self._sent_mark = sent
        for w in self._workers.values():
            w.dropped_mark = w.dropped
            w.fresh = False
