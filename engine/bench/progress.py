"""The one line the bench keeps on stderr while it runs (only on a terminal, and not with --no-progress)."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.bench.run import Bench


class Progress:
    """One line on stderr while it runs: phase, sent, answered, in flight, answers per second."""

    def __init__(self, bench: Bench, enabled: bool) -> None:
        self.bench = bench
        self.enabled = enabled and sys.stderr.isatty()
        self._name = "starting"
        self._t0 = time.monotonic()
        self._total: float | None = None
        self._count: int | None = None
        self._last = (time.monotonic(), 0)
        self._rate = 0.0
        self._sent0 = 0

    def phase(self, name: str, seconds: float | None, count: int | None) -> None:
        self._name, self._t0, self._total, self._count = name, time.monotonic(), seconds, count
        self._sent0 = self.bench.gen.sent if self.bench.gen is not None else 0
        self.tick()

    def tick(self) -> None:
        if not self.enabled:
            return
        gen = self.bench.live
        now = time.monotonic()
        answered = self.bench.tracker.seen_any
        t_last, a_last = self._last
        if now - t_last >= 0.5:
            self._rate = (answered - a_last) / (now - t_last)
            self._last = (now, answered)
        done = ""
        if self._total:
            done = f" {min(100.0, 100 * (now - self._t0) / self._total):3.0f}%"
        elif self._count:
            done = f" {min(100.0, 100 * (gen.sent - self._sent0) / self._count):3.0f}%"
        line = (f"\r{self._name}{done}  sent {gen.sent:,}  answered {answered:,}  "
                f"in flight {max(0, gen.outstanding()):,}  {self._rate:,.0f}/s ")
        sys.stderr.write(line.ljust(78))
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 78 + "\r")
            sys.stderr.flush()
