"""`mnist-tui metrics`: a Prometheus exporter for every role on the broker, wherever it runs.

Counters and gauges come from each role's latest retained status (`mnist/status/<role>/<id>`, see
docs/PROTOCOL.md), exposed by a custom collector at scrape time rather than copied into global metrics;
the latency and batch-size histograms are observed from the `result` topic as results arrive. Everything
is labelled by role and client id, and lives in the exporter's own registry.

Status payloads and results are untrusted: a field of the wrong type, a NaN or a negative count is left
out, never exported; the number of roles and workers tracked is bounded.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from engine.monitor.liveness import LIVE_STATES, SILENT_AFTER, heard_again, is_silent, state_of
from engine.signals import SignalStop
from engine.topics import ROLES
from engine.untrusted import clean_number, visible_text

MAX_ROLES = 1000  # statuses tracked at most; more (a flood of bogus status topics) are ignored and counted
MAX_WORKERS = 256  # distinct worker ids in the histograms; results of further ids go to id "_other"
MAX_LATENCY = 3600.0  # seconds; an end-to-end latency outside [0, this] is a clock problem, not a latency

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

# (metric name, help, {role: status field}); counters get the suffix _total from prometheus_client
COUNTERS = (
    ("mnist_images", "Images sent (input) or received (infer)", {"input": "sent", "infer": "received"}),
    ("mnist_results", "Results published (infer) or collected (output)", {"infer": "processed", "output": "received"}),
    ("mnist_errors", "Errors: failed sends (input), error results (infer, output)",
     {"input": "errors", "infer": "errors", "output": "errors"}),
    ("mnist_dropped", "Images dropped because the worker's queue was full", {"infer": "dropped"}),
    ("mnist_expired", "Images not answered: past their MQTT 5 expiry or older than --max-wait", {"infer": "expired"}),
    ("mnist_backlogs_dropped", "Times a worker ended its image connection so that the broker dropped a backlog "
     "stale at its head (--max-wait)", {"infer": "backlogs_dropped"}),
    ("mnist_intake_pauses", "Times a worker's queue filled with QoS 0 images and it left its image subscription "
     "until the queue was half empty (the broker dropped what was published meanwhile)", {"infer": "intake_pauses"}),
    ("mnist_no_subscriber", "QoS 1 images the broker took with nobody subscribed to them (MQTT 5 'no matching "
     "subscribers'): gone", {"input": "no_subscriber"}),
    ("mnist_duplicates", "Results received more than once", {"output": "duplicates"}),
)
GAUGES = (
    ("mnist_queue", "Images waiting in the worker's queue", {"infer": "queue"}),
    ("mnist_queue_max", "Images the worker's queue holds at most now (--queue-size, or a second of work)",
     {"infer": "queue_max"}),
    ("mnist_rate", "Messages per second over the last seconds (sent, answered or collected)",
     {"input": "rate_actual", "infer": "rate", "output": "rate"}),
    ("mnist_batch_mean", "Mean batch size over the last seconds", {"infer": "batch_mean"}),
    ("mnist_accuracy", "Share of labelled results that were right (0..1)", {"output": "accuracy"}),
    ("mnist_uptime_seconds", "Seconds since the role started", {"input": "uptime", "infer": "uptime",
                                                                "output": "uptime"}),
)


def number(value: Any) -> float | None:
    """A finite, non-negative int or float from an untrusted payload; None for anything else (bools too)."""
    return clean_number(value, 0.0)


def _is_live(status: dict[str, Any], heard: float, now: float) -> bool:
    return state_of(status) in LIVE_STATES and not is_silent(heard, now)


class MetricsBoard(Collector):
    """The latest status of every role plus result histograms; a prometheus_client Collector.

    `on_status` and `on_result` run on the MQTT network thread; `collect` on the HTTP server's.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._statuses: dict[tuple[str, str], dict[str, Any]] = {}
        self._heard: dict[tuple[str, str], float] = {}  # when each role was last known to send (monotonic)
        self._sessions_lost: dict[tuple[str, str], int] = {}
        self._workers: set[str] = set()
        self.ignored = 0  # statuses or results left out: malformed, unknown role, or past the bounds
        self.broker_connected: Callable[[], bool] = lambda: False
        self.registry = CollectorRegistry(auto_describe=False)
        self.latency = Histogram("mnist_latency_seconds", "End-to-end latency: result arrival here minus the "
                                 "image's send time (clocks must be in sync across hosts)",
                                 ("role", "id"), buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch = Histogram("mnist_batch_size", "Images per forward pass, per result",
                               ("role", "id"), buckets=BATCH_BUCKETS, registry=self.registry)
        self.registry.register(self)

    # ----- feed (MQTT network thread) -----
    def on_status(self, role: str, client_id: str, status: dict[str, Any] | None, retained: bool) -> None:
        if role not in ROLES:
            return
        key = (role, visible_text(client_id, 200, exact=True))  # printable, and one series per id
        with self._lock:
            if status is None:
                self._statuses.pop(key, None)
                self._sessions_lost.pop(key, None)
                self._heard.pop(key, None)
                return
            if key not in self._statuses and len(self._statuses) >= MAX_ROLES:
                self.ignored += 1
                return
            previous = self._statuses.get(key)
            # the role's last will (connected false): the broker saw its session end. Counted on the change
            # from live to lost; a retained will seen at start-up, or again after the exporter reconnects,
            # is history this exporter already knows or never saw happen
            will = status.get("connected") is False
            if will and ((previous is not None and state_of(previous) != "offline") or (previous is None
                                                                                      and not retained)):
                self._sessions_lost[key] = self._sessions_lost.get(key, 0) + 1
            self._statuses[key] = status
            self._heard[key] = heard_again(self._heard.get(key), status, retained, time.monotonic(), time.time())

    def on_result(self, payload: bytes, arrived: float) -> None:
        try:
            result = json.loads(payload)
        except ValueError:
            result = None
        if isinstance(result, dict) and "error" in result:
            return  # an error result: counted by the worker's status, and it has no batch or latency to tell
        worker = result.get("worker") if isinstance(result, dict) else None
        if not isinstance(worker, str) or not worker or "pred" not in result:
            self.ignored += 1  # malformed, or a legacy text result without a worker
            return
        worker = visible_text(worker, 200, exact=True)
        with self._lock:
            if worker not in self._workers:
                if len(self._workers) >= MAX_WORKERS:
                    worker = "_other"
                self._workers.add(worker)
        sent = number(result.get("t_sent"))
        if sent is not None and 0 <= arrived - sent <= MAX_LATENCY:
            self.latency.labels("infer", worker).observe(arrived - sent)
        batch = number(result.get("batch"))
        if batch is not None and 1 <= batch <= 1_000_000:
            self.batch.labels("infer", worker).observe(batch)

    # ----- scrape (HTTP thread) -----
    def collect(self) -> Iterator[Metric]:
        with self._lock:
            statuses = list(self._statuses.items())
            lost = dict(self._sessions_lost)
            heard = dict(self._heard)
        now = time.monotonic()
        labels = ["role", "id"]
        for name, text, fields in COUNTERS:
            yield _from_statuses(CounterMetricFamily(name, text, labels=labels), fields, statuses)
        family = CounterMetricFamily("mnist_sessions_lost", "Times the broker published a role's last will "
                                     "(its connection ended without a goodbye), seen by this exporter", labels=labels)
        for (role, cid), _status in statuses:
            family.add_metric([role, cid], lost.get((role, cid), 0))
        yield family
        for name, text, fields in GAUGES:
            yield _from_statuses(GaugeMetricFamily(name, text, labels=labels), fields, statuses)
        online = GaugeMetricFamily("mnist_online", "1 while the role is connected: its latest status is not "
                                   f"offline and came less than {SILENT_AFTER:g} s ago; else 0", labels=labels)
        for key, status in statuses:
            online.add_metric(list(key), 1.0 if _is_live(status, heard.get(key, -math.inf), now) else 0.0)
        yield online
        yield GaugeMetricFamily("mnist_exporter_broker_connected", "1 while this exporter is connected to the "
                                "broker", value=1.0 if self.broker_connected() else 0.0)
        yield CounterMetricFamily("mnist_exporter_ignored", "Status and result messages this exporter left out "
                                  "(malformed, error results, or past its bounds)", value=self.ignored)


# ----- command line -----
def add_metrics_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=9108, help="HTTP port of /metrics (default: 9108)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1; 0.0.0.0 for every interface)")


