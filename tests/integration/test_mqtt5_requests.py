"""MQTT 5 request/response on a real mosquitto: an image with a response topic gets its result there
too, with its correlation data echoed and content type application/json (and still on `result`); id
and label may come as user properties; a response topic inside the pipeline's own namespace is ignored.
Driven by paho's MQTT 5 properties, and by MQTT.js (npm `mqtt`) where node and npm are present."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fault_helpers import digit, model, tagged
from helpers import wait_for
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from engine.roles.worker import Worker
from engine.settings import Settings

LABEL_OF_0_PNG = 7  # assets/mnist_images list file: "0.png 7"


class V5Client:
    """A plain paho MQTT 5 client that keeps every message with its properties."""

    def __init__(self, address: Any, topics: list[str]) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: self._subscribed.set()
        self.client.connect(address.host, address.port)
        self.client.loop_start()
        self.client.subscribe([(t, 1) for t in topics])
        wait_for(self._subscribed.is_set, message="requester not subscribed")

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(msg)

    def on(self, topic: str) -> list[mqtt.MQTTMessage]:
        with self._lock:
            return [m for m in self.messages if mqtt.topic_matches_sub(topic, m.topic)]

    def request(self, payload: bytes, response_topic: str | None, correlation: bytes | None = None,
                **user: str) -> None:
        props = Properties(PacketTypes.PUBLISH)
        if response_topic is not None:
            props.ResponseTopic = response_topic
        if correlation is not None:
            props.CorrelationData = correlation
        if user:
            props.UserProperty = list(user.items())
        self.client.publish("mnist", payload, qos=1, properties=props).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def worker(mosquitto_broker):
    w = Worker(mosquitto_broker.address, Settings(), "w-rr", model=model())
    w.start()
    assert w.wait_ready()
    yield w
    w.stop()


def props_of(msg: mqtt.MQTTMessage) -> dict[str, Any]:
    return msg.properties.json() if msg.properties is not None else {}


def test_a_response_topic_gets_the_result_with_its_correlation_data(mosquitto_broker, worker) -> None:
    me = V5Client(mosquitto_broker.address, ["replies/me", "result", "mnist/control/#", "mnist/status/infer/x"])
    try:
        # a bare PNG (no mnist chunk): id and label come from user properties
        me.request(digit(), "replies/me", b"\x00corr-1\xff", id="u1", label=str(LABEL_OF_0_PNG))
        # a tagged PNG: its own id wins over a user property
        me.request(tagged("png-id"), "replies/me", b"c2", id="prop-id")
        # no response topic: only on result
        me.request(tagged("plain"), None)
        # response topics inside the pipeline's namespace, a wildcard or a $ topic: ignored
        for bad in ("mnist/control/infer", "mnist/status/infer/x", "replies/#", "$SYS/x"):
            me.request(tagged(f"bad {bad}"), bad, b"x")
        wait_for(lambda: len(me.on("result")) >= 7, message=lambda: f"{len(me.on('result'))} of 7 results")
        wait_for(lambda: len(me.on("replies/me")) >= 2, message="no responses")
        responses = {json.loads(m.payload)["id"]: m for m in me.on("replies/me")}
        assert set(responses) == {"u1", "png-id"}
        first = responses["u1"]
        body = json.loads(first.payload)
        assert body["label"] == LABEL_OF_0_PNG and body["pred"] == LABEL_OF_0_PNG
        assert props_of(first)["CorrelationData"] == b"\x00corr-1\xff".hex()  # paho's json() shows bytes as hex
        assert props_of(first)["ContentType"] == "application/json"
        assert props_of(responses["png-id"])["CorrelationData"] == b"c2".hex()
        results = me.on("result")
        assert all(props_of(m).get("ContentType") == "application/json" for m in results)
        assert "CorrelationData" not in props_of(results[0])
        assert {json.loads(m.payload)["id"] for m in results} >= {"u1", "png-id", "plain"}
        assert not me.on("mnist/control/#") and not me.on("mnist/status/infer/x"), "answered into the pipeline"
    finally:
        me.close()


def test_an_mqtt311_worker_still_answers_on_result(mosquitto_broker) -> None:
    w = Worker(mosquitto_broker.address, Settings(protocol=4), "w-311", model=model())
    w.start()
    me = V5Client(mosquitto_broker.address, ["replies/me", "result"])
    try:
        assert w.wait_ready()
        me.request(tagged("old"), "replies/me", b"c")
        wait_for(lambda: me.on("result"), message="no result")
        assert json.loads(me.on("result")[0].payload)["id"] == "old"
        assert not me.on("replies/me")  # MQTT 3.1.1 carries no response topic
    finally:
        me.close()
        w.stop()


MQTTJS_CLIENT = r"""
const mqtt = require('mqtt');
const fs = require('fs');
const [url, png] = process.argv.slice(2);
const client = mqtt.connect(url, {protocolVersion: 5});
const timer = setTimeout(() => { console.error('no response'); process.exit(2); }, 30000);
client.on('connect', () => {
  client.subscribe('js/answers', {qos: 1}, () => {
    client.publish('mnist', fs.readFileSync(png), {qos: 1, properties: {
      responseTopic: 'js/answers', correlationData: Buffer.from('js-corr-42'),
      userProperties: {id: 'js-1', label: '7'}}});
  });
});
client.on('message', (topic, payload, packet) => {
  clearTimeout(timer);
  const p = packet.properties || {};
  console.log(JSON.stringify({topic, body: JSON.parse(payload.toString()),
    correlation: p.correlationData ? p.correlationData.toString() : null, contentType: p.contentType || null}));
  client.end();
});
"""


@pytest.fixture(scope="module")
def mqttjs(tmp_path_factory) -> Path:
    """A temp dir with MQTT.js installed by npm; skipped where node or npm or the package registry is absent."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed")
    where = tmp_path_factory.mktemp("mqttjs")
    try:
        done = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent", "mqtt@5"], cwd=where,
                              capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        pytest.skip("npm install mqtt timed out (no package registry?)")
    if done.returncode != 0 or not (where / "node_modules" / "mqtt").is_dir():
        pytest.skip(f"npm install mqtt failed: {(done.stderr or done.stdout).strip()[-200:]}")
    (where / "request.js").write_text(MQTTJS_CLIENT, encoding="utf-8")
    return where


