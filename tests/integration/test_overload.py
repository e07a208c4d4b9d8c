"""Under load the roles stay steerable: a flooded worker answers, reports and sheds; an input role at full
speed answers `stop` and then publishes nothing; `bench --generators 2` runs end to end. Real mosquitto,
worker and publisher as their own processes; waits with deadlines, no time asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from helpers import MqttProbe, check_latency_parts, started, wait_for

from engine.protocol import extract_meta
from engine.roles.publisher import Publisher
from engine.settings import DEFAULT_DATASET, Settings

ENGINE = [sys.executable, "-m", "engine"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("MNIST_BROKER", "MNIST_WORKERS", "MNIST_RATE", "MNIST_QUEUE_SIZE"):
        env.pop(name, None)
    return env


def _terminate(proc: subprocess.Popen[str]) -> str:
    """SIGTERM, up to 30 s to exit, then SIGKILL; what it wrote on stderr."""
    proc.terminate()
    try:
        proc.wait(30)
    finally:
        proc.kill()
    assert proc.stderr is not None
    return proc.stderr.read()


def _latest(probe: MqttProbe, topic: str) -> dict:
    found = [m for m in probe.messages(topic) if m.payload]
    return json.loads(found[-1].payload) if found else {}


@pytest.mark.slow
@pytest.mark.needs_mosquitto_clients
def test_flooded_worker_answers_reports_and_sheds(mosquitto_broker, probe_factory) -> None:
    """Two `mosquitto_pub --repeat` floods at QoS 0 offer a worker far more than it can take: it sheds,
    and meanwhile still publishes results and its status, and answers `ping` on its control topic."""
    address = mosquitto_broker.address
    wid = "w-flood"
    status_topic = f"mnist/status/infer/{wid}"
    watch = probe_factory(address, [status_topic, f"mnist/reply/infer/{wid}"])
    worker = subprocess.Popen([*ENGINE, "--broker", address.url, "--queue-size", "200", "run", "infer", "--id", wid,
                               "--quiet"], stderr=subprocess.PIPE, text=True, env=_env())
    floods: list[subprocess.Popen[bytes]] = []
    try:
        wait_for(lambda: _latest(watch, status_topic).get("state") == "running", timeout=60,
                 message="worker never said running")
        digit = str(DEFAULT_DATASET / "0.png")
        for _ in range(2):
            floods.append(subprocess.Popen(
                ["mosquitto_pub", "-h", address.host, "-p", str(address.port), "-t", "mnist", "-q", "0",
                 "-f", digit, "--repeat", "2000000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        results = probe_factory(address, "result", qos=0)
        wait_for(lambda: _latest(watch, status_topic).get("shed", 0) > 0, timeout=60,
                 message=lambda: f"worker never shed under the flood: {_latest(watch, status_topic)}")
        assert all(f.poll() is None for f in floods), "the flood ended before the worker was overloaded"
        # still answering images, still reporting, still taking commands
        answered = len(results.messages())
        wait_for(lambda: len(results.messages()) > answered + 100, timeout=30, message="no results under the flood")
        statuses = len(watch.messages(status_topic))
        wait_for(lambda: len(watch.messages(status_topic)) >= statuses + 3, timeout=30,
                 message="the status stopped coming under the flood")
        for n in range(3):
            watch.publish(f"mnist/control/infer/{wid}", json.dumps({"cmd": "ping", "req": f"p{n}"}), qos=0)
            wait_for(lambda n=n: any(json.loads(m.payload).get("req") == f"p{n}"
                                     for m in watch.messages(f"mnist/reply/infer/{wid}")),
                     timeout=30, message=f"ping {n} unanswered under the flood")
        status = _latest(watch, status_topic)
        assert status["queue"] <= status["queue_max"] == 200
        # a queue that was full since the last status says so, whatever its length at this moment
        assert any(s.get("queue_peak", 0) >= 150 for s in map(json.loads, (m.payload for m in watch.messages(
            status_topic)[-5:]))), [json.loads(m.payload).get("queue_peak") for m in watch.messages(status_topic)]
        assert status["queue_peak"] <= status["queue_max"]
        assert any(json.loads(m.payload).get("queue_full") is True for m in watch.messages(status_topic)[-5:])
        assert status["dropped"] >= status["shed"] > 0
        # it left its subscription while its queue was full, and came back: it answered on meanwhile
        assert status["intake_pauses"] >= 1 and status["subscribed"] is True
        assert all(f.poll() is None for f in floods), "the flood ended before the checks"
    finally:
        for f in floods:
            f.kill()
        stderr = _terminate(worker)
    assert "Traceback" not in stderr


def test_input_at_full_speed_answers_stop_then_publishes_nothing(mosquitto_broker, probe_factory) -> None:
    """`--rate 0 run input`: `stop` is answered, and no image numbered past the count its reply-time
    status gives is ever published; the next status says the same count."""
    address = mosquitto_broker.address
    pid = "in-fast"
    status_topic = f"mnist/status/input/{pid}"
    watch = probe_factory(address, [status_topic, f"mnist/reply/input/{pid}"])
    images = probe_factory(address, "mnist", qos=0)
    proc = subprocess.Popen([*ENGINE, "--broker", address.url, "--rate", "0", "run", "input", "--id", pid],
                            stderr=subprocess.PIPE, text=True, env=_env())
    try:
        wait_for(lambda: _latest(watch, status_topic).get("sent", 0) > 3000, timeout=60,
                 message=lambda: f"publisher never got going: {_latest(watch, status_topic)}")
        watch.publish(f"mnist/control/input/{pid}", json.dumps({"cmd": "stop", "req": "halt"}), qos=1)
        reply = wait_for(lambda: next((json.loads(m.payload) for m in watch.messages(f"mnist/reply/input/{pid}")),
                                      None), timeout=30, message="stop unanswered at full speed")
        assert reply == {"req": "halt", "cmd": "stop", "ok": True}
        stopped = wait_for(lambda: next((s for m in watch.messages(status_topic) if m.payload
                                         and (s := json.loads(m.payload)).get("state") == "stopped"), None),
                           timeout=30, message="no status after the stop")
        count = stopped["sent"]
        later = wait_for(lambda: next((s for m in watch.messages(status_topic) if m.payload
                                       and (s := json.loads(m.payload))["ts"] > stopped["ts"] + 1.5), None),
                         timeout=30, message="status stopped coming")
        assert later["sent"] == count and later["state"] == "stopped"
        prefix = f"{pid}-"
        seqs = []
        for m in images.messages("mnist"):
            msg_id = extract_meta(m.payload).id or ""
            if msg_id.startswith(prefix):
                seqs.append(int(msg_id[len(prefix):]))
        assert seqs and max(seqs) <= count, f"image {max(seqs)} published after the stop at {count}"
    finally:
        stderr = _terminate(proc)
    assert "Traceback" not in stderr


@pytest.mark.slow
def test_bench_with_two_generator_processes(mosquitto_broker) -> None:
    """`bench --generators 2`: two publishing and collecting processes, one worker, pings; the report adds up."""
    done = subprocess.run(
        [*ENGINE, "bench", "--no-progress", "--broker", mosquitto_broker.address.url, "--generators", "2",
         "--rate", "300", "--duration", "2", "--warmup", "0.5", "--drain", "2", "--json"],
        capture_output=True, text=True, timeout=180, env=_env(), stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-800:]
    report = json.loads(done.stdout)
    assert report["config"]["generators"] == 2
    assert report["sent"] > 0 and report["answered"] > 0
    assert report["answered"] + report["lost"] == report["sent"]
    assert report["foreign_results"] == 0
    (worker,) = report["per_worker"].values()
    assert worker["answered"] == report["answered"]
    assert worker["cpu_us_per_image"] > 0
    assert {"generator 1", "generator 2"} <= set(report["processes"])
    control = report["control_ms"]
    assert control["sent"] > 0 and control["p50"] is not None and control["p50"] <= control["p99"]
    check_latency_parts(report)  # merged from the generator processes' tallies


@pytest.mark.slow
def test_bench_with_a_collector_process_of_its_own(mosquitto_broker) -> None:
    """`bench --generators 2 --collectors 1`: the generators only publish, one process collects every result."""
    done = subprocess.run(
        [*ENGINE, "bench", "--no-progress", "--broker", mosquitto_broker.address.url, "--generators", "2",
         "--collectors", "1", "--qos", "1", "--rate", "300", "--duration", "2", "--warmup", "0.5", "--drain", "2",
         "--json"],
        capture_output=True, text=True, timeout=180, env=_env(), stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-800:]
    report = json.loads(done.stdout)
    assert report["config"]["generators"] == 2 and report["config"]["collectors"] == 1
    assert {"generator 1", "generator 2", "collector 1"} <= set(report["processes"])
    assert report["sent"] > 0 and report["answered"] + report["lost"] == report["sent"]
    assert report["lost"] == 0 and report["duplicated"] == 0 and report["foreign_results"] == 0  # QoS 1
    (worker,) = report["per_worker"].values()
    assert worker["answered"] == report["answered"]
    check_latency_parts(report)


class _SlowPublisher(Publisher):
    """Builds each image slowly: a burst takes over a second to build, like a publishing thread that gets
    little of the CPU (the console runs it at a lower priority). `building` is set once the second burst
    is being built."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.building = threading.Event()
        self.built = 0  # images built, sent or not

    def _payload(self, sample: Any) -> tuple[str, bytes]:
        if self._seq >= 64:
            self.building.set()
        time.sleep(0.02)
        self.built += 1
        return super()._payload(sample)


