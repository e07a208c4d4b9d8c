"""`bench --generators N`: load generator processes, each publishing and collecting a share of the run.

With `--collectors M`, the generators only publish and M processes of their own collect (the same shared
subscription): at QoS 1 a generator busy publishing is a slow collector, and the results' wait for it
was most of the latency measured (docs/PERFORMANCE.md).

One Python process publishes about 20,000-30,000 images/s at most: to offer several times what a
worker (or a group) can take, the bench starts N of these. Each publishes open loop at rate/N (or
as fast as it can) with ids `<run>-g<i>-<seq>`, and collects results through a shared subscription
(`$share/<run>-collect/<results>`), so the collecting is split N ways too. A collector tallies
whatever result reaches it, by generator; images count from the common start time `t_measure`
(wall clock, this machine) on. A duplicate that reaches two different collectors is counted as two
answers, not as a duplicate (see docs/PERFORMANCE.md).

Protocol with the bench: the config as JSON in argv[1]; the broker through MNIST_BROKER and friends
(engine.roles.workerpool.broker_environment); the child prints `ready`, waits for `go` on stdin, runs, drains,
and prints one line of JSON: sent, send seconds, the merged tally and its CPU seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.mqtt.address import BrokerAddress
from engine.settings import Settings
from engine.topics import Topics


def child_config(settings: Settings, run_id: str, index: int, rate: float, t_measure: float, duration: float,
                 drain: float, role: str = "both", shared: bool = True) -> dict[str, Any]:
    """`role`: "both" (publish and collect), "publish" (collector processes collect) or "collect" (only).
    `shared`: collect through the run's shared subscription (False: a plain one, for a lone collector)."""
    t = settings.topics
    return {
        "run_id": run_id, "index": index, "rate": rate, "t_measure": t_measure, "duration": duration, "role": role,
        "shared": shared,
        "drain": drain, "qos": settings.qos, "protocol": settings.protocol, "image_expiry": settings.image_expiry,
        "topics": {"images": t.images, "results": t.results, "status_prefix": t.status_prefix,
                   "control_prefix": t.control_prefix, "reply_prefix": t.reply_prefix},
        "dataset": str(settings.dataset), "list_file": settings.list_file,
    }


@dataclass
class GeneratorProcess:
    """One child: started, told to go, its one-line report read back."""

    config: dict[str, Any]
    env: dict[str, str]
    proc: subprocess.Popen[str] | None = None
    report: dict[str, Any] | None = None
    error: str | None = None
    _stderr: list[str] = field(default_factory=list)

    def spawn(self) -> None:
        from engine.child_process import die_with_parent

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine.bench.genprocess", json.dumps(self.config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env,
            preexec_fn=die_with_parent(), process_group=0,  # our session: see WorkerProcess
        )
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr = (self._stderr + [line.rstrip()])[-20:]

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def wait_ready(self, timeout: float) -> bool:
        assert self.proc is not None and self.proc.stdout is not None
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        if box and box[0].strip() == "ready":
            return True
        self.error = "; ".join(self._stderr[-3:]) or "no answer"
        return False

    def go(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def collect(self, timeout: float) -> dict[str, Any] | None:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.error = "did not finish"
            return None
        for line in reversed(out.splitlines()):
            if line.startswith("{"):
                self.report = json.loads(line)
                return self.report
        self.error = "; ".join(self._stderr[-3:]) or f"exited with {self.proc.returncode}"
        return None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _main(config: dict[str, Any]) -> int:
    import logging

    import psutil

    from engine.bench.loadgen import LoadGenerator
    from engine.bench.stats import ResultTracker
    from engine.digits.dataset import load_dataset

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s", stream=sys.stderr)
    env = os.environ
    address = BrokerAddress.parse(env["MNIST_BROKER"]).with_credentials_from()
    address = address.with_tls_files(env.get("MNIST_CAFILE"), env.get("MNIST_CERT"), env.get("MNIST_KEY"))
    topics = Topics(**config["topics"])
    settings = Settings(topics=topics, qos=int(config["qos"]), protocol=int(config["protocol"]),
                        dataset=Path(config["dataset"]), list_file=config["list_file"],
                        image_expiry=int(config.get("image_expiry", 0)))
    samples = load_dataset(settings.dataset, settings.list_file)
    run_id = config["run_id"]
    tracker = ResultTracker()
    t_measure = float(config["t_measure"])
    tracker.start_measuring(0, t_measure, t_measure + float(config["duration"]))
    role = config.get("role", "both")
    prefix = "c" if role == "collect" else "g"  # a collector's own ids are never sent
    gen = LoadGenerator(address, settings, samples, f"{run_id}-{prefix}{config['index']}", settings.protocol,
                        tracker, collect=f"$share/{run_id}-collect/{topics.results}" if config.get("shared", True)
                        else topics.results, watch=False,
                        collecting=role != "publish")
    gen.accept_prefix = f"{run_id}-g"
    gen.measure_from = t_measure  # "sent" counts what the collectors count as measured, by the same stamp
    gen.connect()
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        gen.close()
        return 1
    stop = threading.Event()
    rate = float(config["rate"])
    cpu0 = psutil.Process().cpu_times()
    seconds = 0.0
    if role == "collect":  # results only: through the warm-up and the measured part
        time.sleep(max(0.0, t_measure - time.time()) + float(config["duration"]))
    else:
        if time.time() < t_measure:  # warm-up: load before the measured part
            gen.run(rate=rate, window=0, count=None, duration=t_measure - time.time(), stop=stop)
        cpu0 = psutil.Process().cpu_times()
        _sent, seconds = gen.run(rate=rate, window=0, count=None, duration=float(config["duration"]), stop=stop)
        gen.flush()
    # drain: until no answer came for `drain` seconds (a publishing-only process has none to wait for)
    drain = float(config["drain"]) if role != "publish" else 0.0
    last, last_change = -1, time.monotonic()
    while time.monotonic() - last_change < drain:
        seen = tracker.seen_any + sum(t.seen_any for t in gen.others.values())
        if seen != last:
            last, last_change = seen, time.monotonic()
        time.sleep(0.05)
    cpu1 = psutil.Process().cpu_times()
    total = ResultTracker()
    total.merge(tracker.to_json())
    for other in list(gen.others.values()):
        total.merge(other.to_json())
    gen.close()
    report = {"index": config["index"], "sent": gen.measured, "send_seconds": seconds,
              "publish_errors": gen.publish_errors, "held_back": gen.held_back, "foreign": tracker.foreign,
              "tally": total.to_json(),
              "cpu_seconds": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system), "pid": os.getpid()}
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(json.loads(sys.argv[1])))
