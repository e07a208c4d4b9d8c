"""--broker-config (env MNIST_BROKER_CONFIG): the embedded mosquitto runs the operator's config file, on a real
mosquitto; and the option refuses, in one line, what it cannot do."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from helpers import DEADLINE, make_client, try_connect, wait_for

import engine.mqtt.broker as broker_module
from engine.cli import main
from engine.console.roles_process import RolesProcess
from engine.errors import ConfigError
from engine.mqtt.address import BrokerAddress
from engine.mqtt.broker import EmbeddedBroker, free_port
from engine.settings import Settings

REPO = Path(__file__).resolve().parents[2]
MAX_PACKET = 2000  # the repository's mosquitto.conf says 4194304: a broker that says 2000 runs our file
USER, PASSWORD = "remote-1", "remote-1-pw"


def operator_config(tmp_path: Path) -> tuple[Path, int]:
    """A config of the operator's own: a small packet limit, and a second listener that wants a password."""
    passwd = tmp_path / "passwd"
    passwd.write_text(f"{USER}:{PASSWORD}\n")
    passwd.chmod(0o600)
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    subprocess.run([tool, "-U", str(passwd)], check=True, capture_output=True)  # hash it in place
    port = free_port()
    config = tmp_path / "operator.conf"
    config.write_text(
        f"per_listener_settings true\nmax_packet_size {MAX_PACKET}\n"
        "listener 1883 127.0.0.1\nallow_anonymous true\n"
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\n"
    )
    return config, port


def max_packet_size(address: BrokerAddress) -> int | None:
    """The Maximum Packet Size an MQTT 5 CONNACK announces (None: no limit announced)."""
    client = make_client(address, protocol=5)
    seen: list[Any] = []
    done = threading.Event()

    def on_connect(_c: mqtt.Client, _u: Any, _flags: Any, _reason: Any, props: Any) -> None:
        seen.append(getattr(props, "MaximumPacketSize", None))
        done.set()

    client.on_connect = on_connect
    client.connect(address.host, address.port)
    client.loop_start()
    try:
        assert done.wait(DEADLINE), "no CONNACK"
    finally:
        client.disconnect()
        client.loop_stop()
    return seen[0]


def assert_config_in_effect(loopback: BrokerAddress, second_port: int) -> None:
    assert max_packet_size(loopback) == MAX_PACKET
    second = BrokerAddress(port=second_port)
    anonymous = try_connect(second)
    assert isinstance(anonymous, str) or anonymous.is_failure, f"anonymous let in: {anonymous}"
    logged_in = try_connect(replace(second, username=USER, password=PASSWORD))
    assert not isinstance(logged_in, str) and not logged_in.is_failure, logged_in
    assert not try_connect(loopback).is_failure  # the loopback listener stays open to the local roles


@pytest.mark.needs_mosquitto
def test_the_default_config_is_not_the_operators():
    with EmbeddedBroker(kind="mosquitto") as broker:
        assert max_packet_size(broker.address) != MAX_PACKET


@pytest.mark.needs_mosquitto
@pytest.mark.parametrize("how", ["env", "profile"])
def test_run_uses_the_config_named_by_the_environment(tmp_path, how):
    """`MNIST_BROKER_CONFIG=FILE mnist-tui run output`, or `broker_config` in the config file's profile:
    variable (or profile), pipeline and broker, end to end."""
    config, second_port = operator_config(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MNIST_")}
    if how == "env":
        env["MNIST_BROKER_CONFIG"] = str(config)
    else:
        profiles = tmp_path / "config.toml"
        profiles.write_text(f'profile = "local"\n[profiles.local]\nbroker_config = "{config}"\n')
        env["MNIST_CONFIG"] = str(profiles)
    proc = subprocess.Popen([sys.executable, "-m", "engine", "run", "output"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr or ()), daemon=True)
    reader.start()
    try:
        found = wait_for(lambda: next((m for line in list(lines)
                                       if (m := re.search(r"broker: mqtt://127\.0\.0\.1:(\d+)", line))), None),
                         timeout=60, message=lambda: f"no broker line: {lines}")
        assert_config_in_effect(BrokerAddress(port=int(found.group(1))), second_port)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(DEADLINE)
        reader.join(DEADLINE)
    assert proc.returncode == 0, lines


@pytest.mark.needs_mosquitto
def test_the_consoles_roles_use_the_config(tmp_path):
    """The console's roles run in a process of their own (engine/console/roles_process.py): the file goes too."""
    config, second_port = operator_config(tmp_path)
    roles = RolesProcess(Settings(), ["output"], broker_config=config)
    info = roles.start()
    try:
        assert info.broker_kind == "mosquitto"
        assert_config_in_effect(info.address, second_port)
    finally:
        roles.stop()


def test_a_missing_file_is_one_line(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "nope.conf"
    for argv, env in ((["run", "output", "--broker-config", str(missing)], None),
                      (["run", "output"], str(missing))):
        if env is not None:
            monkeypatch.setenv("MNIST_BROKER_CONFIG", env)
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"no such file: {missing}" in err, err
        if env is not None:
            assert "MNIST_BROKER_CONFIG" in err
    monkeypatch.delenv("MNIST_BROKER_CONFIG")
    profiles = tmp_path / "config.toml"
    profiles.write_text(f'[profiles.local]\nbroker_config = "{missing}"\n')
    assert main(["--config", str(profiles), "--profile", "local", "run", "output"]) == 1
    err = capsys.readouterr().err
    assert err == f"mnist-tui: bad config file {profiles}: local.broker_config: no such file: {missing}\n"


@pytest.mark.parametrize("flags", [["--embedded", "python"], ["--broker", "mqtt://127.0.0.1:1"]])
def test_no_config_for_the_python_broker_or_an_external_one(tmp_path, capsys, flags):
    config = tmp_path / "operator.conf"
    config.write_text("listener 1883 127.0.0.1\n")
    assert main([*flags, "--broker-config", str(config), "run", "output"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--broker-config" in err and flags[0] in err, err


def test_auto_without_mosquitto_refuses_the_config(tmp_path, monkeypatch):
    config = tmp_path / "operator.conf"
    config.write_text("listener 1883 127.0.0.1\n")
    monkeypatch.setattr(broker_module, "find_mosquitto", lambda: None)
    with pytest.raises(ConfigError, match="mosquitto not found"):
        EmbeddedBroker(kind="auto", config=config)
