"""The console's results: the newest rows, their counts, the result rate and latency percentiles.

Part of the observer (engine/console/observer.py), used under its one lock. Each result is parsed
once (`protocol.parse_result`: a payload that is not a result is counted as malformed, never raised),
counted by `ResultCounts` (the definition the collector and the bench use too) and kept as a
`ResultRow` among the newest `max_results`. Latency is measured from the send time in the image's
metadata; its percentiles (over the newest 2,048) and the rate are refreshed about once a second. At
thousands a second most results are only counted (`count_only`, engine/console/sampling.py): they are in
the count and the rate, and everything else is of the decoded ones.
"""

from __future__ import annotations

import itertools
from collections import deque

from engine.console.snapshot import ResultRow, ResultStats
from engine.protocol import Result, parse_result
from engine.stats import ResultCounts, percentile

LATENCY_WINDOW = 2048  # the newest latencies the percentiles are taken over


def drawing_prefix(client_id: str) -> str:
    """The ids of the images a console draws (tui/draw/draw_dialog.py) begin so: `<client id>-draw-N`."""
    return f"{client_id}-draw-"


class ResultLog:
    def __init__(self, max_results: int, drawn_prefix: str | None = None) -> None:
        """`drawn_prefix`: results of images whose id begins so are this console's drawings, counted apart too
        (`ResultStats.drawn`): no publisher sent them, so the Publisher's `sent` does not count them."""
        self._drawn_prefix = drawn_prefix
        self._rows: deque[ResultRow] = deque(maxlen=max_results)
        self.seq = 0  # results seen so far (a row's seq); not reset by clear()
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._all = 0  # results counted so far, decoded or not (the rate); not reset by clear()
        self._mark = 0
        self._reset_stats()

    def _reset_stats(self) -> None:
        self._counts = ResultCounts()
        self._malformed = 0
        self._counted_only = 0  # results counted but not decoded (sampling.py)
        self._drawn = 0  # results of this console's drawings (always decoded: sampling.py)
        self._rate = 0.0
        self._p50: float | None = None
        self._p99: float | None = None

    def add(self, payload: bytes, now: float, arrived_after: float | None = None) -> Result | None:
        """Count and keep one result; it is returned (None: malformed, counted as such).

        `arrived_after`: the result was read `now` but came after that time (it waited out the reader's
        pause): it is taken to have come when the worker says it sent it, within those bounds, so that the
        latency shown is the pipeline's and not the reader's pause.
        """
        try:
            r = parse_result(payload)
        except ValueError:
            self._malformed += 1
            return None
        if arrived_after is not None and r.t_done is not None:
            now = min(now, max(arrived_after, r.t_done))
        self.seq += 1
        self._all += 1
        latency = (now - r.t_sent) * 1000.0 if r.t_sent is not None else None
        if latency is not None:
            latency = max(0.0, latency)
            self._latencies.append(latency)
        probs = tuple(r.probs) if r.probs is not None else None
        self._rows.append(ResultRow(
            self.seq, now, r.id, r.pred, r.label, r.conf, latency, r.worker, r.error, probs, r.model, r.legacy,
        ))
        self._counts.add(r.pred, r.label, r.worker, r.error is not None)
        if self._drawn_prefix is not None and r.id is not None and r.id.startswith(self._drawn_prefix):
            self._drawn += 1
        return r

    def count_only(self) -> None:
        """A result that was counted but not decoded (sampling.py): in the count and the rate only."""
        self._counted_only += 1
        self._all += 1

    def rows(self, results: int | None = None, results_after: int | None = None) -> tuple[ResultRow, ...]:
        """The newest `results` rows (all when None), only those with a seq above `results_after`."""
        if results_after is not None:
            fresh = max(0, self.seq - results_after)
            results = fresh if results is None else min(results, fresh)
        if results is None or results >= len(self._rows):
            return tuple(self._rows)
        if results <= 0:
            return ()
        return tuple(itertools.islice(self._rows, len(self._rows) - results, None))

    def stats(self) -> ResultStats:
        c = self._counts
        return ResultStats(c.received + self._counted_only, c.labelled, c.correct, c.errors, self._malformed,
                           self._rate, self._p50, self._p99, tuple(tuple(r) for r in c.confusion),
                           self._counted_only, self._drawn)

    def update_rates(self, dt: float) -> None:
        """`dt` seconds since the last call: the result rate over them, and the latency percentiles."""
        self._rate = (self._all - self._mark) / dt
        self._mark = self._all
        if self._latencies:
            values = sorted(self._latencies)
            self._p50 = percentile(values, 50)
            self._p99 = percentile(values, 99)

    def clear(self) -> None:
        """Forget the rows, counts and latencies (seq numbers go on)."""
        self._rows.clear()
        self._latencies.clear()
        self._reset_stats()
