"""How fast an input role at "max" publishes: as fast as the workers it hears keep up with.

A publisher at rate 0 that sends as fast as it can offers a worker several times what it answers on a
small machine; the worker sheds the rest (docs/PERFORMANCE.md, "Under overload"), after the broker and
every other subscriber of the image topic have paid for it. `Pacer` sets the rate from the workers' own
statuses instead (about one a second each, docs/PROTOCOL.md), much as a closed loop (bench at `--rate 0`)
keeps only a window of images unanswered.

Each running worker's status gives how many images it has received and answered (`received`, `processed`:
so its rates between two statuses, by its own clock `ts`), its queue and the longest since its last status
(`queue_peak`, where it says it), the queue's size, and how many it dropped. Workers in one shared-
subscription group share the stream (their rates and queues add up); a worker outside a group gets every
image. Each of those is offered a little more than it answered (5%) while its longest queue is under a
third full, a little less (3%) while it is over (at 10,000 images a second the queue of one moment swings
from empty to full within a second: the longest tells how close it came; with the queue of one moment
aimed at a third it dropped several times as many, docs/PERFORMANCE.md), and a tenth less after it dropped
images; so it is kept busy, its longest queue hovers around a third full, and an image waits at most about
a third of a queue (a queue is about half a second of work by default). Our part of that is our share of
what it received (averaged over a few seconds), so several publishers at "max" together offer it that
much, not each of them; the pacer takes the lowest, and moves halfway to it (the rates, measured a second
apart, move more than the workers do). A worker that keeps up shows only what it is offered, so that alone
would find more room 2.5% a decision: from a start until a queue first reaches a third (or a drop), and
again after three decisions in a row with every queue nearly empty, no drops and the publisher keeping to
its rate, the rate grows by half each decision, but by no more a decision than two thirds of the smallest
queue a second (our share of it): a worker that takes exactly the rate in force then fills at most its
queue before the next decision sees it, where a growth by half at 10,000/s filled a 2,000-image queue in
under half a second and dropped thousands of images each time the rate ramped again.

A worker heard while not running (paused, offline) holds the rate while it says so and for 30 s after;
a group with such a member is left as it is (the broker still gives the member its part of the stream,
which it drops). A running worker that falls silent counts for 5 s. With no worker left (none ever heard,
or workers that publish no status, such as the seed's programs), `rate()` is None and the publisher sends
as fast as it can, as before. A retained status of a worker not yet heard that is not running counts for
nothing (it may be long gone). Statuses are data from the broker: their numbers are checked here, a status
with numbers that make no sense counts as not running, a step of a worker's clock leaves its last rate,
and at most 256 workers are followed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.settings import Settings
from engine.untrusted import clean_number

START = 500.0  # images/s when publishing starts: the workers' queues are empty then, and their rates unknown
FLOOR = 10.0  # never paced below this
CEILING = 100_000.0  # the input role's highest rate
GROW = 1.5  # while every queue is nearly empty
FILL = 1 / 3  # the queue level aimed at, a fraction of queue_max (the longest between two statuses, if known)
IDLE = 0.05  # "nearly empty"
ABOVE = 1.05  # a queue under its aim: offer this much more than was answered
BELOW = 0.97  # over its aim: this much less (its queue drains by 3% of its rate a second)
BACK_OFF = 0.9  # of what a worker that dropped images answered
FORGET = 5.0  # s: a running worker not heard from for this long no longer counts
HOLD = 30.0  # s: a worker heard live but not running (paused, restarting, gone offline) holds the rate this long
SHARE_WEIGHT = 0.25  # of the newest estimate of our share in its running average
CALM = 3  # decisions in a row with every queue nearly empty, no drops, the rate kept: ramp again
STATUS_EVERY = Settings.status_interval  # s: how often a worker sends its status (its default)
MIN_GAP = 0.5  # s between decisions at least
MAX_GAP = 1.5  # s: decide even if some worker's next status is late
MAX_WORKERS = 256  # workers followed at most (statuses under more ids are ignored)

_FIELDS = ("ts", "processed", "received", "dropped", "queue", "queue_max")


@dataclass
class _Worker:
    seen: float  # monotonic time of its last status
    running: bool
    ts: float = 0.0
    processed: float = 0.0
    received: float = 0.0
    dropped: float = 0.0
    queue_max: float = 1.0
    peak: float = 0.0  # the longest queue since its previous status (its `queue` where the status does not say)
    group: str | None = None
    rate: float | None = None  # answered/s between its last two statuses
    received_rate: float | None = None  # images/s it received (ours and any other publisher's) meanwhile
    dropped_mark: float | None = None  # `dropped` at the last decision
    fresh: bool = True  # a status came since the last decision

    def expires(self) -> float:
        return self.seen + (FORGET if self.running else HOLD)


def _counters(status: dict[str, Any]) -> tuple[float, ...] | None:
    """(ts, processed, received, dropped, queue, queue_max) of a running worker's status; None if a value is
    missing or not a sane number."""
    values = [clean_number(status.get(k), 0, 1e15) for k in _FIELDS]
    if any(v is None for v in values):
        return None
    return tuple(float(v or 0) for v in values)


class Pacer:
    """The rate of a publisher at "max". Thread-safe: statuses come on a network thread, `rate()` is read by
    the publishing thread."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._workers: dict[str, _Worker] = {}
        self._shares: dict[str, float] = {}  # per worker or group: our share of the images it receives
        self._until = 0.0  # monotonic time after which no worker counts (then: as fast as possible)
        self._rate = START
        self._ramping = True  # from a start until the first queue at its aim (or a drop): grow by half each time
        self._calm = 0  # decisions in a row that would have let a ramp go on
        self._decided = clock()
        self._sent_mark = 0

    def rate(self) -> float | None:
        """Images/s to publish at, or None: no worker is known, publish as fast as possible."""
        with self._lock:
            return self._rate if self._clock() < self._until else None

    def restart(self, sent: int) -> None:
        """Publishing starts (again): begin low. `sent`: the publisher's count so far."""
        with self._lock:
            self._rate = START
            self._ramping = True
            self._shares.clear()
            self._decided = self._clock()
            self._sent_mark = sent
            for w in self._workers.values():
                w.dropped_mark = w.dropped

    def recount(self, sent: int) -> None:
        """The publisher's count started again (a reset) at `sent`."""
        with self._lock:
            self._sent_mark = sent

    def on_status(self, worker_id: str, status: dict[str, Any] | None, sent: int, running: bool,
                  retained: bool = False) -> None:
        """A worker's status (None: its status was removed); `sent`: the publisher's count so far; `running`:
        whether it is publishing at "max" (decisions are taken only then); `retained`: an old status the
        broker kept (a worker that is not running then counts for nothing: it may be long gone)."""
        now = self._clock()
        with self._lock:
            if status is None or (retained and status.get("state") != "running" and worker_id not in self._workers):
                self._workers.pop(worker_id, None)
            else:
                self._update(worker_id, now, status)
            self._forget(now)
            gap = now - self._decided
            live = [w for w in self._workers.values() if w.running]
            if running and live and gap >= MIN_GAP and (gap >= MAX_GAP or all(w.fresh for w in live)):
                self._decide(now, sent)

    def _forget(self, now: float) -> None:
        for wid in [wid for wid, w in self._workers.items() if now >= w.expires()]:
            del self._workers[wid]
        self._until = max((w.expires() for w in self._workers.values()), default=0.0)

    def _update(self, worker_id: str, now: float, status: dict[str, Any]) -> None:
        w = self._workers.get(worker_id)
        if w is None:
            if len(self._workers) >= MAX_WORKERS:
                return
            w = self._workers[worker_id] = _Worker(now, running=False)
        group = status.get("group")
        group = group if isinstance(group, str) else None
        found = _counters(status) if status.get("state") == "running" else None
        if found is None:  # paused, offline, or numbers that make no sense: it holds the rate
            w.seen, w.running, w.rate, w.received_rate, w.dropped_mark = now, False, None, None, None
            if group is not None:  # a last will names no group: it stays in the one it was in
                w.group = group
            return
        ts, processed, received, dropped, queue, queue_max = found
        # The longest queue since its last status, where the worker says it: the queue at one moment swings
        # from empty to full within a second at thousands of images a second.
        peak = clean_number(status.get("queue_peak"), 0, 1e15)
        w.peak = max(queue, float(peak)) if peak is not None else queue
        gap, wall_gap = ts - w.ts, now - w.seen
        if not w.running or processed < w.processed or received < w.received:
            w.rate = w.received_rate = w.dropped_mark = None  # (re)started: counters from 0, nothing to compare
        elif gap > 0 and abs(gap - wall_gap) <= 0.5 * wall_gap + 0.5:  # else a repeat, or its clock stepped
            w.rate = (processed - w.processed) / gap
            w.received_rate = (received - w.received) / gap
        w.seen, w.running, w.ts, w.processed, w.received, w.dropped = now, True, ts, processed, received, dropped
        w.queue_max, w.fresh, w.group = max(queue_max, 1.0), True, group

    def _decide(self, now: float, sent: int) -> None:
        sent_rate = max(0, sent - self._sent_mark) / max(now - self._decided, 1e-3)
        units: dict[str, list[_Worker]] = {}
        held: set[str] = set()  # groups with a member that is there but not running: it still gets its part
        for wid, w in self._workers.items():
            unit = f"group {w.group}" if w.group else f"worker {wid}"
            if w.running:
                units.setdefault(unit, []).append(w)
            elif w.group:
                held.add(unit)
        for gone in set(self._shares) - set(units):
            del self._shares[gone]
        rates: list[float] = []
        room = CEILING  # images/s of growth the smallest queue (our share of it) absorbs until the next decision
        idle = True
        for unit, members in units.items():
            queue_max = sum(w.queue_max for w in members)
            dropped = any(w.dropped_mark is not None and w.dropped > w.dropped_mark for w in members)
            peak = sum(w.peak for w in members)
            idle = idle and not dropped and peak < IDLE * queue_max
            over = peak > FILL * queue_max
            if dropped or over:
                self._ramping = False
            if unit in held or any(w.rate is None or w.received_rate is None for w in members):
                continue  # a member paused (its images are dropped), or not known yet: a new or restarted worker
            answered = sum(w.rate or 0.0 for w in members)
            received = sum(w.received_rate or 0.0 for w in members)
            if received < 1.0:
                continue  # it gets no images (not ours, at least): it says nothing of our pace
            # only a worker that sets our pace bounds our growth (not one that gets none of our images)
            room = min(room, (1 - FILL) * queue_max * self._shares.get(unit, 1.0) / STATUS_EVERY)
            target = answered * (BACK_OFF if dropped else BELOW if over else ABOVE)
            # Our share of what it takes: what we sent against all it received (other publishers send to
            # it too), so several publishers at "max" together offer the target, not each of them. Our
            # second and its second fall apart by up to a second: the share is averaged over several.
            share = min(1.0, sent_rate / received)
            share = self._shares[unit] = SHARE_WEIGHT * share + (1 - SHARE_WEIGHT) * self._shares.get(unit, 1.0)
            rates.append(share * max(target, 0.0))
        # halfway from the rate in force: measured a second apart, the rates move more than the workers do
        rate = (min(rates) + self._rate) / 2 if rates else self._rate
        calm = idle and sent_rate >= 0.8 * self._rate
        self._calm = self._calm + 1 if calm else 0
        if self._calm >= CALM:  # the workers take all they are offered and wait for more: find out how much
            self._ramping = True
        if self._ramping and calm:
            rate = max(rate, min(self._rate * GROW, self._rate + room))
        self._rate = min(CEILING, max(FLOOR, rate))
        self._decided = now
        self._sent_mark = sent
        for members in units.values():
            for w in members:
                w.dropped_mark = w.dropped
                w.fresh = False
