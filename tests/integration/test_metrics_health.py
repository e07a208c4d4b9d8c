"""`mnist-tui metrics` and `mnist-tui health` against a real mosquitto and real roles: the exporter is
scraped with a plain HTTP GET, the health check's exit status follows a worker that starts and dies."""

from __future__ import annotations

import json
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest
from helpers import DEADLINE, MqttProbe, wait_for
from prometheus_client.parser import text_string_to_metric_families

from engine.monitor.health import verdict
from engine.monitor.metrics import MetricsBoard, number
from engine.roles.pipeline import LocalPipeline
from engine.settings import Settings

ENGINE = [sys.executable, "-m", "engine"]
Samples = dict[tuple[str, str, str], float]


def _read_line(proc: subprocess.Popen[str], timeout: float = DEADLINE) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise AssertionError(f"no line from {proc.args} within {timeout:g} s")
    return proc.stdout.readline()


@pytest.fixture
def exporter(mosquitto_broker) -> Iterator[str]:
    """A `metrics` process on a free port watching the broker; yields its /metrics URL."""
    yield from _exporter(mosquitto_broker.address.url)


def _exporter(broker_url: str) -> Iterator[str]:
    proc = subprocess.Popen([*ENGINE, "--broker", broker_url, "metrics", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = _read_line(proc)
        assert line.startswith("metrics of "), (line, proc.stderr.read() if proc.poll() is not None else "")
        yield line.split(" on ")[-1].strip()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=DEADLINE) == 0, "the exporter ends cleanly on SIGTERM"


def scrape(url: str) -> Samples:
    """Every sample of one scrape as {(name, role, id): value} (a plain HTTP GET, parsed by the reference parser)."""
    with urllib.request.urlopen(url, timeout=DEADLINE) as response:
        assert response.status == 200
        text = response.read().decode("utf-8")
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if "le" not in s.labels:
                samples[(s.name, s.labels.get("role", ""), s.labels.get("id", ""))] = s.value
    return samples


def _health(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ENGINE, "--broker", url, "health", *args], capture_output=True, text=True, timeout=60)


def test_exporter_counts_a_real_pipeline_and_skips_bad_fields(mosquitto_broker, exporter) -> None:
    count = 40
    settings = Settings(rate=0, qos=1, loop=False, count=count, autostart=True)
    ids = {"input": "in-m", "infer": "w-m", "output": "out-m"}
    with LocalPipeline(settings, address=mosquitto_broker.address, client_ids=ids) as pipeline, \
            MqttProbe(mosquitto_broker.address) as probe:
        # a role on the broker that says nonsense: wrong types, NaN, negative, unknown role, not JSON
        bogus = {"role": "infer", "id": "w-bad", "state": "running", "processed": True, "queue": "lots",
                 "dropped": float("nan"), "errors": -3, "rate": 12.5, "received": 7}
        probe.publish("mnist/status/infer/w-bad", json.dumps(bogus), qos=1, retain=True)
        probe.publish("mnist/status/infer/w-junk", b"\xff not json", qos=1, retain=True)
        probe.publish("mnist/status/gremlin/g1", json.dumps({"state": "running", "sent": 5}), qos=1, retain=True)
        probe.publish("result", b"tensor([7])")  # a legacy result: no worker, no histogram

        def settled() -> Samples | None:
            got = scrape(exporter)
            done = (got.get(("mnist_results_total", "output", "out-m")) == count + 1  # the legacy one too
                    and got.get(("mnist_images_total", "input", "in-m")) == count
                    and got.get(("mnist_images_total", "infer", "w-m")) == count  # statuses lag results: wait
                    and got.get(("mnist_results_total", "infer", "w-m")) == count
                    and got.get(("mnist_latency_seconds_count", "infer", "w-m")) == count
                    and ("mnist_rate", "infer", "w-bad") in got)
            return got if done else None

        got = wait_for(settled, timeout=60, interval=0.3,
                       message=lambda: f"scrape: {sorted((k, v) for k, v in scrape(exporter).items() if k[1])}")
        assert pipeline.role("output").received == count + 1
    assert got[("mnist_errors_total", "infer", "w-m")] == 0
    assert got[("mnist_dropped_total", "infer", "w-m")] == 0
    assert got[("mnist_expired_total", "infer", "w-m")] == 0
    assert got[("mnist_backlogs_dropped_total", "infer", "w-m")] == 0
    assert got[("mnist_intake_pauses_total", "infer", "w-m")] == 0
    assert got[("mnist_no_subscriber_total", "input", "in-m")] == 0
    assert got[("mnist_duplicates_total", "output", "out-m")] == 0
    assert got[("mnist_sessions_lost_total", "infer", "w-m")] == 0
    assert got[("mnist_online", "infer", "w-m")] == 1
    assert got[("mnist_batch_size_count", "infer", "w-m")] == count
    assert count <= got[("mnist_batch_size_sum", "infer", "w-m")] <= count * 64
    assert 0 < got[("mnist_latency_seconds_sum", "infer", "w-m")] < count * 60
    assert got[("mnist_accuracy", "output", "out-m")] >= 0.9
    # the bogus role: its good fields are there, every bad one is left out, and nothing else broke
    assert got[("mnist_rate", "infer", "w-bad")] == 12.5
    assert got[("mnist_images_total", "infer", "w-bad")] == 7
    for name in ("mnist_results_total", "mnist_queue", "mnist_dropped_total", "mnist_errors_total"):
        assert (name, "infer", "w-bad") not in got, name
    assert not any(key[2] in ("w-junk", "g1") for key in got)
    assert got[("mnist_exporter_ignored_total", "", "")] >= 1  # the legacy result
    assert got[("mnist_exporter_broker_connected", "", "")] == 1


