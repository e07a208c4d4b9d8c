"""Nobody let in: mnist-tui against mosquitto with the secured recipe of mosquitto.conf (TLS with a
throwaway CA, password file, the ACL of docs/SECURITY.md), model files that would run code, and
client ids that try to inject topic levels.

What is refused must be said in ONE line without a traceback, and the command must fail.
The secured broker is the `secured_broker` fixture (tests/secured.py: the recipe enabled on a TLS port).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import subprocess
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
import torch
from fault_helpers import ENGINE, Engine, model, one_line_error, send, status, wait_status
from helpers import MqttProbe, wait_for
from secured import PASSWORDS, login, verdict

from engine.cli import build_parser, settings_from_args
from engine.digits.model import LeNet5, load_model
from engine.errors import BrokerError, ConfigError, ModelError
from engine.mqtt.address import BrokerAddress
from engine.mqtt.broker import free_port
from engine.mqtt.client import probe
from engine.roles.collector import Collector
from engine.roles.worker import Worker
from engine.settings import Settings
from engine.topics import Topics


def _tls_args(secure) -> list[str]:
    return ["--cafile", secure.cafile]


def run_cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start `python -m engine ARGV` (no password in the environment unless given)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MNIST_BROKER")}
    return subprocess.Popen([*ENGINE, *argv], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**clean, **(env or {})})


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err


@pytest.mark.slow
def test_refusals_are_one_clear_line(secured_broker) -> None:  # noqa: F811
    """Anonymous, a wrong password, and a role whose user the ACL does not let publish its status: each
    command fails with one line saying why. (Plain TCP on the TLS port and an untrusted certificate: see
    the next test, in-process, to spare two torch imports.)"""
    _, secure = secured_broker
    port = str(secure.port)
    url = f"mqtts://127.0.0.1:{port}"
    cases = {
        # the issue's own example: run infer, password from the environment, wrong
        "wrong password": (run_cli("--broker", f"mqtts://worker-1@127.0.0.1:{port}", *_tls_args(secure),
                                   "run", "infer", env={"MNIST_BROKER_PASSWORD": "not-the-password"}),
                           ("refused", "not authorized")),
        "anonymous": (run_cli("--broker", url, *_tls_args(secure), "run", "output"),
                      ("refused", "not authorized")),
        # account collector-1 may write only its own status: a role with another id cannot even say it is alive
        "ACL denies the role's topics": (run_cli("--broker", f"mqtts://collector-1@127.0.0.1:{port}",
                                                 *_tls_args(secure), "run", "input", "--id", "sneaky",
                                                 env={"MNIST_BROKER_PASSWORD": PASSWORDS["collector-1"]}),
                                         ("refused", "mnist/status/input/sneaky", "not authorized")),
    }
    lines = {}
    for case, (proc, words) in cases.items():
        code, err = finish(proc)
        assert code != 0, f"{case}: exit code {code}\n{err}"
        line = one_line_error(err)
        for word in words:
            assert word.lower() in line.lower(), f"{case}: {word!r} not in {line!r}"
        assert PASSWORDS["collector-1"] not in line and "not-the-password" not in line
        lines[case] = line
    print("\nRELIABILITY security-refusals:\n  " + "\n  ".join(f"{k}: {v}" for k, v in lines.items()))


def test_connection_failures_are_one_line(secured_broker) -> None:  # noqa: F811
    """What the command prints for these (`mnist-tui: ` + the message, as for the refusals above)."""
    _, secure = secured_broker
    cases = {
        "plain TCP on the TLS port": (replace(login(secure, "output"), tls=False, cafile=None),
                                      ("closed the connection", "mqtts://")),
        "no CA for the broker's certificate": (replace(login(secure, "output"), cafile=None),
                                               ("TLS", "certificate not trusted", "--cafile")),
        "unknown user": (login(secure, "mallory", "guess"), ("refused", "not authorized")),
        "nothing listening": (BrokerAddress(port=free_port()), ("cannot reach",)),
    }
    for case, (address, words) in cases.items():
        with pytest.raises(BrokerError) as caught:
            probe(address, timeout=10)
        line = str(caught.value)
        assert "\n" not in line and all(w in line for w in words), f"{case}: {line}"
        assert PASSWORDS["collector-1"] not in line


def test_password_file_logs_in_without_showing_the_password(secured_broker, tmp_path: Path) -> None:  # noqa: F811
    """--password-file: the role gets in (its status arrives), and the password is not in its command line."""
    _, secure = secured_broker
    secret = tmp_path / "output.password"
    secret.write_text(PASSWORDS["collector-1"] + "\n")
    secret.chmod(0o600)
    console = MqttProbe(login(secure, "console"), "mnist/status/#")
    engine = Engine("--broker", f"mqtts://collector-1@127.0.0.1:{secure.port}", *_tls_args(secure),
                    "--password-file", str(secret), "run", "output", "--id", "collector-1", "--quiet")
    try:
        wait_status(console, "mnist/status/output/collector-1", lambda s: s["state"] == "running",
                    what="never running", engine=engine)
        assert PASSWORDS["collector-1"] not in " ".join(psutil.Process(engine.pid).cmdline())
    finally:
        engine.close()
        console.close()


def test_a_denied_result_topic_is_said_once_and_the_worker_goes_on(secured_broker, caplog) -> None:  # noqa: F811
    """An infer role that may not write where it is told to (--result-topic outside its ACL): at QoS 1 the
    broker says so in each PUBACK (MQTT 5); the worker logs ONE line naming the topic, counts every
    refusal, and keeps serving."""
    _, secure = secured_broker
    settings = Settings(qos=1, topics=Topics(results="stolen"))
    worker = Worker(login(secure, "infer"), settings, "worker-1", model=model())
    caplog.set_level(logging.ERROR, logger="engine.roles.role")
    worker.start()
    try:
        # two TLS connections on a loaded machine: a generous deadline, and a failure says which one is missing
        assert worker.wait_ready(90) and worker.fatal_error is None, (
            f"ready: {worker.ready.is_set()}, control connected: {worker.connected.is_set()}, data connected: "
            f"{worker.data_connected.is_set()}, last error: {worker.last_error}")
        images = MqttProbe(login(secure, "input"), client_id="player-1")
        try:
            send(images, (f"i{n}" for n in range(20)))
        finally:
            images.close()
        wait_for(lambda: worker.refused == 20, 30, message=lambda: f"{worker.refused} refusals seen")
        assert worker.processed == 20, "the worker went on"
        refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
        assert refusals == ["the broker refused to let infer worker-1 publish on stolen: not authorized"], refusals
    finally:
        worker.stop()


class _RunsCode:
    """A pickle that runs a shell command when it is loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