def test_mqttjs_gets_its_answer_with_its_correlation_data(mosquitto_broker, worker, mqttjs, tmp_path) -> None:
    png = tmp_path / "digit.png"
    png.write_bytes(digit())  # no mnist chunk: id and label only as user properties
    a = mosquitto_broker.address
    done = subprocess.run(["node", "request.js", f"mqtt://{a.host}:{a.port}", str(png)], cwd=mqttjs,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["topic"] == "js/answers" and answer["correlation"] == "js-corr-42"
    assert answer["contentType"] == "application/json"
    assert answer["body"]["id"] == "js-1" and answer["body"]["label"] == 7 and answer["body"]["pred"] == 7


def test_images_carry_their_expiry_and_the_broker_drops_the_expired(mosquitto_broker) -> None:
    """--expiry: each image the input role publishes carries an MQTT 5 message expiry. What expires while
    the broker holds it for a subscriber that is away (a worker's session under overload, or offline) is
    dropped there: that subscriber gets only the images still fresh when it takes them."""
    from engine.roles.publisher import Publisher

    addr = mosquitto_broker.address
    away = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, "away-worker", protocol=mqtt.MQTTv5)
    later: list[mqtt.MQTTMessage] = []
    away.on_message = lambda _c, _u, msg: later.append(msg)
    session = Properties(PacketTypes.CONNECT)
    session.SessionExpiryInterval = 300
    away.connect(addr.host, addr.port, properties=session)  # clean on the first connect only (paho default)
    away.loop_start()
    subscribed = threading.Event()
    away.on_subscribe = lambda *_a: subscribed.set()
    away.subscribe("mnist", qos=1)
    wait_for(subscribed.is_set, message="not subscribed")
    away.disconnect()
    away.loop_stop()

    watcher = V5Client(addr, ["mnist"])
    pub = Publisher(addr, Settings(qos=1, rate=0, image_expiry=1), "in-expiry")
    pub.start()
    try:
        assert pub.wait_ready()
        pub.play(20)
        wait_for(lambda: len(watcher.on("mnist")) >= 20, message="images not seen")
        expiries = {props_of(m).get("MessageExpiryInterval") for m in watcher.on("mnist")}
        assert expiries and expiries <= {0, 1}, expiries  # the broker forwards what is left of it
        stale_ids = {tagged_id(m.payload) for m in watcher.on("mnist")}
        # the held images expire (1 s) while nobody takes them; then five fresh ones
        deadline = time.monotonic() + 2.5
        wait_for(lambda: time.monotonic() > deadline, 5, message="clock")
        pub.play(5)
        wait_for(lambda: len(watcher.on("mnist")) >= 25, message="fresh images not seen")
        away.reconnect()  # the same session
        away.loop_start()
        wait_for(lambda: len(later) >= 5, message=f"the fresh images did not reach the session ({len(later)})")
        got = {tagged_id(m.payload) for m in later}
        assert not got & stale_ids, f"expired images delivered: {sorted(got & stale_ids)}"
    finally:
        pub.stop()
        watcher.close()
        away.disconnect()
        away.loop_stop()


def tagged_id(payload: bytes) -> str | None:
    from engine.protocol import extract_meta

    return extract_meta(payload).id
