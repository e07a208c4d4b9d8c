"""Small, bounded, thread-safe counters: rates over a sliding window and latency percentiles."""

from __future__ import annotations

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


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty list."""
    k = max(0, min(len(sorted_values) - 1, int(round(p / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def rounded(d: dict[str, float | None], scale: float = 1000.0, digits: int = 2) -> dict[str, float | None]:
    """Scale (seconds to ms by default) and round every value of a percentile dict."""
    return {k: (round(v * scale, digits) if v is not None else None) for k, v in d.items()}
