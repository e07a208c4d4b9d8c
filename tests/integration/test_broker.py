"""The embedded brokers (engine/mqtt/broker.py) and the secured recipe in mosquitto.conf, on real brokers."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import NO_MOSQUITTO, MqttProbe, port_free, process_alive, try_connect, wait_for
from secured import login

import engine.mqtt.broker as broker_module
from engine.errors import BrokerError, ConfigError
from engine.mqtt.address import BrokerAddress
from engine.mqtt.broker import EmbeddedBroker, build_mosquitto_config, find_mosquitto
from engine.owned_tmp import owned_tmpdir
from engine.roles.workerpool import WorkerPool
from engine.settings import Settings

REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------------------------------
# Both brokers
# --------------------------------------------------------------------------------------------------


def test_relays_between_two_clients(broker, probe_factory):
    sub = probe_factory(broker.address, ["result", "mnist/status/#"])
    pub = probe_factory(broker.address)
    pub.publish("result", b'{"id": "a", "pred": 7}', qos=1)
    pub.publish("mnist/status/infer/w1", b'{"state": "running"}', qos=1, retain=True)
    got = sub.wait_count(2)
    assert got[0] == ("result", b'{"id": "a", "pred": 7}', 1, False)
    assert got[1].topic == "mnist/status/infer/w1"
    # A retained status reaches a subscriber that comes later, flagged as retained (amqtt 0.12
    # sends retained messages at QoS 0 whatever their QoS, so the QoS is not compared).
    late = probe_factory(broker.address, "mnist/status/+/+")
    topic, payload, _qos, retain = late.wait_count(1)[0]
    assert (topic, payload, retain) == ("mnist/status/infer/w1", b'{"state": "running"}', True)


def test_a_2mb_payload_gets_through(broker, probe_factory):
    """Oversized images must reach the worker, which answers them with an error result."""
    payload = os.urandom(2 * 1024 * 1024)
    sub = probe_factory(broker.address, "mnist")
    probe_factory(broker.address).publish("mnist", payload, qos=1)
    assert sub.wait_count(1)[0].payload == payload


@pytest.mark.parametrize("kind", ["mosquitto", "python"])
def test_stop_leaves_nothing_running_and_is_idempotent(kind):
    if kind == "mosquitto" and find_mosquitto() is None:
        pytest.skip(NO_MOSQUITTO)
    broker = EmbeddedBroker(kind=kind)
    broker.stop()  # before start: nothing to do
    with broker:
        port, pid = broker.port, broker.pid
        assert broker.running and not port_free(port)
        if kind == "mosquitto":
            assert pid is not None and process_alive(pid)
            # Its own process group: a Ctrl-C in the terminal reaches only us, and we stop it in order.
            assert os.getpgid(pid) != os.getpgid(0)
            # But our session: where CPU time is shared out by session (autogroup), it stays in ours.
            assert os.getsid(pid) == os.getsid(0)
        else:
            assert pid is None
    assert not broker.running
    assert port_free(port), f"port {port} still taken after stop()"
    if pid is not None:
        assert not process_alive(pid), f"mosquitto {pid} still running after stop()"
    assert not any(t.name in ("amqtt-broker", "mosquitto-keeper") and t.is_alive() for t in threading.enumerate())
    broker.stop()
    broker.stop()


def test_restart_keeps_the_port(broker, probe_factory):
    port = broker.port
    probe = probe_factory(broker.address, "result")
    broker.stop()
    wait_for(lambda: not probe.connected, message="probe did not notice the broker stopped")
    broker.start()
    assert broker.port == port
    probe.wait_connected()  # paho reconnects by itself; the probe renews its subscription
    sender = probe_factory(broker.address)

    def delivered() -> bool:
        sender.publish("result", b"after restart", qos=1)
        return bool(probe.messages("result"))

    # The resubscription may land a moment after the reconnect: publish until one gets through.
    wait_for(delivered, interval=0.1, message="no message after the restart")


def test_port_in_use_is_one_clear_line(broker):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        other = EmbeddedBroker(kind=broker.kind, port=taken.getsockname()[1])
        with pytest.raises(BrokerError) as caught:
            other.start()
        other.stop()
    message = str(caught.value)
    assert "\n" not in message and "in use" in message.lower(), message


# --------------------------------------------------------------------------------------------------
# What each broker is
# --------------------------------------------------------------------------------------------------


def test_kinds_and_descriptions(monkeypatch):
    python = EmbeddedBroker(kind="python")
    assert python.kind == "python" and python.protocols == (4,) and not python.shared_subscriptions
    assert re.fullmatch(r"amqtt \S+, Python, MQTT 3\.1\.1 only \(embedded\)", python.description)
    with pytest.raises(ConfigError):
        EmbeddedBroker(kind="hivemq")
    monkeypatch.setattr(broker_module, "find_mosquitto", lambda: None)
    assert EmbeddedBroker().kind == "python"
    with pytest.raises(BrokerError, match="mosquitto not found"):
        EmbeddedBroker(kind="mosquitto")


@pytest.mark.needs_mosquitto
def test_auto_prefers_mosquitto():
    broker = EmbeddedBroker()
    assert broker.kind == "mosquitto" and broker.protocols == (5, 4) and broker.shared_subscriptions
    assert re.fullmatch(r"mosquitto \d+\.\d+\.\d+ \(embedded\)", broker.description)


def test_generated_config_moves_only_the_first_listener(tmp_path):
    source = "per_listener_settings true\nlistener 1883 127.0.0.1\nallow_anonymous true\n" \
             "persistence_location /var/lib/mosquitto/\nlistener 8883\nallow_anonymous false\n"
    text = build_mosquitto_config(source, 4242, tmp_path)
    active = [line.split("#")[0].strip() for line in text.splitlines() if not line.startswith("#")]
    assert "listener 4242 127.0.0.1" in active and "listener 8883" in active
    assert f"persistence_location {tmp_path}/" in active and "persistence true" in active
    assert not any("/var/lib/mosquitto" in line for line in active)
    assert "persistence false" in build_mosquitto_config(source, 4242, None)
    with pytest.raises(ConfigError, match="no 'listener' line"):
        build_mosquitto_config("allow_anonymous true\n", 4242, None)


# --------------------------------------------------------------------------------------------------
# mosquitto only
# --------------------------------------------------------------------------------------------------


def test_mosquitto_speaks_mqtt5(mosquitto_broker, probe_factory):
    sub = probe_factory(mosquitto_broker.address, "result", protocol=5)
    probe_factory(mosquitto_broker.address, protocol=5).publish("result", b"v5", qos=1)
    assert sub.wait_count(1)[0].payload == b"v5"


def test_shared_subscription_delivers_each_message_once(mosquitto_broker, probe_factory):
    address = mosquitto_broker.address
    # One MQTT 5 and one MQTT 3.1.1 member: mosquitto honours $share for both.
    workers = [
        probe_factory(address, ["$share/workers/mnist", "barrier"], protocol=5),
        probe_factory(address, ["$share/workers/mnist", "barrier"], protocol=4),
    ]
    sender = probe_factory(address)
    sent = [f"img-{i}".encode() for i in range(40)]
    for payload in sent:
        sender.publish("mnist", payload, qos=1)
    # Each worker gets its messages in order: once the barrier is in, every image sent to it is too.
    sender.publish("barrier", b"", qos=1)
    for worker in workers:
        worker.wait_count(1, topic="barrier")
    shares = [[m.payload for m in w.messages("mnist")] for w in workers]
    assert sorted(shares[0] + shares[1]) == sorted(sent), "an image was lost or delivered twice"
    assert shares[0] and shares[1], f"not split: {len(shares[0])} and {len(shares[1])}"


def test_restart_with_persistence_keeps_qos1_session(tmp_path, probe_factory):
    if find_mosquitto() is None:
        pytest.skip(NO_MOSQUITTO)
    with EmbeddedBroker(kind="mosquitto", persistence_dir=tmp_path / "db") as broker:
        durable = dict(client_id="worker-durable", clean=False)
        probe_factory(broker.address, "mnist", **durable).close()  # session and subscription stay
        sender = probe_factory(broker.address)
        for i in range(5):
            sender.publish("mnist", f"queued-{i}".encode(), qos=1)
        sender.close()
        broker.stop()
        assert (tmp_path / "db" / "mosquitto.db").is_file()
        broker.start()
        back = probe_factory(broker.address, "mnist", **durable)
        got = back.wait_count(5)
        assert [m.payload for m in got] == [f"queued-{i}".encode() for i in range(5)]


@pytest.mark.needs_mosquitto
def test_bad_config_raises_one_line(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("listener 1883 127.0.0.1\nallow_anonymous true\nno_such_setting 1\n")
    broker = EmbeddedBroker(kind="mosquitto", config=conf)
    with pytest.raises(BrokerError) as caught:
        broker.start()
    message = str(caught.value)
    assert "\n" not in message and "no_such_setting" in message, message
    assert f"{conf}:3" in message, "the error should point at the user's file and line"
    assert not broker.running
    broker.stop()
    with pytest.raises(ConfigError, match="not found"):
        EmbeddedBroker(kind="mosquitto", config=tmp_path / "missing.conf")


@pytest.mark.parametrize("prefix", ["mnist-mosquitto-", "mnist-workers-"])
def test_temp_dirs_of_killed_owners_are_removed(tmp_path, monkeypatch, prefix):
    """The embedded broker's directory and the worker processes' log directory: a console killed by a
    hangup left its worker logs behind; the next one removes those of owners that are gone."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = tmp_path / f"{prefix}{gone.pid}-abc"
    alive = tmp_path / f"{prefix}{os.getppid()}-abc"
    for path in (stale, alive):
        path.mkdir()
    if prefix == "mnist-workers-":
        made = WorkerPool(BrokerAddress(port=1883), Settings())._log_dir  # what a console's roles make
    else:
        made = owned_tmpdir(prefix)
    assert not stale.exists() and alive.exists()
    assert made.parent == tmp_path and made.name.startswith(f"{prefix}{os.getpid()}-") and made.is_dir()


