"""Scale out: `run infer --workers 2` shares the image stream through a shared subscription on mosquitto.

Every image is answered exactly once across the group, both workers take part, and stopping the
parent stops its worker process too. The Python broker has no shared subscriptions: one worker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter

import pytest
from helpers import MqttProbe, process_alive, wait_for

from engine.digits.dataset import load_dataset
from engine.protocol import embed_meta
from engine.roles.pipeline import LocalPipeline
from engine.settings import DEFAULT_DATASET, Settings

IMAGES = 400


def _statuses(probe: MqttProbe) -> dict[str, dict]:
    latest: dict[str, dict] = {}
    for msg in probe.messages("mnist/status/infer/+"):
        if msg.payload:
            latest[msg.topic.rsplit("/", 1)[1]] = json.loads(msg.payload)
    return latest


@pytest.mark.slow
def test_two_worker_processes_answer_each_image_exactly_once(mosquitto_broker, probe_factory) -> None:
    address = mosquitto_broker.address
    probe = probe_factory(address, ["result", "mnist/status/infer/+"], qos=1)
    env = dict(os.environ, MNIST_BROKER=address.url)
    env.pop("MNIST_WORKERS", None)
    parent = subprocess.Popen(
        [sys.executable, "-m", "engine", "--qos", "1", "--group", "scale-test", "--id", "scale",
         "run", "infer", "--workers", "2", "--quiet"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: {"scale-1", "scale-2"} <= {w for w, s in _statuses(probe).items()
                                                    if s.get("state") == "running"},
                 timeout=60, message=lambda: f"workers not running: {_statuses(probe)}")
        statuses = _statuses(probe)
        assert statuses["scale-1"]["pid"] == parent.pid
        child_pid = statuses["scale-2"]["pid"]
        assert child_pid != parent.pid
        # its own process group (a Ctrl-C reaches the parent only), but the parent's session: CPU time
        # shared out by session (autogroup) leaves the child's nice value in force against the parent's
        assert os.getpgid(child_pid) != os.getpgid(parent.pid) and os.getsid(child_pid) == os.getsid(parent.pid)
        assert statuses["scale-1"]["group"] == statuses["scale-2"]["group"] == "scale-test"

        samples = load_dataset(DEFAULT_DATASET)
        for i in range(IMAGES):
            sample = samples[i % len(samples)]
            payload = embed_meta(sample.png, {"id": f"scale-img-{i}", "label": sample.label, "t": 1.0, "src": "t"})
            info = probe.client.publish("mnist", payload, qos=1)
            assert info.rc == 0
        info.wait_for_publish(15)

        results = [json.loads(m.payload) for m in probe.wait_count(IMAGES, timeout=60, topic="result")]
        ids = Counter(r["id"] for r in results)
        assert set(ids) == {f"scale-img-{i}" for i in range(IMAGES)}
        assert max(ids.values()) == 1, f"answered twice: {[k for k, v in ids.items() if v > 1][:5]}"
        per_worker = Counter(r["worker"] for r in results)
        assert set(per_worker) == {"scale-1", "scale-2"}, per_worker
        assert all(r.get("pred") is not None for r in results)
    finally:
        parent.send_signal(signal.SIGTERM)
        try:
            parent.wait(timeout=30)
        except subprocess.TimeoutExpired:
            parent.kill()
            raise
    assert parent.returncode == 0, parent.stderr.read().decode(errors="replace")[-500:] if parent.stderr else ""
    wait_for(lambda: not process_alive(child_pid), timeout=15, message="the child worker outlived its parent")


def test_python_broker_falls_back_to_one_worker() -> None:
    pipeline = LocalPipeline(Settings(), roles=["infer"], broker_kind="python", workers=3)
    with pipeline:
        workers = [r for r in pipeline.roles if r.role == "infer"]
        assert len(workers) == 1
        assert pipeline.pool is None
        assert any("no shared subscriptions" in note for note in pipeline.notes)
