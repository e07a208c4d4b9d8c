"""`mnist-tui bench`: offer a load to real infer workers and report what came back.

Workers run as separate processes (`python -m engine run infer`, one client id each), so the load
generator and the measuring collector in this process never share a GIL with them. The generator
sends at a set rate, or at full speed with at most --window images unanswered (closed loop); the
collector counts every image once. The report: sent, answered, lost, duplicated, throughput, end-to-end
latency percentiles, time per stage (from the workers' status), mean batch, CPU and memory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from engine.bench.progress import Progress
from engine.bench.report import per_image, render_table, stage_means
from engine.bench.stats import ResultTracker
from engine.errors import BrokerError, ConfigError
from engine.mqtt.address import BrokerAddress
from engine.settings import Settings

if TYPE_CHECKING:
    from engine.bench.loadgen import LoadGenerator
    from engine.cpu_quota import CpuQuota
    from engine.mqtt.broker import EmbeddedBroker
    from engine.roles.workerpool import WorkerPool

PING_INTERVAL = 0.1  # seconds between the control pings sent to each worker while measuring


# ----- command line -----
def add_arguments(parser: argparse.ArgumentParser) -> None:
    from engine.cpu_quota import parse_share
    from engine.cpus import parse_cpu_list
    from engine.env_options import BENCH_ENV_VARS, apply_env
    from engine.options import (
        add_connection_options,
        add_pipeline_options,
        non_negative_float,
        non_negative_int,
        number_in,
        positive_float,
    )

    parser.description = (
        "Start infer worker processes (or use those already on --broker with --workers 0), offer them "
        "images, and report sent, answered, lost, duplicated, throughput, latency, stages, CPU and memory."
    )
    # The global options work after `bench` too. Defaults are suppressed here so that a value given
    # before `bench` is not overwritten; --rate has the bench's own default (full speed).
    before = len(parser._actions)
    add_connection_options(parser)
    add_pipeline_options(parser)
    for action in parser._actions[before:]:
        action.default = argparse.SUPPRESS
        if action.dest == "rate":
            action.help = "images per second offered, 0 = full speed (the bench's default)"
    parser.set_defaults(rate=0.0)
    b = parser.add_argument_group("benchmark")
    b.add_argument("--duration", type=positive_float, default=None,
                   help="seconds to send, above 0 (default 10, unless --count is given)")
    b.add_argument("--warmup", type=non_negative_float, default=2.0,
                   help="seconds of load before measuring starts, not counted (default 2)")
    b.add_argument("--workers", type=non_negative_int, default=1,
                   help="infer worker processes to start (default 1); 0 = use the workers already on the broker")
    b.add_argument("--window", type=non_negative_int, default=None,
                   help="most images unanswered at once (default: 1000 at --rate 0, unlimited at a set rate); "
                        "0 = no limit")
    b.add_argument("--drain", type=non_negative_float, default=5.0,
                   help="after sending, wait this long without a new answer before counting the rest lost")
    b.add_argument("--generators", type=number_in(1, 64, integer=True), default=1,
                   help="load generator processes (default 1, in this process); N > 1 publish open loop at "
                        "rate/N each (full speed at --rate 0) and split the collecting through a shared subscription")
    b.add_argument("--collectors", type=number_in(0, 64, integer=True), default=0,
                   help="with --generators or --overload: collector processes of their own (the generators then "
                        "only publish); default 0, the generators collect")
    b.add_argument("--overload", type=non_negative_float, default=None, metavar="X",
                   help="first measure the workers' capacity (closed loop, --capacity-seconds), then offer X times it "
                        "open loop (with --generators processes) and report goodput, shed and control latency")
    b.add_argument("--capacity-seconds", type=non_negative_float, default=5.0,
                   help="length of the capacity phase of --overload (default 5)")
    b.add_argument("--worker-cpus", type=parse_cpu_list, default=None, metavar="LIST",
                   help="pin the worker processes to these CPUs (as taskset -c takes them: 0, 0-3) and this "
                        "process, its broker and generators to the others, so that the load does not take the "
                        "workers' cores (Linux)")
    b.add_argument("--worker-cpu-share", type=parse_share, default=None, metavar="F",
                   help="hold each worker process to F of one CPU (0.01 to 1; a cgroup CPU quota, Linux, root): with "
                        "--worker-cpus, a worker the load can offer five or ten times what it takes on few cores")
    b.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    b.add_argument("--no-progress", action="store_true", help="no progress line while it runs")
    apply_env(parser, names=BENCH_ENV_VARS)  # MNIST_BENCH_* through each flag's own parser


add_bench_arguments = add_arguments


# ----- the run -----
class Bench:
    """One benchmark: broker (embedded unless given), worker processes, generator, report."""

    def __init__(self, args: argparse.Namespace) -> None:
        from engine.options import address_from_args, protocols_from_args, settings_from_args

        self.args = args
        self.settings: Settings = settings_from_args(args)
        self.address: BrokerAddress | None = address_from_args(args)
        self.protocols = protocols_from_args(args)
        self.workers = args.workers
        self.rate = float(args.rate)
        self.window = args.window if args.window is not None else (1000 if self.rate == 0 else 0)
        self.count = args.count
        self.duration = args.duration if args.duration is not None else (None if args.count else 10.0)
        self.notes: list[str] = []
        self.stop_event = threading.Event()
        self.broker: EmbeddedBroker | None = None
        self.pool: WorkerPool | None = None
        self.gen: LoadGenerator | None = None
        self.tracker = ResultTracker()
        self.run_id = f"bench-{socket.gethostname().split('.')[0]}-{os.getpid()}"
        self.worker_ids: list[str] = []
        self.generators = max(1, args.generators)
        self.collectors = args.collectors
        self.overload: float | None = args.overload or None
        self.capacity: float | None = None
        self.children: list[Any] = []
        self.worker_cpus: frozenset[int] | None = args.worker_cpus
        self.worker_cpu_share: float | None = args.worker_cpu_share
        self.quota: CpuQuota | None = None

    # lifecycle

    @property
    def live(self) -> LoadGenerator:
        """The load generator, once `connect` has made it (a phase before that is a bug)."""
        assert self.gen is not None, "the load generator is made in connect()"
        return self.gen
    def start(self) -> None:
        from engine.bench.loadgen import LoadGenerator
        from engine.cpus import pin_process, split_cpus
        from engine.digits.dataset import load_dataset
        from engine.mqtt.client import probe
        from engine.roles.workerpool import WorkerPool, check_worker_count

        if self.workers == 0 and self.address is None:
            raise ConfigError("--workers 0 uses the workers already on a broker: give --broker URL")
        check_worker_count(self.workers)
        samples = load_dataset(self.settings.dataset, self.settings.list_file)
        if self.settings.model_path and not os.path.isfile(self.settings.model_path):
            raise ConfigError(f"model {self.settings.model_path}: file not found")
        protocols = self.protocols or (5, 4)
        if self.worker_cpu_share is not None:
            if not self.workers:
                raise ConfigError("--worker-cpu-share holds the workers the bench starts: not with --workers 0")
            from engine.cpu_quota import CpuQuota

            self.quota = CpuQuota(self.worker_cpu_share, self.run_id)
            self.notes.append(f"each worker held to {self.worker_cpu_share:g} of a CPU (cgroup v{self.quota.version})")
        if self.worker_cpus is not None:
            if not self.workers:
                raise ConfigError("--worker-cpus pins the workers the bench starts: not with --workers 0")
            rest = split_cpus(self.worker_cpus)
            pin_process(os.getpid(), rest)  # before the broker and the generators start: they inherit it
            self.notes.append(f"workers pinned to CPUs {sorted(self.worker_cpus)}, the rest to {sorted(rest)}")
        if self.address is None:
            from engine.mqtt.broker import EmbeddedBroker

            self.broker = EmbeddedBroker(kind=self.args.embedded, config=self.args.broker_config).start()
            self.address = self.broker.address
            protocols = tuple(p for p in protocols if p in self.broker.protocols) or protocols
            if self.workers > 1 and not self.broker.shared_subscriptions:
                self.notes.append("the embedded Python broker has no shared subscriptions: one worker only "
                                  "(install mosquitto for more)")
                self.workers = 1
        protocol = probe(self.address, protocols=protocols)
        settings = replace(self.settings, protocol=protocol)
        if self.workers > 1 and not settings.share_group:
            settings = replace(settings, share_group=self.run_id)
        self.settings = settings
        self.gen = LoadGenerator(self.address, settings, samples, self.run_id, protocol, self.tracker)
        self.gen.connect()
        if self.workers:
            self.pool = WorkerPool(self.address, settings)
            self.worker_ids = [f"{self.run_id}-w{i + 1}" for i in range(self.workers)]
            for worker in self.pool.spawn(self.worker_ids):
                if self.worker_cpus is not None:
                    pin_process(worker.pid, self.worker_cpus)
                if self.quota is not None:
                    self.quota.add(worker.pid)
        self._wait_for_workers(60.0 if self.workers else 10.0)

    def _wait_for_workers(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stop_event.is_set():
                raise KeyboardInterrupt
            if self.pool is not None:
                dead = self.pool.failed()
                if dead is not None:
                    raise BrokerError(f"infer worker {dead.client_id} failed: {dead.last_error()}")
            statuses = self.live.statuses()
            if self.worker_ids:
                if all(statuses.get(w, {}).get("state") == "running" for w in self.worker_ids):
                    return
            else:
                running = [w for w, s in statuses.items() if s.get("state") == "running"]
                if running:
                    self.worker_ids = sorted(running)
                    return
            time.sleep(0.05)
        if self.worker_ids:
            raise BrokerError(f"infer workers did not come up within {timeout:.0f} s")
        raise BrokerError("no running infer worker on the broker (start some, or drop --workers 0)")

    def stop(self) -> None:
        try:
            if self.pool is not None:
                self.pool.stop()
                self.pool = None
            if self.gen is not None:
                with contextlib.suppress(Exception):
                    self.gen.clear_statuses(self.worker_ids if self.workers else [])
                self.gen.close()
                self.gen = None
            if self.broker is not None:
                self.broker.stop()
                self.broker = None
        finally:  # an interrupt while the workers stop must not leave their control groups behind
            if self.quota is not None:
                self.quota.close()
                self.quota = None

    # measurement
    def measure(self, progress: Any = None) -> dict[str, Any]:
        if self.overload:
            self.capacity = self._measure_capacity(progress)
            self.rate = self.overload * self.capacity
            self.window = 0
        if self.generators > 1 or self.overload or self.collectors:
            return self._measure_processes(progress)
        return self._measure_here(progress)

    def _measure_capacity(self, progress: Any) -> float:
        """Closed loop from this process (--window, default 1000): answers per second."""
        gen = self.live
        tick = progress.tick if progress is not None else None
        if progress is not None:
            progress.phase("capacity", self.args.capacity_seconds + self.args.warmup, None)
        window = self.window or 1000
        gen.run(rate=0, window=window, count=None, duration=self.args.warmup, stop=self.stop_event, on_tick=tick)
        seen0, t0 = self.tracker.seen_any, time.monotonic()
        gen.run(rate=0, window=window, count=None, duration=self.args.capacity_seconds, stop=self.stop_event,
                on_tick=tick)
        capacity = (self.tracker.seen_any - seen0) / max(1e-9, time.monotonic() - t0)
        self._drain(gen.sent - 0, tick, by_seen=True)
        return round(capacity, 1)

    def _measure_processes(self, progress: Any) -> dict[str, Any]:
        """Open loop from --generators processes; this process pings the workers and samples the CPU."""
        from engine.bench.genprocess import GeneratorProcess, child_config
        from engine.procstats import ProcessSampler
        from engine.roles.workerpool import broker_environment

        gen = self.live
        gen.stop_collecting()  # the generator processes collect: results here would only delay the pings' replies
        duration = self.duration or 10.0
        assert self.address is not None, "connect() sets the broker's address"
        env = broker_environment(self.address)
        t_measure = time.time() + 3.0 + self.args.warmup  # time for the children to start and connect
        self.tracker.start_measuring(gen.sent, since=t_measure)  # nothing of a capacity phase counts
        per_child = self.rate / self.generators
        role = "publish" if self.collectors else "both"
        self.children = [
            GeneratorProcess(child_config(self.settings, self.run_id, i + 1, per_child, t_measure, duration,
                                          self.args.drain, role), env)
            for i in range(self.generators)
        ] + [
            GeneratorProcess(child_config(self.settings, self.run_id, i + 1, 0.0, t_measure, duration,
                                          self.args.drain, "collect", shared=self.collectors > 1), env)
            for i in range(self.collectors)
        ]
        for child in self.children:
            child.spawn()
        for child in self.children:
            if not child.wait_ready(30.0):
                raise BrokerError(f"load generator process failed: {child.error}")
        before = {wid: dict(st) for wid, st in gen.statuses().items()}
        for child in self.children:
            child.go()
        if progress is not None:
            progress.phase("warm-up", max(0.0, t_measure - time.time()), None)
        while time.time() < t_measure and not self.stop_event.is_set():
            if progress is not None:
                progress.tick()
            time.sleep(0.05)
        procs = {wid: pid for wid in self.worker_ids if (pid := self._pid_of(wid)) is not None}
        sampler = ProcessSampler(procs, bench_pid=os.getpid(),
                                 broker_pid=self.broker.pid if self.broker is not None else None)
        sampler.add_others({_child_name(c.config): c.pid for c in self.children if c.pid})
        before = {wid: dict(st) for wid, st in gen.statuses().items()} or before
        gen.start_status_log()
        sampler.start()
        if progress is not None:
            progress.phase("measuring", duration, None)
        end = time.monotonic() + duration
        next_ping = time.monotonic()
        while time.monotonic() < end and not self.stop_event.is_set():
            now = time.monotonic()
            if now >= next_ping:
                gen.ping(self.worker_ids)
                sampler.sample()
                next_ping = now + PING_INTERVAL
                if progress is not None:
                    progress.tick()
            time.sleep(max(0.0, min(next_ping, end) - time.monotonic()))
        sampler.sample()
        after = gen.statuses()
        reports = [child.collect(duration + self.args.drain + 60.0) for child in self.children]
        sampler.stop()
        gen.refresh_statuses(self.worker_ids)
        gen.stop_status_log()
        failed = [c for c, r in zip(self.children, reports, strict=True) if r is None]
        for child in failed:
            self.notes.append(f"{_child_name(child.config)} gave no report: {child.error}")
        got = [r for r in reports if r is not None]
        for r in got:
            self.tracker.merge(r["tally"])
        sent = sum(r["sent"] for r in got)
        send_seconds = max((r["send_seconds"] for r in got), default=0.0)
        report = self._report(sent, send_seconds, t_measure, True, sampler, window=duration)
        report["publish_errors"] = sum(r["publish_errors"] for r in got)
        report["held_back"] = sum(r.get("held_back", 0) for r in got)
        report["foreign_results"] = sum(r["foreign"] for r in got)
        report["config"]["generators"] = self.generators
        report["config"]["collectors"] = self.collectors
        for wid, entry in report["per_worker"].items():
            b, a = before.get(wid, {}), after.get(wid, {})
            for key in ("shed", "dropped", "expired", "received"):
                if isinstance(a.get(key), int) and isinstance(b.get(key), int):
                    entry[f"{key}_during"] = a[key] - b[key]
        self.notes.append("several collectors: a duplicate reaching two of them counts as two answers"
                          if (self.collectors or self.generators) > 1 else "")
        report["notes"] = [n for n in report["notes"] if n]
        return report

    def _measure_here(self, progress: Any = None) -> dict[str, Any]:
        from engine.procstats import ProcessSampler

        gen = self.live
        procs = {wid: pid for wid in self.worker_ids if (pid := self._pid_of(wid)) is not None}
        sampler = ProcessSampler(procs, bench_pid=os.getpid(),
                                 broker_pid=self.broker.pid if self.broker is not None else None)
        tick = progress.tick if progress is not None else None
        if self.args.warmup > 0:
            if progress is not None:
                progress.phase("warm-up", self.args.warmup, None)
            gen.run(rate=self.rate, window=self.window, count=None, duration=self.args.warmup,
                    stop=self.stop_event, on_tick=tick)
        first_seq = gen.sent
        self.tracker.start_measuring(first_seq)
        gen.start_status_log()
        sampler.start()
        t_start = time.time()
        if progress is not None:
            progress.phase("measuring", self.duration, self.count)
        ping_at = [time.monotonic()]

        def on_tick() -> None:
            sampler.sample()
            if tick:
                tick()

        def on_pass() -> None:
            now = time.monotonic()
            if now >= ping_at[0]:
                ping_at[0] = now + PING_INTERVAL
                gen.ping(self.worker_ids)

        sent, send_seconds = gen.run(rate=self.rate, window=self.window, count=self.count,
                                     duration=self.duration, stop=self.stop_event, on_tick=on_tick, on_pass=on_pass)
        flushed = gen.flush()
        if progress is not None:
            progress.phase("draining", None, None)
        self._drain(sent, tick)
        sampler.stop()
        gen.refresh_statuses(self.worker_ids)  # the stage times of the last batches, even in a short run
        gen.stop_status_log()
        return self._report(sent, send_seconds, t_start, flushed, sampler)

    def _pid_of(self, worker_id: str) -> int | None:
        if self.pool is not None:
            for w in self.pool.workers:
                if w.client_id == worker_id:
                    return w.pid
        status = self.live.statuses().get(worker_id, {})
        if status.get("host") == socket.gethostname() and isinstance(status.get("pid"), int):
            return status["pid"]  # a worker on this machine: measure it too
        return None

    def _drain(self, sent: int, tick: Any, by_seen: bool = False) -> None:
        last, last_change = -1, time.monotonic()
        while not self.stop_event.is_set():
            answered = self.tracker.seen_any if by_seen else self.tracker.snapshot()[0]
            if answered >= sent:
                return
            now = time.monotonic()
            if answered != last:
                last, last_change = answered, now
            elif now - last_change > self.args.drain:
                return
            if tick:
                tick()
            time.sleep(0.02)

    def _report(self, sent: int, send_seconds: float, t_start: float, flushed: bool, sampler: Any,
                window: float | None = None) -> dict[str, Any]:
        """With `window` (the generator processes' measured seconds), goodput is the answers that arrived
        within it, whichever image they answer, per second of it. Without, and for throughput: the measured
        images' answers per second from `t_start` to the last of them. Under overload those differ: the
        workers' queues hold up to a second of warm-up images as the window opens, and as many measured
        ones when it closes, so the measured images' answers span a second more than the window."""
        tally = self.tracker.tally
        span = (tally.last_answer - t_start) if tally.last_answer else 0.0
        throughput = round(tally.counts.received / span, 1) if span > 0 else 0.0
        goodput = round(tally.in_window / window, 1) if window else throughput
        stages, batch_mean = stage_means(self.live.status_log, self.worker_ids)
        per_worker: dict[str, Any] = {}
        quota = self.quota.stats() if self.quota is not None else {}  # pid -> its group's cpu.stat
        pids = {w.client_id: w.pid for w in self.pool.workers} if quota and self.pool is not None else {}
        for wid in sorted(set(self.worker_ids) | set(tally.counts.per_worker)):
            entry: dict[str, Any] = {"answered": tally.counts.per_worker.get(wid, 0)}
            entry.update(sampler.report(wid))
            if entry["answered"] and "cpu_seconds" in entry:
                entry["cpu_us_per_image"] = round(1e6 * entry["cpu_seconds"] / entry["answered"], 1)
            status = self.live.status.get(wid, {})
            for key in ("dropped", "shed", "expired", "errors", "queue"):
                if key in status:
                    entry[key] = status[key]
            if wid in pids:
                entry["cpu_quota"] = quota.get(pids[wid], {})
            per_worker[wid] = entry
        s = self.settings
        return {
            "config": {
                "broker": self.address.url if self.address else None,
                "broker_kind": self.broker.kind if self.broker is not None else "external",
                "mqtt": {5: "5", 4: "3.1.1"}.get(s.protocol, str(s.protocol)),
                "qos": s.qos,
                "rate": self.rate,
                "window": self.window,
                "workers": len(self.worker_ids),
                "spawned": self.workers > 0,
                "count": self.count,
                "duration": self.duration,
                "warmup": self.args.warmup,
                "max_batch": s.max_batch,
                "max_delay_ms": s.max_delay_ms,
                "image_expiry": s.image_expiry,
                "max_wait": s.max_wait,
                "threads": s.threads,
                "group": s.share_group,
                "host": socket.gethostname(),
                "cpus": os.cpu_count(),
                "worker_cpus": sorted(self.worker_cpus) if self.worker_cpus is not None else None,
                "worker_cpu_share": self.worker_cpu_share,
            },
            "notes": self.notes,
            "sent": sent,
            "answered": tally.counts.received,
            "lost": sent - tally.counts.received,
            "duplicated": tally.duplicates,
            "errors": tally.counts.errors,
            "accuracy": round(tally.counts.correct / tally.counts.labelled, 5) if tally.counts.labelled else None,
            "send_seconds": round(send_seconds, 3),
            "offered_rate": round(sent / send_seconds, 1) if send_seconds > 0 else None,
            "elapsed": round(span, 3),
            "throughput": throughput,
            "latency_ms": tally.latency.summary_ms(),
            # where the latency is: sent -> taken by a worker -> its result published -> collected
            "latency_parts_ms": {name: h.summary_ms() for name, h in tally.parts.items()},
            "stages_ms": stages,
            "batch_mean": batch_mean,
            "per_worker": per_worker,
            "processes": per_image(sampler.report_others(), tally.counts.received),
            "flushed": flushed,
            "stalls": self.live.stalls,
            "publish_errors": self.live.publish_errors,
            "held_back": self.live.held_back,  # open loop at QoS 1/2: due while the broker's window was full
            "foreign_results": self.tracker.foreign,
            "interrupted": self.stop_event.is_set(),
            "capacity": self.capacity,
            "goodput": goodput,
            "answered_in_window": tally.in_window if window else None,
            "control_ms": {**self.live.pings.summary_ms(), "sent": self.live.pings_sent,
                           "unanswered": self.live.pings_unanswered()},
        }


def run(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s", stream=sys.stderr)
    if args.count is not None and args.duration is not None:
        raise ConfigError("give --count or --duration, not both")
    bench = Bench(args)
    interrupted = 0

    def on_signal(_signum: int, _frame: Any) -> None:
        nonlocal interrupted
        interrupted += 1
        if interrupted > 1:  # not Event.set again: a second signal may come while the first one's holds its lock
            raise KeyboardInterrupt
        bench.stop_event.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    progress = Progress(bench, not args.no_progress)
    try:
        bench.start()
        report = bench.measure(progress)
    finally:
        progress.close()
        try:
            bench.stop()
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        render_table(report)
    return 0


def _child_name(config: dict[str, Any]) -> str:
    """How the report names a child process: "generator 2", "collector 1"."""
    return f"{'collector' if config.get('role') == 'collect' else 'generator'} {config['index']}"