_OWNER_SCRIPT = """
import time
from engine.mqtt.broker import EmbeddedBroker
broker = EmbeddedBroker(kind="mosquitto").start()
print(broker.pid, broker.port, flush=True)
time.sleep(60)
"""


@pytest.mark.slow
@pytest.mark.needs_mosquitto
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_mosquitto_dies_with_its_owner(sig, tmp_path):
    """Ctrl-C: the atexit handler stops it. SIGKILL: the kernel sends it SIGTERM (PR_SET_PDEATHSIG)."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # a SIGKILLed owner cannot remove its temp dir
    with subprocess.Popen([sys.executable, "-c", _OWNER_SCRIPT], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True, env=env) as owner:
        try:
            pid, port = map(int, owner.stdout.readline().split())
            assert process_alive(pid)
            owner.send_signal(sig)
            owner.wait(timeout=40)  # bounded by the stop deadlines (3 x 5 s), with room for a busy machine
            wait_for(lambda: not process_alive(pid), message=f"mosquitto {pid} outlived its owner ({sig.name})")
            wait_for(lambda: port_free(port), message=f"port {port} still taken")
        finally:
            if owner.poll() is None:
                owner.kill()
    if sig == signal.SIGINT:
        assert not list(tmp_path.glob("mnist-mosquitto-*")), "temp dir left after Ctrl-C"


# --------------------------------------------------------------------------------------------------
# The secured network listener recipe in mosquitto.conf, with the ACL from docs/SECURITY.md
# --------------------------------------------------------------------------------------------------

def test_recipe_refuses_strangers(secured_broker):
    broker, secure = secured_broker
    refused = {
        "anonymous": try_connect(secure),
        "wrong password": try_connect(login(secure, "infer", "not-the-password")),
        "unknown user": try_connect(login(secure, "mallory", "infer-pw")),
        "plain TCP on the TLS port": try_connect(login(replace(secure, tls=False, cafile=None), "infer")),
    }
    for case, outcome in refused.items():
        assert isinstance(outcome, str) or outcome.is_failure, f"{case}: let in ({outcome})"
    for protocol in (4, 5):
        outcome = try_connect(login(secure, "infer"), protocol=protocol)
        assert not isinstance(outcome, str) and not outcome.is_failure, outcome
    # The loopback listener stays open to local anonymous clients.
    outcome = try_connect(broker.address)
    assert not isinstance(outcome, str) and not outcome.is_failure, outcome


def test_recipe_acl_keeps_roles_to_their_topics(secured_broker, probe_factory):
    _, secure = secured_broker
    console = probe_factory(login(secure, "console"), "#")
    infer = probe_factory(login(secure, "infer"), "$share/workers/mnist", client_id="worker-1")
    # A subscription the ACL denies is acknowledged, but nothing is delivered on it.
    output = probe_factory(login(secure, "output"), ["result", "mnist", "mnist/control/output"],
                           client_id="collector-1")
    image_sender = probe_factory(login(secure, "input"), client_id="player-1")

    # Denied first, then allowed, each from one connection: messages from one client arrive in
    # order, so once the allowed ones are in, a denied one that slipped through would be in too.
    infer.publish("mnist", b"denied: infer publishing an image", qos=1)
    infer.publish("mnist/status/infer/worker-2", b"denied: another worker's status", qos=1)
    infer.publish("mnist/control/input", b"denied: infer steering", qos=1)
    infer.publish("mnist/status/infer/worker-1", b"own status", qos=1, retain=True)
    infer.publish("result", b"a result", qos=1)
    image_sender.publish("result", b"denied: input publishing a result", qos=1)
    image_sender.publish("mnist", b"an image", qos=1)
    probe_factory(login(secure, "console")).publish("mnist/control/output", b"a command", qos=1)

    console.wait_count(4)
    seen = {(m.topic, m.payload) for m in console.messages()}
    assert ("mnist/status/infer/worker-1", b"own status") in seen
    assert ("result", b"a result") in seen and ("mnist", b"an image") in seen
    assert not [t for t, p in seen if p.startswith(b"denied")], seen
    # The shared subscription works under the ACL: the worker gets the image.
    assert infer.wait_count(1)[0].payload == b"an image"
    # output reads results and its control topic, not images.
    output.wait_count(2)
    got = {(m.topic, m.payload) for m in output.messages()}
    assert got == {("result", b"a result"), ("mnist/control/output", b"a command")}, got


def test_recipe_denies_what_a_role_may_not_subscribe(secured_broker, probe_factory):
    _, secure = secured_broker
    # input may not read results: subscribed, but the result never comes; its own control does.
    spy = probe_factory(login(secure, "input"), ["result", "mnist/control/input"], client_id="player-1")
    probe_factory(login(secure, "infer"), client_id="worker-1").publish("result", b"secret", qos=1)
    probe_factory(login(secure, "console")).publish("mnist/control/input", b"a command", qos=1)
    spy.wait_count(1, topic="mnist/control/input")
    assert spy.messages("result") == []


def test_probe_reports_a_refusal(secured_broker):
    _, secure = secured_broker
    with pytest.raises(AssertionError, match="refused"):
        MqttProbe(login(secure, "infer", "wrong"), "result", timeout=10)