def _handed_over(publisher: Publisher, images: MqttProbe, marker: bytes) -> list[bytes]:
    """Every image `publisher` handed to paho so far, as `images` received them: a marker published on the
    publisher's own connection comes after all of them."""
    publisher.data_client.publish("mnist", marker, qos=1).wait_for_publish(10)
    wait_for(lambda: any(m.payload == marker for m in images.messages("mnist")), timeout=30,
             message=f"{marker!r} not received")
    return [m.payload for m in images.messages("mnist") if not m.payload.startswith(b"marker")]


def test_a_stop_while_a_burst_is_built_is_not_followed_by_that_burst(mosquitto_broker, probe_factory) -> None:
    """`pause` (what `stop` calls before it replies) does not wait out the burst being built; that burst is
    then never handed over, and its images go first when publishing starts again (none skipped), numbered
    on from the last one sent (a console counts on that: tui/publisher/publisher_pane.py)."""
    address = mosquitto_broker.address
    images = probe_factory(address, "mnist")
    with started(_SlowPublisher(address, Settings(rate=0, autostart=True), "slow-in")) as publisher:
        assert publisher.building.wait(60), f"{publisher.sent} sent"
        publisher.pause()
        count = publisher.sent
        wait_for(lambda: publisher._carry, timeout=30, message="the burst in progress was not put back")
        assert publisher.sent == count
        sent = _handed_over(publisher, images, b"marker")
        assert len(sent) == count, (len(sent), count)
        carried = len(publisher._carry)
        publisher.play()
        wait_for(lambda: publisher.sent >= count + carried + 1, timeout=60, message=lambda: f"{publisher.sent}")
        publisher.pause()
        # every image in the dataset's order: the burst put back went first, nothing skipped or repeated
        metas = [extract_meta(payload) for payload in _handed_over(publisher, images, b"marker2")]
        labels = [meta.label for meta in metas]
        assert len(labels) == publisher.sent
        samples = publisher.samples
        assert labels == [samples[i % len(samples)].label for i in range(len(labels))]
        assert [meta.id for meta in metas] == [f"slow-in-{n}" for n in range(1, len(metas) + 1)]


