"""Broker profiles in the user's config file, the precedence flag > environment > config > default, and
`mnist-tui config` showing where each setting came from with the password masked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ENGINE = [sys.executable, "-m", "engine"]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MNIST_")}
    return env | {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path)} | extra


def _write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "xdg" / "mnist-tui" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text(text, encoding="utf-8")
    return path


def _run(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ENGINE, *argv], capture_output=True, text=True, timeout=60, env=env)


def _shown(out: str) -> dict[str, str]:
    return {line.split()[0]: " ".join(line.split()[1:]) for line in out.splitlines()}


@pytest.fixture
def config(tmp_path: Path, mosquitto_broker) -> Path:
    password = tmp_path / "lab.password"
    password.write_text("s3cret\n", encoding="utf-8")
    port = mosquitto_broker.address.port
    return _write_config(tmp_path, f"""
profile = "lab"
[profiles.lab]
broker = "mqtt://127.0.0.1:{port}"
user = "alice"
password_file = "{password}"
[profiles.dead]
broker = "mqtt://127.0.0.1:1"
""")


def test_a_profile_reaches_the_broker_and_config_shows_its_sources(config: Path, tmp_path: Path,
                                                                    mosquitto_broker) -> None:
    env = _env(tmp_path)
    port = mosquitto_broker.address.port
    shown = _run(env, "config")
    assert shown.returncode == 0, shown.stderr
    assert "s3cret" not in shown.stdout, "the password is masked"
    lines = _shown(shown.stdout)
    assert lines["config"] == f"file {config}"
    assert lines["profile"] == "lab"
    assert lines["broker"] == f"mqtt://alice@127.0.0.1:{port} (config)"
    assert lines["user"] == "alice (config)"
    assert lines["password"] == "**** (config)"
    assert lines["mqtt"] == "auto (default)"
    # the default profile is used for real: health reaches the profile's broker (no worker there: exit 1)
    done = _run(env, "health", "--timeout", "0")
    assert done.returncode == 1 and "unhealthy: 0 of at least 1 infer" in done.stderr, done.stderr
    # --profile picks another; the environment beats the config, a flag beats both
    dead = _run(env, "--profile", "dead", "health", "--timeout", "0")
    assert "cannot reach broker at mqtt://127.0.0.1:1" in dead.stderr
    by_env = _shown(_run(_env(tmp_path, MNIST_BROKER="mqtt://envhost:1", MNIST_MQTT="3.1.1"), "config").stdout)
    assert by_env["broker"] == "mqtt://alice@envhost:1 (env)", "each setting on its own: the profile's user stays"
    assert by_env["user"] == "alice (config)"
    assert by_env["mqtt"] == "3.1.1 (env)"
    by_flag = _shown(_run(_env(tmp_path, MNIST_BROKER="mqtt://envhost:1"), "--broker", "mqtt://flaghost:2",
                          "config").stdout)
    assert by_flag["broker"].endswith("flaghost:2 (flag)")


def test_bad_config_files_get_one_line(tmp_path: Path) -> None:
    env = _env(tmp_path)
    assert _run(env, "config").returncode == 0, "no config file at all is fine"
    missing = _run(_env(tmp_path, MNIST_CONFIG=str(tmp_path / "nope.toml")), "config")
    assert missing.returncode == 1 and missing.stderr == f"mnist-tui: config file not found: {tmp_path / 'nope.toml'}\n"
    path = _write_config(tmp_path, "[profiles.lab\nbroker = 1")
    for argv in (["config"], ["health"]):
        bad = _run(env, *argv)
        assert bad.returncode == 1 and bad.stderr.startswith(f"mnist-tui: bad config file {path}:")
        assert bad.stderr.count("\n") == 1
    path.write_text('[profiles.lab]\nbroker = 5\n', encoding="utf-8")
    assert "lab.broker must be a non-empty string" in _run(env, "config").stderr
    path.write_text('[profiles.lab]\nhost = "x"\n', encoding="utf-8")
    assert "unknown key 'host' in profile 'lab'" in _run(env, "config").stderr
    path.write_text('[profiles.lab]\nbroker = "mqtt://x"\n', encoding="utf-8")
    unknown = _run(env, "--profile", "prod", "config")
    assert unknown.returncode == 1 and "no profile 'prod'" in unknown.stderr and "(profiles: lab)" in unknown.stderr
