"""`mnist-tui bench` at a small size against mosquitto: the report adds up. No speed is asserted."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import allowed_cpus, check_latency_parts

from engine.bench.loadgen import LoadGenerator
from engine.bench.report import render_table
from engine.bench.stats import LatencyHistogram, ResultTracker
from engine.cli import main
from engine.cpu_quota import find_cpu_hierarchy
from engine.digits.dataset import load_dataset
from engine.errors import ConfigError
from engine.protocol import extract_meta
from engine.settings import Settings


def _bench(*args: str, timeout: float = 120, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MNIST_")} | variables
    return subprocess.run([sys.executable, "-m", "engine", "bench", "--no-progress", *args],
                          capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def _check_report(report: dict, sent: int) -> None:
    assert report["sent"] == sent
    assert report["answered"] + report["lost"] == report["sent"]
    assert report["answered"] > 0
    assert report["duplicated"] >= 0
    assert report["throughput"] > 0
    lat = report["latency_ms"]
    assert 0 <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    check_latency_parts(report)
    assert set(report["stages_ms"]) == {"queue", "decode", "infer", "publish"}
    assert all(v is not None and v >= 0 for v in report["stages_ms"].values()), report["stages_ms"]
    assert report["batch_mean"] is not None and report["batch_mean"] >= 1
    (worker,) = report["per_worker"].values()
    assert worker["answered"] == report["answered"]
    assert worker["rss_mb_end"] > 0
    assert worker["cpu_percent"] >= 0


@pytest.mark.slow
def test_bench_full_speed_qos1_on_the_embedded_mosquitto(capsys: pytest.CaptureFixture[str]) -> None:
    done = _bench("--embedded", "mosquitto", "--qos", "1", "--rate", "0", "--count", "300", "--warmup", "0.5",
                  "--json")
    if "mosquitto not found" in done.stderr:
        pytest.skip("mosquitto is not installed")
    assert done.returncode == 0, done.stderr[-800:]
    report = json.loads(done.stdout)
    _check_report(report, 300)
    assert report["config"]["qos"] == 1
    assert report["config"]["broker_kind"] == "mosquitto"
    assert report["lost"] == 0 and report["duplicated"] == 0  # QoS 1 on a healthy broker
    # the same report as a table
    render_table(report)
    table = capsys.readouterr().out
    for label in ("images sent", "answered", "lost", "duplicated", "latency p50 / p90 / p99", "mean batch",
                  "latency p50 parts"):
        assert label in table
    assert "full speed" in table


def test_bench_options_from_the_environment() -> None:
    """Each bench option has its MNIST_BENCH_* variable, parsed by the flag's parser; a flag still wins."""
    done = _bench("--embedded", "mosquitto", "--window", "60", MNIST_BENCH_RATE="200", MNIST_BENCH_DURATION="1",
                  MNIST_BENCH_WARMUP="0", MNIST_BENCH_JSON="yes", MNIST_BENCH_WINDOW="50", MNIST_BENCH_DRAIN="2")
    if "mosquitto not found" in done.stderr:
        pytest.skip("mosquitto is not installed")
    assert done.returncode == 0, done.stderr[-800:]
    report = json.loads(done.stdout)  # MNIST_BENCH_JSON: the report as JSON
    config = report["config"]
    assert (config["rate"], config["duration"], config["warmup"], config["window"]) == (200, 1, 0, 60)
    assert report["answered"] > 0
    bad = _bench("--count", "5", MNIST_BENCH_GENERATORS="many")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == ["mnist-tui bench: error: MNIST_BENCH_GENERATORS='many': "
                                               "not an integer: 'many' (see --help)"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MNIST_")} | {"MNIST_BENCH_GENERATORS": "many"}
    other = subprocess.run([sys.executable, "-m", "engine", "config"], capture_output=True, text=True, timeout=60,
                           env=env, stdin=subprocess.DEVNULL)
    assert other.returncode == 0 and other.stderr == "", "a bench variable stopped another command: " + other.stderr
    assert "broker" in other.stdout


@pytest.mark.parametrize(("value", "variables"), [("0", {}), ("-1", {}), (None, {"MNIST_BENCH_DURATION": "0"})])
def test_bench_duration_must_be_above_zero(value: str | None, variables: dict[str, str]) -> None:
    """0 would send until interrupted: it is refused like any other bad option (one line, exit 2), by flag and
    by variable. The unreachable broker ends the run at once should the value ever be taken again."""
    args = ["--broker", "mqtt://127.0.0.1:1"] + (["--duration", value] if value is not None else [])
    done = _bench(*args, timeout=60, **variables)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("mnist-tui bench: error:") and "must be a finite number > 0" in line, line
    assert ("--duration" if value is not None else "MNIST_BENCH_DURATION") in line, line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--broker", "mqtt://127.0.0.1:1", "--count", "10"], "cannot reach broker"),
        (["--count", "5", "--duration", "5"], "not both"),
        (["--workers", "0", "--count", "5"], "--workers 0"),
        (["--worker-cpus", "4000", "--count", "5"], "may run on CPUs"),
        (["--workers", "0", "--broker", "mqtt://127.0.0.1:1", "--worker-cpus", "0", "--count", "5"],
         "not with --workers 0"),
        (["--workers", "0", "--broker", "mqtt://127.0.0.1:1", "--worker-cpu-share", "0.5", "--count", "5"],
         "not with --workers 0"),
    ],
)
def test_bench_errors_are_one_line(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--no-progress", *args]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mnist-tui:") and message in lines[0], err


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def test_bench_pins_its_worker_to_a_core_of_its_own_and_itself_elsewhere() -> None:
    """`--worker-cpus`: every thread of the worker runs on the CPUs given, the bench and its broker on the rest."""
    mine = sorted(os.sched_getaffinity(0))
    if len(mine) < 2:
        pytest.skip("pinning needs two CPUs")
    worker_cpu, rest = frozenset({mine[0]}), frozenset(mine[1:])
    bench = subprocess.Popen([sys.executable, "-m", "engine", "bench", "--no-progress", "--embedded", "mosquitto",
                              "--worker-cpus", str(mine[0]), "--duration", "4", "--warmup", "1", "--json"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    seen: dict[str, list[frozenset[int]]] = {}
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and bench.poll() is None and "infer" not in seen:
            for child in _children(bench.pid):
                with contextlib.suppress(OSError):
                    cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
                    kind = "infer" if b"infer" in cmdline else "broker" if b"mosquitto" in cmdline[0] else None
                    threads = allowed_cpus(child)
                    # the worker is pinned once its status says running: wait for its threads to be there
                    if kind == "broker" or (kind == "infer" and len(threads) >= 4 and
                                            all(cpus == worker_cpu for cpus in threads)):
                        seen[kind] = threads
            time.sleep(0.1)
        seen["bench"] = allowed_cpus(bench.pid)
        out, err = bench.communicate(timeout=120)
    finally:
        bench.kill()
        bench.wait()
    if "mosquitto not found" in err:
        pytest.skip("mosquitto is not installed")
    assert bench.returncode == 0, err[-800:]
    assert "infer" in seen, f"the worker's threads never all ran on CPU {mine[0]}"
    assert seen["broker"] == [rest] * len(seen["broker"]) and seen["bench"] == [rest] * len(seen["bench"])
    report = json.loads(out)
    assert report["config"]["worker_cpus"] == [mine[0]]
    assert report["answered"] > 0 and report["lost"] == 0
    assert any("pinned" in note for note in report["notes"])


@pytest.mark.parametrize("share", ["0", "0.001", "1.5", "half"])
def test_a_cpu_share_outside_a_hundredth_to_one_is_refused(share: str) -> None:
    done = _bench("--worker-cpu-share", share, timeout=60)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert f"{share!r} is not a share of a CPU from 0.01 to 1" in line, line


def test_bench_holds_its_worker_to_a_share_of_a_cpu() -> None:
    """`--worker-cpu-share`: the worker runs in a control group of its own with that CPU quota (the kernel's
    count of the periods it was stopped in is in the report), and the group is gone once the bench ends."""
    try:
        parent, _version = find_cpu_hierarchy()
    except ConfigError as exc:
        pytest.skip(str(exc))
    if not os.access(parent, os.W_OK):
        pytest.skip(f"cannot make control groups under {parent}")
    bench = subprocess.run([sys.executable, "-m", "engine", "bench", "--no-progress", "--embedded", "mosquitto",
                            "--worker-cpu-share", "0.2", "--duration", "3", "--warmup", "1", "--json"],
                           capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=180)
    if "mosquitto not found" in bench.stderr:
        pytest.skip("mosquitto is not installed")
    assert bench.returncode == 0, bench.stderr[-800:]
    report = json.loads(bench.stdout)
    assert report["config"]["worker_cpu_share"] == 0.2
    assert any("held to 0.2 of a CPU" in note for note in report["notes"]), report["notes"]
    (worker,) = report["per_worker"].values()
    assert worker["answered"] > 0 and report["lost"] == 0
    assert worker["cpu_quota"]["nr_throttled"] > 0, worker  # at full speed a fifth of a CPU is not enough
    assert not [g.name for g in parent.iterdir() if g.is_dir() and g.name.startswith("bench-") and
                f"-{worker['pid']}" in g.name]


def test_histogram_percentiles_are_close_and_ordered() -> None:
    h = LatencyHistogram()
    values = [i / 10_000 for i in range(1, 10_001)]  # 0.1 ms .. 1 s
    for v in values:
        h.add(v)
    for p in (50, 90, 99):
        exact = values[int(p / 100 * len(values)) - 1]
        assert abs(h.percentile(p) - exact) <= 0.011 * exact
    assert h.percentile(50) <= h.percentile(90) <= h.percentile(99) <= h.max == 1.0


def test_tracker_counts_each_image_once() -> None:
    t = ResultTracker()
    t.record(0, 10.0, 9.9, "w1", False, 1, 1)  # warm-up image
    t.start_measuring(first_seq=1)
    for seq in (1, 2, 2, 3, 0):
        t.record(seq, 10.0, 9.99, "w1" if seq != 3 else "w2", False, 7, 7)
    tally = t.tally
    assert (tally.counts.received, tally.duplicates, t.seen_any) == (3, 1, 4)
    assert tally.counts.per_worker == {"w1": 2, "w2": 1}
    assert tally.counts.correct == tally.counts.labelled == 3
    assert tally.parts["to_worker"].n == 0  # results without t_recv / t_done have no parts
    t.record(4, 10.0, 9.0, "w1", False, 1, 1, 9.25, 9.75)
    other = ResultTracker()
    other.merge(t.to_json())  # as a generator process's tally reaches the bench process
    parts = other.tally.parts
    assert (parts["to_worker"].total, parts["in_worker"].total, parts["to_collector"].total) == (0.25, 0.5, 0.25)


def test_a_generator_counts_as_measured_what_a_collector_counts(mosquitto_broker, probe_factory) -> None:
    """`bench --generators`: a generator process reports as sent the images a collector in another process
    counts as measured, those whose sending time is at or after the start of the measured part, read from
    the same stamp. It used to count what it sent after its warm-up ended, which differed by the odd image
    stamped across the boundary (CI: "lost" -1)."""
    settings = Settings()
    samples = load_dataset(settings.dataset, settings.list_file)
    probe = probe_factory(mosquitto_broker.address, settings.topics.images, qos=0)
    gen = LoadGenerator(mosquitto_broker.address, settings, samples, "measure-gen", 5, ResultTracker(),
                        watch=False, collecting=False)
    gen.connect()
    try:
        since = time.time() + 0.3
        gen.measure_from = since
        sent, _seconds = gen.run(rate=400, window=0, count=None, duration=0.8, stop=threading.Event())
        assert gen.flush()
        probe.wait_count(sent)
    finally:
        gen.close()
    stamps = [extract_meta(m.payload).t for m in probe.messages(settings.topics.images)]
    assert len(stamps) == sent and None not in stamps
    measured = sum(1 for t in stamps if t is not None and t >= since)
    assert 0 < measured < sent  # images on both sides of the boundary
    assert gen.measured == measured
