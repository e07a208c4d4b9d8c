"""The three roles end to end on real brokers, interop with the mosquitto clients, status and last will,
bad payloads, control commands, and the headless command's errors and clean shutdown."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import pytest
from helpers import MqttProbe, wait_for

from engine.digits.dataset import load_dataset
from engine.protocol import embed_meta
from engine.roles.pipeline import LocalPipeline
from engine.settings import DEFAULT_DATASET, Settings

ASSETS = DEFAULT_DATASET
ENGINE = [sys.executable, "-m", "engine"]


def _results(probe: MqttProbe) -> list[dict]:
    return [json.loads(m.payload) for m in probe.messages("result")]




def test_whole_dataset_end_to_end(broker, probe_factory) -> None:
    """Input plays every asset once, infer answers each exactly once, output's accuracy is the model's.
    The publisher sends at a lower priority, as in the console (publisher_nice), and still sends them all."""
    size = len(load_dataset(ASSETS))
    probe = probe_factory(broker.address, "result")
    settings = Settings(rate=0, qos=1, loop=False, autostart=True)
    with LocalPipeline(settings, address=broker.address, publisher_nice=3) as pipeline:
        collector = pipeline.role("output")
        ours = os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) if sys.platform.startswith("linux") else 19
        if ours <= 16:  # Linux, with room below us to lower a thread
            nice = {r.role: os.getpriority(os.PRIO_PROCESS, r._status_thread.native_id) for r in pipeline.roles}
            publishing = pipeline.role("input")._thread.native_id  # it lowers itself first thing
            wait_for(lambda: os.getpriority(os.PRIO_PROCESS, publishing) != ours, message="publisher not lowered")
            nice["input-publish"] = os.getpriority(os.PRIO_PROCESS, publishing)
            # the publishing thread only: the input role's control and status threads answer as before
            assert nice == {"input": ours, "input-publish": ours + 3, "infer": ours, "output": ours}, \
                (ours, nice)
        wait_for(lambda: collector.received >= size, timeout=120,
                 message=lambda: f"collector has {collector.received} of {size} results")
        results = [json.loads(m.payload) for m in probe.wait_count(size, timeout=30)]
        publisher = pipeline.role("input")
        assert publisher.sent == size
        ids = [r["id"] for r in results]
        assert len(set(ids)) == size == len(ids), "every image answered exactly once"
        assert set(ids) == {f"{publisher.client_id}-{n}" for n in range(1, size + 1)}
        assert all("pred" in r and r["label"] is not None for r in results)
        assert collector.duplicates == 0 and collector.errors == 0
        assert collector.accuracy >= 0.98
        status = collector.status()
        assert sum(map(sum, status["confusion"])) == size
        lat = status["lat_ms"]
        assert lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]


@pytest.mark.skipif(shutil.which("mosquitto_pub") is None, reason="mosquitto-clients not installed")
def test_mosquitto_clients_interop(mosquitto_broker, tmp_path) -> None:
    """`mosquitto_pub -f digit.png` gets a result that `mosquitto_sub` reads; legacy text results count."""
    port = str(mosquitto_broker.address.port)
    with LocalPipeline(Settings(), roles=("infer", "output"), address=mosquitto_broker.address) as pipeline:
        sub = subprocess.Popen(["mosquitto_sub", "-p", port, "-t", "result", "-C", "1", "-W", "30"],
                               stdout=subprocess.PIPE, text=True)
        probe = MqttProbe(mosquitto_broker.address, "result")
        try:
            digit = ASSETS / "0.png"
            subprocess.run(["mosquitto_pub", "-p", port, "-t", "mnist", "-f", str(digit)], check=True, timeout=30)
            out, _ = sub.communicate(timeout=40)
            result = json.loads(out)
            label = dict(line.split() for line in (ASSETS / "list.txt").read_text().splitlines())["0.png"]
            assert result["pred"] == int(label)
            assert result["id"].startswith(pipeline.role("infer").client_id + ":"), "no metadata: worker's id"
            assert result["label"] is None
            subprocess.run(["mosquitto_pub", "-p", port, "-t", "result", "-m", "tensor([7])"], check=True, timeout=30)
            collector = pipeline.role("output")
            wait_for(lambda: collector.legacy == 1, message="legacy result not counted")
        finally:
            probe.close()
            sub.kill()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _bomb_png() -> bytes:
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + _png_chunk(b"IEND", b""))


def test_bad_payloads_get_error_results_and_the_worker_goes_on(broker, probe_factory) -> None:
    good = (ASSETS / "1.png").read_bytes()
    bad = {
        "empty": b"",
        "random": os.urandom(300),
        "truncated": good[: len(good) // 2],
        "too-big": b"\x89PNG\r\n\x1a\n" + b"\x00" * (2 * 1024 * 1024),
        "bomb": _bomb_png(),
    }
    probe = probe_factory(broker.address, "result")
    with LocalPipeline(Settings(), roles=("infer",), address=broker.address) as pipeline:
        sender = probe_factory(broker.address)
        for name, payload in bad.items():
            tagged = embed_meta(payload, {"id": name}) if payload.endswith(b"IEND\xaeB`\x82") else payload
            sender.publish("mnist", tagged, qos=1)
        sender.publish("mnist", embed_meta(good, {"id": "good", "label": 2}), qos=1)
        results = probe.wait_count(len(bad) + 1, timeout=30)
        by_id = {r["id"]: r for r in _results(probe)}
        assert "pred" in by_id["good"] and by_id["good"]["label"] == 2
        errors = [r for r in results if "error" in json.loads(r.payload)]
        assert len(errors) == len(bad), [json.loads(m.payload) for m in results]
        assert "bomb" in by_id and "error" in by_id["bomb"] and "pred" not in by_id["bomb"]
        for r in map(lambda m: json.loads(m.payload), errors):
            assert r["error"] and "\n" not in r["error"]
        assert pipeline.role("infer").errors == len(bad)


def test_control_commands_and_their_answers(broker, probe_factory) -> None:
    settings = Settings(rate=5)
    with LocalPipeline(settings, roles=("input",), address=broker.address) as pipeline:
        publisher = pipeline.role("input")
        replies = probe_factory(broker.address, "mnist/reply/#")
        ctl = probe_factory(broker.address)
        ctl.publish("mnist/control/input", json.dumps({"cmd": "rate", "value": 250, "req": "r1"}), qos=1)
        ctl.publish(f"mnist/control/input/{publisher.client_id}", b'{"cmd": "start"}', qos=1)
        ctl.publish("mnist/control/input", b"{not json", qos=1)
        ctl.publish("mnist/control/input", b'{"cmd": "warp"}', qos=1)
        ctl.publish("mnist/control/input", b'{"cmd": "rate", "value": -3}', qos=1)
        ctl.publish("mnist/control/input", b'{"cmd": "set", "qos": 7}', qos=1)
        answers = [json.loads(m.payload) for m in replies.wait_count(6)]
        assert [a["ok"] for a in answers] == [True, True, False, False, False, False]
        assert answers[0]["req"] == "r1"
        assert "unknown command 'warp'" in answers[3]["error"]
        assert publisher.rate == 250
        wait_for(lambda: publisher.sent > 0, message="publisher did not start")
        ctl.publish("mnist/control/input", b'{"cmd": "stop"}', qos=1)
        wait_for(lambda: publisher.state == "stopped")


def test_a_rate_too_small_is_refused_and_a_slow_rate_gives_way_to_a_fast_one_at_once(broker, probe_factory) -> None:
    """A rate of 5e-324 images/s once killed the publishing thread (a wait past what the clock can hold), and
    after 0.01/s a new rate of 20/s waited out the 100 s planned at the old one."""
    with LocalPipeline(Settings(rate=0.01), roles=("input",), address=broker.address) as pipeline:
        publisher = pipeline.role("input")
        replies = probe_factory(broker.address, "mnist/reply/#")
        ctl = probe_factory(broker.address)
        for tiny in (5e-324, 0.001):
            ctl.publish("mnist/control/input", json.dumps({"cmd": "rate", "value": tiny}), qos=1)
        ctl.publish("mnist/control/input", b'{"cmd": "start"}', qos=1)
        answers = [json.loads(m.payload) for m in replies.wait_count(3)]
        assert [a["ok"] for a in answers] == [False, False, True], answers
        assert "below 0.01/s" in answers[0]["error"]
        assert publisher.rate == 0.01
        wait_for(lambda: publisher.sent == 1, message="the first image goes out at once")
        ctl.publish("mnist/control/input", b'{"cmd": "rate", "value": 20}', qos=1)
        wait_for(lambda: publisher.sent >= 5, timeout=30, message=lambda: f"{publisher.sent} sent at 20/s")
        assert publisher.status()["state"] == "running"
        ctl.publish("mnist/control/input", b'{"cmd": "stop"}', qos=1)
        wait_for(lambda: publisher.state == "stopped")


def _status(probe: MqttProbe, topic: str) -> dict | None:
    found = probe.messages(topic)
    return json.loads(found[-1].payload) if found and found[-1].payload else None


def test_status_and_last_will_of_a_killed_role(mosquitto_broker, probe_factory) -> None:
    url = mosquitto_broker.address.url
    topic = "mnist/status/infer/w-kill"
    probe = probe_factory(mosquitto_broker.address, "mnist/status/#")
    proc = subprocess.Popen([*ENGINE, "--broker", url, "run", "infer", "--id", "w-kill", "--quiet"],
                            stderr=subprocess.PIPE)
    try:
        status = wait_for(lambda: (_status(probe, topic) or {}).get("state") == "running" and _status(probe, topic),
                          timeout=60, message="worker status never said running")
        assert status["role"] == "infer" and status["model"] and status["pid"] == proc.pid
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        wait_for(lambda: (_status(probe, topic) or {}).get("state") == "offline", timeout=30,
                 message="last will did not mark the worker offline")
        assert _status(probe, topic)["connected"] is False
    finally:
        proc.kill()


def test_sigterm_stops_cleanly_and_says_offline(mosquitto_broker, probe_factory) -> None:
    url = mosquitto_broker.address.url
    probe = probe_factory(mosquitto_broker.address, "mnist/status/#")
    proc = subprocess.Popen([*ENGINE, "--broker", url, "--rate", "50", "run", "input", "infer", "output"],
                            stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    try:
        wait_for(lambda: len({m.topic for m in probe.messages()}) >= 3, timeout=60, message="roles never reported")
        # running, not still starting: a signal while starting aborts the start (exit 130, tested elsewhere)
        wait_for(lambda: any("broker: " in line for line in lines), timeout=60, message="never said it started")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        reader.join(10)
        err = "".join(lines)
        assert "Traceback" not in err
        for topic in {m.topic for m in probe.messages()}:
            assert _status(probe, topic)["state"] == "offline"
            assert _status(probe, topic)["connected"] is True, "a goodbye, not a last will"
    finally:
        proc.kill()


def _bad_list(tmp: Path) -> Path:
    (tmp / "0.png").write_bytes((ASSETS / "0.png").read_bytes())
    (tmp / "list.txt").write_text("0.png seven\n")
    return tmp


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--broker", "mqtt://127.0.0.1:1", "run", "infer"], "cannot reach broker"),
        (["--broker", "http://x", "run", "infer"], "bad broker URL"),
        (["--broker", "mqtt://127.0.0.1:1", "--dataset", "/nonexistent", "run", "input"], "dataset folder not found"),
        (["--broker", "mqtt://127.0.0.1:1", "--dataset", "{tmp}", "run", "input"], "line 1"),
        (["--broker", "mqtt://127.0.0.1:1", "--model", "/nonexistent.pt", "run", "infer"], "nonexistent.pt"),
        (["--broker", "mqtt://127.0.0.1:1", "--topic-prefix", "/".join(["p"] * 198), "run", "infer"],
         "deeper than 200 levels"),
        (["--broker", "mqtt://127.0.0.1:1", "--rate", "0.001", "run", "input"], "0 (max) or from 0.01"),
        (["--broker", "mqtt://[::1", "run", "input"], "bad broker URL"),
        (["--broker", "mqtt://127.0.0.1:", "run", "input"], "no port after the ':'"),  # was 1883
        (["--broker", "mqtt://127.0.0.1:0", "run", "input"], "port 0"),
        (["--broker", "mqtt://127.0.0.1:1", "--threads", "100000", "run", "infer"], "from 1 to 256"),
    ],
)
def test_bad_configuration_gives_one_line_and_non_zero_exit(argv, expected, tmp_path) -> None:
    argv = [a.replace("{tmp}", str(_bad_list(tmp_path))) for a in argv]
    done = subprocess.run([*ENGINE, *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], done.stderr