def test_a_stop_while_refused_images_are_sent_one_by_one_keeps_the_rest_and_the_count(
        mosquitto_broker, probe_factory) -> None:
    """paho refuses a burst (the connection dropped meanwhile), so the images go out one by one; a stop in
    the middle keeps the rest for the next start, in order, and a counted run still sends its count."""
    address = mosquitto_broker.address
    images = probe_factory(address, "mnist")
    with started(Publisher(address, Settings(rate=0, count=10), "refused-in")) as publisher:
        client = publisher.data_client
        refuse_once, publish = [True], client.publish
        sent_one_by_one = []

        def publish_many(topic: str, payloads: list[bytes], **kwargs: Any) -> list[mqtt.MQTTMessageInfo]:
            if refuse_once.pop() if refuse_once else False:  # the first burst: as paho answers offline
                info = mqtt.MQTTMessageInfo(0)
                info.rc = mqtt.MQTT_ERR_NO_CONN
                return [info] * len(payloads)
            return type(client).publish_many(client, topic, payloads, **kwargs)

        def publish_one(*args: Any, **kwargs: Any) -> mqtt.MQTTMessageInfo:
            info = publish(*args, **kwargs)
            sent_one_by_one.append(info)
            if len(sent_one_by_one) == 3:
                publisher._running.clear()  # a stop arrives after the third
            return info

        client.publish_many = publish_many  # type: ignore[method-assign]
        client.publish = publish_one  # type: ignore[method-assign]
        publisher.play()
        wait_for(lambda: len(publisher._carry) == 7, timeout=30,
                 message=lambda: str([s.name for s in publisher._carry]))
        assert publisher.sent == 3 and publisher.remaining == 7 and not publisher.finished
        publisher.play()
        wait_for(lambda: publisher.finished, timeout=30, message=lambda: f"{publisher.sent} sent")
        assert publisher.sent == 10 and publisher.remaining == 0 and not publisher._carry
        wait_for(lambda: len(images.messages("mnist")) >= 10, timeout=30,
                 message=lambda: f"{len(images.messages('mnist'))} received")
        metas = [extract_meta(m.payload) for m in images.messages("mnist")]
        samples = publisher.samples
        assert [meta.label for meta in metas] == [samples[i].label for i in range(10)]
        # numbered 1 to 10: the refused burst and the image the stop overtook gave their numbers back
        assert [meta.id for meta in metas] == [f"refused-in-{n}" for n in range(1, 11)]


def test_a_reset_right_after_a_stop_drops_the_burst_being_built(mosquitto_broker, probe_factory) -> None:
    """stop, then reset while the stopped burst is still being built: the next start begins at the start of
    the dataset, not with the old burst."""
    address = mosquitto_broker.address
    images = probe_factory(address, "mnist")
    with started(_SlowPublisher(address, Settings(rate=0, autostart=True), "reset-in")) as publisher:
        assert publisher.building.wait(60), f"{publisher.sent} sent"
        publisher.pause()
        publisher._cmd_reset({})
        before = len(publisher._order)
        wait_for(lambda: publisher.built >= 128, timeout=60, message=lambda: f"{publisher.built} built")
        assert not publisher._carry and publisher._pos == 0 and before
        count = len(_handed_over(publisher, images, b"marker"))
        publisher.play()
        wait_for(lambda: len(images.messages("mnist")) >= count + 1 + 5, timeout=60,
                 message=lambda: f"{len(images.messages('mnist'))} received")
        after = [extract_meta(m.payload).label for m in images.messages("mnist")[count + 1:count + 6]]
        assert after == [s.label for s in publisher.samples[:5]]