def test_health_and_sessions_lost_follow_a_worker_that_starts_and_is_killed(mosquitto_broker, exporter) -> None:
    url = mosquitto_broker.address.url
    none = _health(url, "--timeout", "0")
    assert none.returncode == 1
    assert none.stderr.strip() == "unhealthy: 0 of at least 1 infer role(s) online (no status seen)"
    worker = subprocess.Popen([*ENGINE, "--broker", url, "run", "infer", "--id", "w-k", "--quiet"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        up = _health(url, "--timeout", "60")  # waits for the worker to come up
        assert up.returncode == 0, up.stderr
        assert up.stdout.strip() == "healthy: 1 infer role(s) online (w-k)"
        two = _health(url, "--min", "2", "--timeout", "0")
        assert two.returncode == 1 and "1 of at least 2 infer" in two.stderr and "\n" not in two.stderr.strip()
        assert _health(url, "--role", "output", "--timeout", "0").returncode == 1
        wait_for(lambda: scrape(exporter).get(("mnist_online", "infer", "w-k")) == 1, timeout=30, interval=0.2)
        os.kill(worker.pid, signal.SIGKILL)  # no goodbye: the broker publishes its last will
        worker.wait(timeout=DEADLINE)
        wait_for(lambda: scrape(exporter).get(("mnist_sessions_lost_total", "infer", "w-k")) == 1,
                 timeout=60, interval=0.2, message="the killed worker's session not counted as lost")
        got = scrape(exporter)
        assert got[("mnist_online", "infer", "w-k")] == 0
        down = _health(url, "--timeout", "0")
        assert down.returncode == 1
        assert down.stderr.strip() == "unhealthy: 0 of at least 1 infer role(s) online (w-k offline)"
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=DEADLINE)


def test_a_status_the_broker_kept_after_its_role_died_is_not_online(mosquitto_broker) -> None:
    """Retained statuses outlive their roles (a role that died while the broker was down never had its last
    will published; anyone can retain a status by hand). health and metrics count a role only while it is
    heard: a status sent live, or a retained one whose ts is seconds old. A state outside the protocol is
    not healthy either."""
    url = mosquitto_broker.address.url
    now = time.time()
    with MqttProbe(mosquitto_broker.address) as probe:
        for cid, status in (("ghost", {"state": "running", "ts": now - 3600}),
                            ("no-time", {"state": "running"}),
                            ("junk", {"state": "\x1b[2J[/]", "ts": now})):
            probe.publish(f"mnist/status/infer/{cid}", json.dumps({"role": "infer", "id": cid, **status}),
                          qos=1, retain=True)
        stop = threading.Event()

        def alive() -> None:  # a role that sends its status every half second, as a real one does every second
            while not stop.is_set():
                probe.publish("mnist/status/infer/alive", json.dumps(
                    {"role": "infer", "id": "alive", "state": "running", "ts": time.time()}), qos=1, retain=True)
                stop.wait(0.5)

        beat = threading.Thread(target=alive, daemon=True)
        beat.start()
        try:
            one = _health(url, "--timeout", "30")
            assert one.returncode == 0, one.stderr
            assert one.stdout.strip() == "healthy: 1 infer role(s) online (alive)"
            two = _health(url, "--min", "2", "--timeout", "2")
            assert two.returncode == 1
            assert two.stderr.strip() == ("unhealthy: 1 of at least 2 infer role(s) online (ghost silent (last "
                                          "status 60 min ago); junk unknown; no-time silent (no time in its status))")
            exporter = _exporter(url)
            metrics_url = next(exporter)
            try:
                got = wait_for(lambda: (lambda g: g if ("mnist_online", "infer", "ghost") in g
                                        and g.get(("mnist_online", "infer", "alive")) == 1 else None)(
                    scrape(metrics_url)), timeout=60, interval=0.3, message="the exporter never saw the roles")
                assert got[("mnist_online", "infer", "ghost")] == 0
                assert got[("mnist_online", "infer", "no-time")] == 0
                assert got[("mnist_online", "infer", "junk")] == 0
            finally:
                exporter.close()
        finally:
            stop.set()
            beat.join(timeout=DEADLINE)


def test_ids_that_differ_only_in_odd_characters_are_different_roles(mosquitto_broker) -> None:
    """health and the exporter named a role by sanitize_id of its id: `infer_1`, `infer 1` and `infer` + U+200B
    + `1` were one role ("healthy: 1"), whichever wrote last."""
    url = mosquitto_broker.address.url
    ids = ["infer_1", "infer 1", "infer\u200b1"]
    with MqttProbe(mosquitto_broker.address) as probe:
        stop = threading.Event()

        def alive() -> None:  # three roles that send their status every half second
            while not stop.is_set():
                for cid in ids:
                    probe.publish(f"mnist/status/infer/{cid}", json.dumps(
                        {"role": "infer", "id": cid, "state": "running", "ts": time.time()}), qos=1, retain=True)
                stop.wait(0.5)

        beat = threading.Thread(target=alive, daemon=True)
        beat.start()
        try:
            done = _health(url, "--min", "3", "--timeout", "30")
            assert done.returncode == 0, done.stderr
            assert done.stdout.strip() == "healthy: 3 infer role(s) online (infer 1, infer\\u200b1, infer_1)"
            exporter = _exporter(url)
            metrics_url = next(exporter)
            try:
                wait_for(lambda: all(scrape(metrics_url).get(("mnist_online", "infer", cid)) == 1
                                     for cid in ("infer_1", "infer 1", "infer\\u200b1")),
                         timeout=60, interval=0.3, message=lambda: f"not three series: {scrape(metrics_url)}")
            finally:
                exporter.close()
        finally:
            stop.set()
            beat.join(timeout=DEADLINE)
        for cid in ids:
            probe.publish(f"mnist/status/infer/{cid}", b"", qos=1, retain=True)


def test_a_kept_status_whose_time_is_ahead_of_the_clock_is_not_online(mosquitto_broker) -> None:
    """A retained ts far ahead of the watcher's clock (a role that died on a host whose clock runs an hour
    ahead, a status retained by hand with a time to come) says nothing of its age: it was counted as heard
    the moment each watcher started, so health found a dead worker healthy for as long as that clock was ahead."""
    url = mosquitto_broker.address.url
    with MqttProbe(mosquitto_broker.address) as probe:
        probe.publish("mnist/status/infer/ahead", json.dumps(
            {"role": "infer", "id": "ahead", "state": "running", "ts": time.time() + 3600}), qos=1, retain=True)
        for wait in ("0", "2"):
            done = _health(url, "--timeout", wait)
            assert done.returncode == 1, done.stdout
            assert done.stderr.strip() == ("unhealthy: 0 of at least 1 infer role(s) online (ahead silent (its time "
                                           "is ahead of this clock))")


def _online(board: MetricsBoard) -> dict[str, float]:
    return {s.labels["id"]: s.value for family in board.collect() if family.name == "mnist_online"
            for s in family.samples}


def test_the_exporter_keeps_a_role_heard_live_when_its_kept_status_comes_again() -> None:
    """After the exporter reconnects, the broker sends every retained status again (retain flag set). A role
    whose clock runs behind this one's has a ts older than 10 s in it: the role was heard live a moment ago
    and is not silent for that; a ts an hour ahead is not a fresh status either."""
    board = MetricsBoard()
    wall = time.time()
    behind = {"role": "infer", "id": "w-behind", "state": "running", "ts": wall - 60}
    board.on_status("infer", "w-behind", behind, False)  # live: heard now, whatever its clock says
    assert _online(board) == {"w-behind": 1.0}
    board.on_status("infer", "w-behind", behind, True)  # the same status, kept, after a reconnect
    assert _online(board) == {"w-behind": 1.0}
    board.on_status("infer", "w-ahead", {"role": "infer", "id": "w-ahead", "state": "running", "ts": wall + 3600},
                    True)
    board.on_status("infer", "w-fresh", {"role": "infer", "id": "w-fresh", "state": "running", "ts": wall}, True)
    assert _online(board) == {"w-behind": 1.0, "w-ahead": 0.0, "w-fresh": 1.0}


def test_health_of_an_unreachable_broker_is_one_line() -> None:
    done = _health("mqtt://127.0.0.1:1", "--timeout", "1")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "cannot reach broker" in done.stderr


def test_untrusted_status_fields() -> None:
    assert number(3) == 3.0 and number(2.5) == 2.5
    for bad in (True, None, "7", float("nan"), math.inf, -1, [1], {"a": 1}, 10**400):  # 10**400: float() raised,
        assert number(bad) is None, bad  # and every scrape answered 500 while that status was kept
    ok, line = verdict({"a": {"state": "running"}, "b": {"state": "error"}, "c": {"state": 5},
                        "d": {"state": "running", "connected": False}}, "infer", 1)
    assert ok and line == "healthy: 1 infer role(s) online (a)"
    ok, line = verdict({"b": {"state": "error"}, "c": {"state": 5}}, "infer", 1)
    assert not ok and line == "unhealthy: 0 of at least 1 infer role(s) online (b error; c unknown)"
    assert verdict({}, "infer", 0)[0], "--min 0 is always healthy"
    ok, line = verdict({"a": {"state": "running"}, "g": {"state": "running"}, "n": {"state": "stopped"},
                        "j": {"state": "\x1b[2J[/]"}}, "infer", 2, {"g": 3600.0, "n": float("inf"), "a": 9.0})
    assert not ok and line == ("unhealthy: 1 of at least 2 infer role(s) online (g silent (last status 60 min "
                               "ago); j unknown; n silent (no time in its status))")


def test_exporter_refuses_a_busy_port(mosquitto_broker) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        started = time.monotonic()
        done = subprocess.run([*ENGINE, "--broker", mosquitto_broker.address.url, "metrics", "--port", str(port)],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, time.monotonic() - started
    assert done.stderr.startswith(f"mnist-tui: cannot listen on 127.0.0.1:{port}") and done.stderr.count("\n") == 1