def test_models_that_would_run_code_are_refused(tmp_path: Path) -> None:
    """A pickled module (as the original demo shipped) and a pickle that runs a shell command: refused
    with one line, and the command never runs."""
    marker = tmp_path / "pwned"
    whole = tmp_path / "whole-module.pt"
    torch.save(LeNet5(), whole)  # the module pickled, not its weights
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(_RunsCode(marker)))
    code, err = finish(run_cli("--broker", "mqtt://127.0.0.1:1", "run", "infer", "--model", str(evil)))
    line = one_line_error(err)
    assert code != 0 and str(evil) in line and "pickle" in line.lower(), line
    with pytest.raises(ModelError, match="pickle"):  # the same refusal, without another torch import
        load_model(whole)
    assert not marker.exists(), "loading the model ran code"


def test_client_ids_and_groups_cannot_inject_topic_levels(mosquitto_broker, probe_factory) -> None:
    """`--id 'a/#'` becomes one safe topic level everywhere (status, control, reply); a group with '/'
    or a wildcard is refused in one line."""
    addr = mosquitto_broker.address
    watch = probe_factory(addr, ["mnist/status/#", "mnist/reply/#"])
    role = Collector(addr, Settings(), "a/#/+x")
    role.start()
    try:
        assert role.wait_ready(30)
        assert role.client_id == "a____x"
        bye = wait_status(watch, "mnist/status/output/a____x", lambda s: s["state"] == "running")
        assert bye["id"] == "a____x"
        watch.publish("mnist/control/output/a____x", json.dumps({"cmd": "ping", "req": 1}), qos=1)
        wait_for(lambda: watch.messages("mnist/reply/output/a____x"), message="no reply on the sanitized topic")
        assert all(len(m.topic.split("/")) == 4 for m in watch.messages()), [m.topic for m in watch.messages()]
        assert status(watch, "mnist/status/output/a") is None
    finally:
        role.stop()
    parser = build_parser()  # what `run` checks before it starts anything (ConfigError: one line)
    for argv, expected in [(["run", "infer", "--group", bad], "bad group name") for bad in ("g/#", "a/b", "+")]:
        with pytest.raises(ConfigError, match=expected):
            settings_from_args(parser.parse_args(argv))
    args = parser.parse_args(["run", "output"])
    args.topic_prefix = "x/#"  # refused by its option's parser first (test_cli_conventions), and here as well
    with pytest.raises(ConfigError, match="bad topic 'x/#'"):
        settings_from_args(args)



