"""One ResultCounts: the collector, the console's observer and the bench count the same results alike."""

from __future__ import annotations

import json

import pytest

from engine.bench.stats import ResultTracker
from engine.console.observer import Observer
from engine.mqtt.address import BrokerAddress
from engine.protocol import parse_result
from engine.roles.collector import Collector
from engine.stats import MAX_WORKER_NAMES, OTHER_WORKERS, ResultCounts, percentile

NOW = 1_000_000.0


def _results() -> list[dict[str, object]]:
    """Labelled right and wrong, unlabelled, errors, two workers; latencies 1..40 ms."""
    out: list[dict[str, object]] = []
    for i in range(40):
        r: dict[str, object] = {"id": f"img-{i}", "worker": f"w{i % 2}", "t_sent": NOW - (i + 1) / 1000.0}
        if i % 10 == 9:
            r["error"] = "not a PNG"
        else:
            r["pred"] = i % 10
            r["conf"] = 0.9
            if i % 4:
                r["label"] = (i % 10) if i % 3 else (i + 1) % 10
        out.append(r)
    return out


def test_collector_observer_and_bench_agree_on_the_same_results() -> None:
    payloads = [json.dumps(r).encode() for r in _results()]
    collector = Collector(BrokerAddress.parse("mqtt://127.0.0.1:1"))
    observer = Observer(BrokerAddress.parse("mqtt://127.0.0.1:1"), clock=lambda: NOW)
    tracker = ResultTracker()
    for seq, payload in enumerate(payloads):
        collector.add(parse_result(payload), NOW)
        observer.ingest("result", payload)
        obj = json.loads(payload)
        tracker.record(seq, NOW, obj["t_sent"], obj.get("worker"), "error" in obj, obj.get("pred"), obj.get("label"))

    c = collector.counts
    stats = observer.snapshot(topics=False).stats
    t = tracker.tally.counts
    assert c.received == stats.received == t.received == 40
    assert c.errors == stats.errors == t.errors == 4
    assert c.labelled == stats.labelled == t.labelled > 0
    assert c.correct == stats.correct == t.correct
    assert 0 < c.correct < c.labelled  # some right, some wrong: the comparison means something
    assert [list(r) for r in stats.confusion] == c.confusion == t.confusion
    assert c.per_worker == t.per_worker == {"w0": 20, "w1": 20}
    assert tracker.tally.counts.per_worker == c.per_worker

    # one percentile definition: the collector's window, the observer and the bench's histogram (1% buckets)
    collector_ms = collector.status_fields()["lat_ms"]
    bench_ms = tracker.tally.latency.summary_ms()
    later = Observer(BrokerAddress.parse("mqtt://127.0.0.1:1"), clock=iter([NOW] + [NOW + 2.0] * 100).__next__)
    for payload in payloads:
        later.ingest("result", payload)
    later_stats = later.snapshot(topics=False).stats
    for p, got in (("p50", later_stats.lat_p50), ("p99", later_stats.lat_p99)):
        want = collector_ms[p]
        assert got is not None and want is not None and bench_ms[p] is not None
        # the observer measures from its own clock: NOW + 2 s later, the same ranks 2,000 ms further
        assert got - 2000.0 == pytest.approx(want, abs=0.01)
        assert bench_ms[p] == pytest.approx(want, rel=0.011)


def test_percentile_is_nearest_rank() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert [percentile(values, p) for p in (0, 25, 50, 51, 75, 99, 100)] == [1.0, 1.0, 2.0, 3.0, 3.0, 4.0, 4.0]
    assert percentile([5.0, 6.0], 50) == 5.0  # the rank rounding once gave 6.0 here


def test_counts_take_untrusted_values_without_failing() -> None:
    counts = ResultCounts()
    counts.add("7", 7, worker=["not", "a", "name"])
    counts.add(3, True, worker={"w": 1})
    counts.add(12, 12, worker="w")
    assert counts.received == 3 and counts.per_worker == {"w": 1}
    assert sum(map(sum, counts.confusion)) == 0
    for i in range(MAX_WORKER_NAMES + 5):
        counts.add(None, None, worker=f"x{i}")
    assert len(counts.per_worker) == MAX_WORKER_NAMES + 1 and counts.per_worker[OTHER_WORKERS] >= 5


def test_goodput_counts_every_answer_that_arrives_within_the_window() -> None:
    """Under overload a worker's queue holds warm-up images as the measured window opens: their answers
    arriving within it count for the window's rate (`in_window`), not for the measured images' tally;
    an answer after the window, a duplicate, or one before it counts for no rate."""
    since, until = NOW, NOW + 8.0
    tracker = ResultTracker()
    tracker.start_measuring(0, since, until)
    tracker.record(0, since - 0.5, since - 1.5, "w0", False)  # answered before the window: neither
    tracker.record(1, since + 0.1, since - 0.9, "w0", False)  # a warm-up image answered in the window
    tracker.record(2, since + 4.0, since + 3.0, "w0", False)  # measured, in the window
    tracker.record(2, since + 4.1, since + 3.0, "w0", False)  # its duplicate
    tracker.record(3, until + 0.4, until - 0.5, "w0", True)  # measured, answered (an error) after the window
    assert tracker.tally.in_window == 2
    assert tracker.snapshot() == (2, 1)  # the measured images' answers: 2 and 3, and 2's duplicate
    merged = ResultTracker()
    merged.merge(tracker.to_json())
    merged.merge(tracker.to_json())  # another collector's tally adds to it
    assert merged.tally.in_window == 4
    plain = ResultTracker()  # no window: nothing counts for one
    plain.start_measuring(0, since)
    plain.record(0, since + 1.0, since + 0.5, "w0", False)
    assert plain.tally.in_window == 0 and plain.snapshot() == (1, 0)
