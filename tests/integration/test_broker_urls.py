"""Broker URLs: ws:// and wss:// (path included) and --insecure, against a real broker's websocket
listeners (amqtt's: the apt mosquitto here is built without websockets; amqtt speaks MQTT 3.1.1)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fault_helpers import model, tagged
from helpers import MqttProbe, wait_for

import engine.mqtt.broker as broker_module
from engine.errors import BrokerError, ConfigError
from engine.mqtt.address import BrokerAddress
from engine.mqtt.broker import HOST, _Amqtt, free_port
from engine.mqtt.client import probe
from engine.roles.worker import Worker
from engine.settings import Settings


def test_websocket_urls_parse_with_their_path() -> None:
    ws = BrokerAddress.parse("ws://broker.lan:8080/mqtt")
    assert (ws.host, ws.port, ws.tls, ws.websocket_path) == ("broker.lan", 8080, False, "/mqtt")
    assert ws.url == "ws://broker.lan:8080/mqtt"
    assert BrokerAddress.parse(ws.url) == ws  # the URL handed to child processes means the same broker
    wss = BrokerAddress.parse("wss://u@broker.lan/ws/mqtt?x=1")
    assert (wss.port, wss.tls, wss.websocket_path, wss.username) == (443, True, "/ws/mqtt?x=1", "u")
    assert BrokerAddress.parse("ws://h").websocket_path == "/"
    assert BrokerAddress.parse("mqtt://h:1883").websocket_path is None
    with pytest.raises(ConfigError, match="unexpected path"):
        BrokerAddress.parse("mqtt://h/mqtt")
    with pytest.raises(ConfigError, match="ws://"):
        BrokerAddress.parse("http://h")
    with pytest.raises(ConfigError, match="--insecure is for TLS"):
        BrokerAddress.parse("ws://h").with_insecure(True)
    assert BrokerAddress.parse("wss://h").with_insecure(True).insecure


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    where = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", "key.pem", "-out", "cert.pem", "-days", "2", "-subj", "/CN=localhost"],
                   check=True, capture_output=True, cwd=where)
    return where / "cert.pem", where / "key.pem"


@pytest.fixture
def ws_broker(monkeypatch, self_signed) -> Iterator[dict[str, Any]]:
    """amqtt with a TCP listener, a ws listener and a wss listener (self-signed certificate)."""
    cert, key = self_signed
    ports = {"tcp": free_port(), "ws": free_port(), "wss": free_port()}
    plain = broker_module.amqtt_config

    def config(port: int) -> dict[str, Any]:
        conf = plain(port)
        conf["listeners"]["ws"] = {"type": "ws", "bind": f"{HOST}:{ports['ws']}", "max_connections": 0}
        conf["listeners"]["wss"] = {"type": "ws", "bind": f"{HOST}:{ports['wss']}", "max_connections": 0,
                                    "ssl": True, "certfile": str(cert), "keyfile": str(key)}
        return conf

    monkeypatch.setattr(broker_module, "amqtt_config", config)
    amqtt = _Amqtt()
    amqtt.start(ports["tcp"], timeout=20)
    try:
        yield ports
    finally:
        amqtt.stop()


def classify_through(address: BrokerAddress, tcp_port: int, worker_id: str) -> dict[str, Any]:
    """A worker connected through `address` answers an image published over plain TCP."""
    tcp = BrokerAddress(HOST, tcp_port)
    results = MqttProbe(tcp, "result")
    worker = Worker(address, Settings(protocol=4), worker_id, model=model())
    worker.start()
    try:
        assert worker.wait_ready(20), f"worker did not connect through {address.url}: {worker.last_error}"
        results.publish("mnist", tagged("over-ws"), qos=1)
        wait_for(lambda: results.messages("result"), message=f"no result through {address.url}")
        return json.loads(results.messages("result")[0].payload)
    finally:
        worker.stop()
        results.close()


def test_a_worker_over_ws_with_a_path(ws_broker) -> None:
    address = BrokerAddress.parse(f"ws://{HOST}:{ws_broker['ws']}/mqtt")
    assert probe(address, protocols=(4,)) == 4
    answer = classify_through(address, ws_broker["tcp"], "w-ws")
    assert answer["id"] == "over-ws" and answer["worker"] == "w-ws" and answer["pred"] is not None


def test_wss_with_a_self_signed_certificate_needs_insecure(ws_broker) -> None:
    address = BrokerAddress.parse(f"wss://localhost:{ws_broker['wss']}/mqtt")
    with pytest.raises(BrokerError, match="certificate not trusted.*--insecure"):
        probe(address, protocols=(4,))
    insecure = address.with_insecure(True)
    assert probe(insecure, protocols=(4,)) == 4
    answer = classify_through(insecure, ws_broker["tcp"], "w-wss")
    assert answer["id"] == "over-ws" and answer["worker"] == "w-wss"


def test_the_cli_takes_a_wss_url_and_insecure(ws_broker) -> None:
    import sys

    url = f"wss://localhost:{ws_broker['wss']}/mqtt"
    done = subprocess.run([sys.executable, "-m", "engine", "--broker", url, "--insecure", "health",
                           "--timeout", "3"], capture_output=True, text=True, timeout=60)
    # no worker runs: unhealthy, but said in one line after connecting (not a TLS or URL error)
    assert done.returncode == 1, done.stderr
    text = (done.stdout + done.stderr).strip()
    assert len(text.splitlines()) == 1 and "TLS" not in text and "certificate" not in text, text
    refused = subprocess.run([sys.executable, "-m", "engine", "--broker", url, "health", "--timeout", "3"],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "--insecure" in refused.stderr + refused.stdout


def test_a_profile_with_insecure(ws_broker, tmp_path) -> None:
    """`insecure = true` in a config file's profile does what --insecure does; `mnist-tui config` says so."""
    import os
    import sys

    def mnist(profile: str, *argv: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MNIST_")}
        return subprocess.run([sys.executable, "-m", "engine", "--config", str(config), "--profile", profile, *argv],
                              capture_output=True, text=True, timeout=60, env=env)

    url = f"wss://localhost:{ws_broker['wss']}/mqtt"
    config = tmp_path / "config.toml"
    config.write_text(f'[profiles.test]\nbroker = "{url}"\ninsecure = true\n'
                      f'[profiles.strict]\nbroker = "{url}"\n')
    done = mnist("test", "health", "--timeout", "3")
    assert done.returncode == 1, done.stderr
    text = (done.stdout + done.stderr).strip()
    # no worker runs: unhealthy, said after connecting (not a TLS or config error)
    assert len(text.splitlines()) == 1 and text.startswith("unhealthy: 0 of at least 1 infer"), text
    shown = mnist("test", "config")
    assert shown.returncode == 0, shown.stderr
    shown = shown.stdout
    assert any(line.split() == ["insecure", "yes", "(config)"] for line in shown.splitlines()), shown
    refused = mnist("strict", "health", "--timeout", "3")
    assert refused.returncode != 0 and "--insecure" in refused.stderr + refused.stdout
    config.write_text(f'[profiles.wrong]\nbroker = "{url}"\ninsecure = "yes"\n')
    wrong = mnist("wrong", "config")
    assert wrong.returncode == 1 and wrong.stderr == f"mnist-tui: bad config file {config}: wrong.insecure must be " \
        "true or false\n"
