"""record a stretch of traffic on mosquitto, replay it, and compare what arrives with what was recorded."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import wait_for

from engine.recorder import read_recording

ENGINE = [sys.executable, "-m", "engine"]


def test_record_then_replay(mosquitto_broker, probe_factory, tmp_path) -> None:
    url = mosquitto_broker.address.url
    file = tmp_path / "traffic.ndjson"
    sender = probe_factory(mosquitto_broker.address)
    sender.publish("result", b"retained before the recording", qos=1, retain=True)
    rec = subprocess.Popen([*ENGINE, "--broker", url, "record", str(file), "-t", "mnist", "-t", "result",
                            "--messages", "6"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        sent = [("mnist", b"\x89PNG fake 1"), ("result", b'{"id": "a", "pred": 1}'), ("mnist", bytes(range(256))),
                ("other", b"not recorded"), ("result", b"tensor([7])"), ("mnist", b""), ("result", b"{}")]
        # the header is written once the recorder's subscription is acknowledged
        wait_for(lambda: file.exists() and file.stat().st_size > 0, timeout=60, message="recorder did not start")
        sender.publish("mnist", b"warm-up", qos=1)
        for topic, payload in sent:
            sender.publish(topic, payload, qos=1)
        out, err = rec.communicate(timeout=60)
        assert rec.returncode == 0, err
        assert "recorded 6 messages" in out
    finally:
        rec.kill()
    header, messages = read_recording(file)
    recorded = list(messages)
    assert header["topics"] == ["mnist", "result"]
    expected = [("mnist", b"warm-up")] + [m for m in sent if m[0] != "other"][:5]
    assert [(r.topic, r.payload) for r in recorded] == expected, "retained and unsubscribed messages left out"
    assert all(a.t <= b.t for a, b in zip(recorded, recorded[1:], strict=False))

    replayed = probe_factory(mosquitto_broker.address, ["mnist", "copy/#"])
    argv = ["--broker", url, "replay", str(file), "--speed", "0", "--map", "result=copy/result"]
    done = subprocess.run([*ENGINE, *argv], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    got = replayed.wait_count(len(expected))
    mapped = [("result" if m.topic == "copy/result" else m.topic, m.payload) for m in got]
    assert mapped == expected


def test_replay_of_a_file_that_is_not_a_recording(tmp_path) -> None:
    bad = tmp_path / "bad.ndjson"
    bad.write_text(json.dumps({"hello": 1}) + "\n")
    done = subprocess.run([*ENGINE, "--broker", "mqtt://127.0.0.1:1", "replay", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"mnist-tui: {bad} is not a mnist-tui recording (no header line)"]
