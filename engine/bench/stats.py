"""What the benchmark counts, in bounded memory: answered ids as a bitmap, latencies as a histogram.

A million images cost one byte each in the bitmap and nothing in the histogram (about 2,100 buckets
of 1% width from 1 us to 1,000 s), so a long run measures without growing.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any

from engine.stats import ResultCounts, percentile_rank

_LOW = 1e-6  # seconds: the smallest latency told apart
_GROWTH = 1.01  # each bucket is 1% wider than the one before
_LOG_GROWTH = math.log(_GROWTH)
_BUCKETS = int(math.log(1000.0 / _LOW) / _LOG_GROWTH) + 2
PARTS = ("to_worker", "in_worker", "to_collector")


class LatencyHistogram:
    """Latency percentiles within 1%, exact max and mean, constant memory."""

    def __init__(self) -> None:
        self.counts = [0] * _BUCKETS
        self.n = 0
        self.total = 0.0
        self.max = 0.0
        self.min = math.inf

    def add(self, seconds: float) -> None:
        index = 0 if seconds < _LOW else min(_BUCKETS - 1, int(math.log(seconds / _LOW) / _LOG_GROWTH) + 1)
        self.counts[index] += 1
        self.n += 1
        self.total += seconds
        if seconds > self.max:
            self.max = seconds
        if seconds < self.min:
            self.min = seconds

    def percentile(self, p: float) -> float | None:
        """Nearest-rank percentile: the upper edge of the bucket holding it, never above the max."""
        if not self.n:
            return None
        rank = percentile_rank(self.n, p)
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                edge = _LOW * _GROWTH**index
                return min(max(edge, self.min), self.max)
        return self.max

    def to_json(self) -> dict[str, Any]:
        return {"counts": {i: c for i, c in enumerate(self.counts) if c}, "n": self.n, "total": self.total,
                "max": self.max, "min": self.min if self.n else None}

    def merge(self, other: dict[str, Any]) -> None:
        """Add a histogram made by `to_json` (in this or another process)."""
        for index, count in other.get("counts", {}).items():
            self.counts[int(index)] += int(count)
        self.n += int(other.get("n", 0))
        self.total += float(other.get("total", 0.0))
        self.max = max(self.max, float(other.get("max", 0.0)))
        if other.get("min") is not None:
            self.min = min(self.min, float(other["min"]))

    def summary_ms(self) -> dict[str, float | None]:
        def ms(v: float | None) -> float | None:
            return None if v is None else round(v * 1000.0, 3)

        return {
            "p50": ms(self.percentile(50)),
            "p90": ms(self.percentile(90)),
            "p99": ms(self.percentile(99)),
            "max": ms(self.max if self.n else None),
            "mean": ms(self.total / self.n if self.n else None),
        }


@dataclass
class Tally:
    """Results of the measured images (sequence numbers >= first_seq) as the collector saw them."""

    first_seq: int = 0
    duplicates: int = 0
    counts: ResultCounts = field(default_factory=ResultCounts)  # the same counts as the collector's
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    # the latency in three parts, from the times a worker's result carries (t_recv, t_done): sent to taken by
    # the worker (the broker's queue and the network), in the worker (its queue, decode, infer), done to
    # collected (publishing the result, the broker, the collector); on one machine's clock
    parts: dict[str, LatencyHistogram] = field(default_factory=lambda: {
        name: LatencyHistogram() for name in PARTS})
    first_answer: float | None = None
    last_answer: float | None = None
    # answers that arrived within the measured window (ResultTracker.start_measuring's `until`), whenever their
    # image was sent: the rate the workers answer at while the load lasts (goodput under overload)
    in_window: int = 0


class ResultTracker:
    """Counts each image once by its sequence number: answered, duplicated, latency, per worker.

    Images with a sequence number below `first_seq` are warm-up: they count for flow control
    (`seen_any`) but not in the report. Thread-safe; `record` is called on paho's network thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen = bytearray()
        self.tally = Tally()
        self.seen_any = 0  # unique answers, warm-up included (for the in-flight window)
        self.foreign = 0  # results for images this run did not send
        self.since: float | None = None
        self.until: float | None = None

    def start_measuring(self, first_seq: int, since: float | None = None, until: float | None = None) -> None:
        """Count images from sequence number `first_seq` on; with `since` (a wall-clock time), also only
        those sent from then on (for the images of other generator processes, whose numbers it does not know).
        With `until` too, count in `in_window` every answer that arrives from `since` to `until`, warm-up images'
        included: under overload a worker's queue holds up to a second of warm-up images as the window opens,
        and answers those first."""
        with self._lock:
            self.tally = Tally(first_seq=first_seq)
            self.since = since
            self.until = until

    def record(self, seq: int, now: float, t_sent: float | None, worker: str | None, error: bool,
               pred: Any = None, label: Any = None, t_recv: Any = None, t_done: Any = None) -> None:
        with self._lock:
            seen = self._seen
            if seq >= len(seen):
                seen.extend(bytes(max(seq + 1 - len(seen), 65536)))
            tally = self.tally
            duplicate = seen[seq] != 0
            if not duplicate:
                seen[seq] = 1
                self.seen_any += 1
                if self.until is not None and self.since is not None and self.since <= now < self.until:
                    tally.in_window += 1
            if seq < tally.first_seq or (self.since is not None and (t_sent is None or t_sent < self.since)):
                return
            if duplicate:
                tally.duplicates += 1
                return
            if tally.first_answer is None:
                tally.first_answer = now
            tally.last_answer = now
            tally.counts.add(pred, label, worker, error)
            if t_sent is not None:
                tally.latency.add(max(0.0, now - t_sent))
                if isinstance(t_recv, (int, float)) and isinstance(t_done, (int, float)):
                    parts = tally.parts
                    parts["to_worker"].add(max(0.0, t_recv - t_sent))
                    parts["in_worker"].add(max(0.0, t_done - t_recv))
                    parts["to_collector"].add(max(0.0, now - t_done))

    def to_json(self) -> dict[str, Any]:
        """The tally, to merge in another process (`merge`)."""
        with self._lock:
            t = self.tally
            return {
                "counts": t.counts.to_json(), "duplicates": t.duplicates, "in_window": t.in_window,
                "first_answer": t.first_answer,
                "last_answer": t.last_answer, "latency": t.latency.to_json(),
                "parts": {name: h.to_json() for name, h in t.parts.items()},
            }

    def merge(self, other: dict[str, Any]) -> None:
        """Add a tally made by `to_json` (in this or another process) to this one's."""
        with self._lock:
            t = self.tally
            t.duplicates += int(other.get("duplicates", 0))
            t.in_window += int(other.get("in_window", 0))
            t.counts.merge(other.get("counts", {}))
            for key, pick in (("first_answer", min), ("last_answer", max)):
                theirs = other.get(key)
                if theirs is not None:
                    mine = getattr(t, key)
                    setattr(t, key, theirs if mine is None else pick(mine, theirs))
            t.latency.merge(other.get("latency", {}))
            for name, theirs in other.get("parts", {}).items():
                if name in t.parts:
                    t.parts[name].merge(theirs)

    def snapshot(self) -> tuple[int, int]:
        """(answered, duplicates) of the measured images."""
        with self._lock:
            return self.tally.counts.received, self.tally.duplicates
