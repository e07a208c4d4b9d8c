"""CPU and resident memory of the processes a benchmark involves (psutil)."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import psutil

_MB = 1024.0 * 1024.0


class _Tracked:
    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.cpu0: float | None = None
        self.cpu1: float | None = None
        self.t0 = self.t1 = 0.0
        self.rss0: int | None = None
        self.rss1: int | None = None
        self.peak = 0

    def _read(self) -> tuple[float, int] | None:
        try:
            with self.proc.oneshot():
                cpu = self.proc.cpu_times()
                rss = self.proc.memory_info().rss
        except (psutil.Error, OSError):
            return None
        return cpu.user + cpu.system, rss

    def start(self) -> None:
        got = self._read()
        if got is not None:
            self.cpu0, self.rss0 = got
            self.t0 = time.monotonic()
            self.peak = max(self.peak, self.rss0)

    def sample(self) -> None:
        got = self._read()
        if got is not None:
            self.cpu1, self.rss1 = got
            self.t1 = time.monotonic()
            self.peak = max(self.peak, self.rss1)

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {"pid": self.proc.pid}
        if self.cpu0 is not None and self.cpu1 is not None and self.t1 > self.t0:
            out["cpu_percent"] = round(100.0 * (self.cpu1 - self.cpu0) / (self.t1 - self.t0), 1)
            out["cpu_seconds"] = round(self.cpu1 - self.cpu0, 3)
        if self.rss0 is not None:
            out["rss_mb_start"] = round(self.rss0 / _MB, 1)
        if self.rss1 is not None:
            out["rss_mb_end"] = round(self.rss1 / _MB, 1)
        if self.peak:
            out["rss_mb_peak"] = round(self.peak / _MB, 1)
        return out


class ProcessSampler:
    """CPU share over the measured phase and RSS at its start, its end and at the peak.

    `sample()` is cheap enough to call a few times a second; it reads /proc, nothing more.
    """

    def __init__(self, workers: dict[str, int], bench_pid: int | None = None, broker_pid: int | None = None):
        self._workers: dict[str, _Tracked] = {}
        self._others: dict[str, _Tracked] = {}
        for name, pid in workers.items():
            self._add(self._workers, name, pid)
        if bench_pid is not None:
            self._add(self._others, "bench process (generator + collector)", bench_pid)
        if broker_pid is not None:
            self._add(self._others, "broker process", broker_pid)
        self._last = 0.0

    def add_others(self, processes: dict[str, int]) -> None:
        """Measure these processes too (by name: pid), before `start`."""
        for name, pid in processes.items():
            self._add(self._others, name, pid)

    @staticmethod
    def _add(into: dict[str, _Tracked], name: str, pid: int) -> None:
        with contextlib.suppress(psutil.Error, OSError):
            into[name] = _Tracked(pid)

    def _all(self) -> list[_Tracked]:
        return [*self._workers.values(), *self._others.values()]

    def start(self) -> None:
        for t in self._all():
            t.start()

    def sample(self, min_interval: float = 0.5) -> None:
        now = time.monotonic()
        if now - self._last < min_interval:
            return
        self._last = now
        for t in self._all():
            t.sample()

    def stop(self) -> None:
        for t in self._all():
            t.sample()

    def report(self, worker: str) -> dict[str, Any]:
        tracked = self._workers.get(worker)
        return tracked.report() if tracked is not None else {}

    def report_others(self) -> dict[str, Any]:
        return {name: t.report() for name, t in self._others.items()}
