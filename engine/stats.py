"""Small, bounded counters: rates over a sliding window, latency percentiles (one definition:
nearest rank), and `ResultCounts`, the one tally of results the collector, the console and the bench share."""

from __future__ import annotations

import math
import threading
import time
from collections import deque


class RateMeter:
    """Events per second over the last `window` seconds, in buckets of `bucket` seconds."""

    def __init__(self, window: float = 5.0, bucket: float = 0.25) -> None:
        self._bucket = bucket
        self._n = max(1, int(round(window / bucket)))
        self._counts = [0] * self._n
        self._stamp = [0] * self._n
        self._lock = threading.Lock()
        self._started = time.monotonic()

    def add(self, n: int = 1, now: float | None = None) -> None:
        tick = int((time.monotonic() if now is None else now) / self._bucket)
        slot = tick % self._n
        with self._lock:
            if self._stamp[slot] != tick:
                self._stamp[slot] = tick
                self._counts[slot] = 0
            self._counts[slot] += n

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        tick = int(now / self._bucket)
        with self._lock:
            total = sum(c for c, s in zip(self._counts, self._stamp, strict=True) if tick - s < self._n)
        span = min(self._n * self._bucket, max(now - self._started, self._bucket))
        return total / span


class Window:
    """The last `size` values (latencies, batch sizes) with mean and percentiles."""

    def __init__(self, size: int = 10_000) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, value: float) -> None:
        with self._lock:
            self._values.append(value)

    def extend(self, values: list[float]) -> None:
        with self._lock:
            self._values.extend(values)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()

    def __len__(self) -> int:
        return len(self._values)

    def mean(self) -> float | None:
        with self._lock:
            values = list(self._values)
        return sum(values) / len(values) if values else None

    def percentiles(self, points: tuple[float, ...] = (50, 90, 99)) -> dict[str, float | None]:
        with self._lock:
            values = sorted(self._values)
        out: dict[str, float | None] = {}
        for p in points:
            out[f"p{p:g}"] = percentile(values, p) if values else None
        out["max"] = values[-1] if values else None
        return out


def percentile_rank(n: int, p: float) -> int:
    """The 1-based nearest rank of percentile `p` among `n` values: the smallest value with at least p% of
    the values at or below it (the bench's histogram uses the same rank)."""
    return max(1, min(n, math.ceil(p / 100.0 * n)))


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty list."""
    return sorted_values[percentile_rank(len(sorted_values), p) - 1]


MAX_WORKER_NAMES = 1_000  # per-worker counts kept; results of workers past it count under OTHER_WORKERS
OTHER_WORKERS = "(others)"


class ResultCounts:
    """What a stream of results says: received, labelled, correct, errors, per worker, and the confusion
    matrix (rows = label, columns = prediction). Not thread-safe: the owner holds its own lock."""

    __slots__ = ("received", "labelled", "correct", "errors", "per_worker", "confusion")

    def __init__(self) -> None:
        self.received = 0
        self.labelled = 0
        self.correct = 0
        self.errors = 0  # results that carry an error (a payload the worker could not classify)
        self.per_worker: dict[str, int] = {}
        self.confusion = [[0] * 10 for _ in range(10)]

    def add(self, pred: object, label: object, worker: object = None, error: bool = False) -> None:
        """Count one result. The values may come straight off the broker: a worker name that is not a
        string is not counted per worker, a label or prediction that is not a digit 0-9 only in `labelled`."""
        self.received += 1
        if isinstance(worker, str) and worker:
            per_worker = self.per_worker
            if worker not in per_worker and len(per_worker) >= MAX_WORKER_NAMES:  # names are untrusted
                worker = OTHER_WORKERS
            per_worker[worker] = per_worker.get(worker, 0) + 1
        if error:
            self.errors += 1
        elif label is not None and pred is not None:
            self.labelled += 1
            self.correct += pred == label
            if type(label) is int and type(pred) is int and 0 <= label < 10 and 0 <= pred < 10:
                self.confusion[label][pred] += 1

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None

    def merge(self, other: dict[str, object]) -> None:
        """Add counts made by `to_json` (in this or another process)."""
        for key in ("received", "labelled", "correct", "errors"):
            value = other.get(key, 0)
            setattr(self, key, getattr(self, key) + (value if isinstance(value, int) else 0))
        per_worker = other.get("per_worker")
        if isinstance(per_worker, dict):
            for wid, n in per_worker.items():
                self.per_worker[str(wid)] = self.per_worker.get(str(wid), 0) + int(n)
        confusion = other.get("confusion")
        if isinstance(confusion, list):
            for i, row in enumerate(confusion[:10]):
                for j, n in enumerate(row[:10]):
                    self.confusion[i][j] += int(n)

    def to_json(self) -> dict[str, object]:
        return {"received": self.received, "labelled": self.labelled, "correct": self.correct,
                "errors": self.errors, "per_worker": dict(self.per_worker),
                "confusion": [row[:] for row in self.confusion]}


def rounded(d: dict[str, float | None], scale: float = 1000.0, digits: int = 2) -> dict[str, float | None]:
    """Scale (seconds to ms by default) and round every value of a percentile dict."""
    return {k: (round(v * scale, digits) if v is not None else None) for k, v in d.items()}