def run(args: argparse.Namespace) -> int:
    from engine.errors import ConfigError
    from engine.monitor.status_feed import StatusFeed, target_from_args
    from engine.mqtt.client import probe

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be 0..65535, not {args.port}")
    address, topics = target_from_args(args)
    protocol = probe(address, protocols=_protocols(args))
    board = MetricsBoard()
    try:
        server, thread = start_http_server(args.port, addr=args.host, registry=board.registry)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    feed = StatusFeed(address, topics, protocol=protocol, on_status=board.on_status, on_result=board.on_result)
    board.broker_connected = feed.connected.is_set
    stop = SignalStop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop.handler)
    try:
        feed.start()
        host, port = str(server.server_address[0]), server.server_address[1]
        print(f"metrics of {address.url} on http://{host}:{port}/metrics", flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        feed.stop()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    return 0


def _protocols(args: argparse.Namespace) -> tuple[int, ...]:
    from engine.options import protocols_from_args

    return protocols_from_args(args) or (5, 4)


_Family = TypeVar("_Family", CounterMetricFamily, GaugeMetricFamily)


def _from_statuses(family: _Family, fields: Mapping[str, str], statuses: list[tuple[tuple[str, str], Any]]) -> _Family:
    """One sample per role whose latest status has a valid number in its role's field."""
    for (role, cid), status in statuses:
        value = number(status.get(fields[role])) if role in fields else None
        if value is not None:
            family.add_metric([role, cid], value)
    return family