def test_a_worker_whose_results_the_broker_refuses_says_so(secured_broker) -> None:  # noqa: F811
    """worker-1 may publish results on `result` only: sent elsewhere, a QoS 1 result is refused in its PUBACK
    (MQTT 5), and the worker says so, even when a QoS 0 batch came between the result and the refusal (the
    results connection listened for refusals only while the last batch was QoS 1)."""
    _, secure = secured_broker
    settings = Settings(topics=Topics(results="elsewhere"))
    worker = Worker(login(secure, "worker-1"), settings, "worker-1", model=model())
    worker.start()
    try:
        assert worker.wait_ready(90) and worker.fatal_error is None, worker.last_error
        results = worker.results_client
        results.loop_stop()  # paho writes the result from the publishing thread; its PUBACK waits unread
        images = MqttProbe(login(secure, "player-1"), client_id="player-1")
        try:
            send(images, ["at-qos-1"], qos=1)
            wait_for(lambda: worker.processed == 1, 30, message="the QoS 1 image was not answered")
            send(images, ["at-qos-0"], qos=0)
            wait_for(lambda: worker.processed == 2, 30, message="the QoS 0 image was not answered")
        finally:
            images.close()
        assert worker.refused == 0
        results.loop_start()
        wait_for(lambda: worker.refused >= 1, 30, message=lambda: f"no refusal said; last error {worker.last_error}")
        assert "refused to let infer worker-1 publish on elsewhere" in (worker.last_error or ""), worker.last_error
    finally:
        worker.stop()


def test_one_workers_account_cannot_speak_for_another(secured_broker) -> None:  # noqa: F811
    """The recipe's per-worker accounts: a real worker-1 (three connections, one account) runs and the
    console account sees it and its results; worker-2's credential, even under the client id worker-1,
    is refused on worker-1's status (MQTT 5 PUBACK) and worker-1's retained status stays its own."""

    from engine.console.observer import Observer

    _, secure = secured_broker
    worker = Worker(login(secure, "worker-1"), Settings(qos=1), "worker-1", model=model())
    worker.start()
    console = Observer(login(secure, "console"))
    console.start()
    imposters: list[Observer] = []
    try:
        # two TLS connections on a loaded machine: a generous deadline, and a failure says which one is missing
        assert worker.wait_ready(90) and worker.fatal_error is None, (
            f"ready: {worker.ready.is_set()}, control connected: {worker.connected.is_set()}, data connected: "
            f"{worker.data_connected.is_set()}, last error: {worker.last_error}")

        def worker_state() -> str | None:
            return next((r.state for r in console.snapshot().roles if r.id == "worker-1"), None)

        wait_for(lambda: worker_state() == "running", 30, message=lambda: f"console sees {worker_state()}")
        images = MqttProbe(login(secure, "player-1"), client_id="player-1")
        try:
            send(images, (f"i{n}" for n in range(5)))
        finally:
            images.close()
        wait_for(lambda: console.snapshot().stats.received >= 5, 30, message="the console saw no results")

        topic = "mnist/status/infer/worker-1"
        fake = json.dumps({"role": "infer", "id": "worker-1", "state": "hijacked"})
        for client_id in ("worker-2", "worker-1"):  # its own id, then worker-1's (a session takeover)
            imposter = Observer(login(secure, "worker-2"), client_id=client_id, max_images=0)
            imposters.append(imposter)
            imposter.start()
            wait_for(lambda imp=imposter: imp.snapshot().connection.state == "connected", 30,
                     message="the imposter did not get in")
            imposter.publish(topic, fake, qos=1, retain=True)
            assert verdict(imposter, topic, "publish").outcome == "refused"
            imposter.stop()
        late = MqttProbe(login(secure, "console"), topic)
        try:
            retained = late.wait_count(1)[0]
            assert json.loads(retained.payload)["state"] != "hijacked", retained.payload
        finally:
            late.close()
        assert all(r.state != "hijacked" for r in console.snapshot().roles)
        wait_for(lambda: worker_state() == "running", 30, message=lambda: f"worker-1 is {worker_state()}")
    finally:
        for imposter in imposters:
            imposter.stop()
        console.stop()
        worker.stop()
