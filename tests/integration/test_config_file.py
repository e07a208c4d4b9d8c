"""Broker profiles in the user's config file, the precedence flag > environment > config > default, and
`mnist-tui config` showing where each setting came from with the password masked."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from engine.config_file import save_console_setting
from engine.errors import ConfigError

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


# ----- the console's preferences: [console] theme and filter, saved by the console -----
HAND_WRITTEN = """# my broker profiles (a comment the console must keep)
profile = "lab"

[profiles.lab]
broker = "mqtt://127.0.0.1:1883"   # the lab broker
insecure = false
"""


def test_saving_a_preference_changes_only_the_console_table(tmp_path: Path) -> None:
    path = _write_config(tmp_path, HAND_WRITTEN)
    path.chmod(0o640)
    save_console_setting(path, "theme", "nord")
    save_console_setting(path, "filter", "mnist/#")
    save_console_setting(path, "theme", "gruvbox")
    text = path.read_text(encoding="utf-8")
    assert text.startswith(HAND_WRITTEN), "profiles, comments and layout as the user wrote them"
    data = tomllib.loads(text)
    assert data["console"] == {"theme": "gruvbox", "filter": "mnist/#"}
    assert data["profiles"] == {"lab": {"broker": "mqtt://127.0.0.1:1883", "insecure": False}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o640, "the file keeps its mode"
    assert [p.name for p in path.parent.iterdir()] == ["config.toml"], "no temporary file left behind"
    # a new file (and its folder) is private to the user
    fresh = tmp_path / "new" / "mnist-tui" / "config.toml"
    save_console_setting(fresh, "filter", "a/+")
    assert tomllib.loads(fresh.read_text(encoding="utf-8")) == {"console": {"filter": "a/+"}}
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600


def test_a_file_that_cannot_be_written_is_left_alone_with_one_line(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.toml"
    target.write_text(HAND_WRITTEN, encoding="utf-8")
    link = tmp_path / "xdg" / "mnist-tui" / "config.toml"
    link.parent.mkdir(parents=True)
    link.symlink_to(target)
    with pytest.raises(ConfigError, match="symbolic link"):
        save_console_setting(link, "theme", "nord")
    assert link.is_symlink() and target.read_text(encoding="utf-8") == HAND_WRITTEN, "never written through"
    broken = tmp_path / "broken.toml"
    broken.write_text("[profiles.lab\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        save_console_setting(broken, "theme", "nord")
    assert broken.read_text(encoding="utf-8") == "[profiles.lab\n"
    blocked = tmp_path / "a-file"
    blocked.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"theme not saved to .*a-file/config.toml"):
        save_console_setting(blocked / "config.toml", "theme", "nord")


def test_console_preferences_follow_the_precedence(tmp_path: Path) -> None:
    path = _write_config(tmp_path, HAND_WRITTEN.replace("127.0.0.1:1883", "127.0.0.1:1"))
    save_console_setting(path, "theme", "nord")
    save_console_setting(path, "filter", "mnist/#")
    env = _env(tmp_path)
    lines = _shown(_run(env, "config").stdout)
    assert lines["theme"] == "nord (config)" and lines["filter"] == "mnist/# (config)"
    by_env = _shown(_run(_env(tmp_path, MNIST_THEME="dracula", MNIST_FILTER="x/+"), "config").stdout)
    assert by_env["theme"] == "dracula (env)" and by_env["filter"] == "x/+ (env)"
    by_flag = _shown(_run(_env(tmp_path, MNIST_THEME="dracula"), "--theme", "monokai", "--filter", "y/#",
                          "config").stdout)
    assert by_flag["theme"] == "monokai (flag)" and by_flag["filter"] == "y/# (flag)"
    # a saved filter the console cannot subscribe stops nothing: it is left out, with a note (it stopped every
    # command with a one-line error, and an older console could have saved one)
    for saved in ("a/#/b", "ok/\\u0001"):
        path.write_text(f'[console]\nfilter = "{saved}"\n', encoding="utf-8")
        bad = _run(env, "config")
        assert bad.returncode == 0 and _shown(bad.stdout)["filter"] == "# (default)", bad.stderr
        (note,) = bad.stderr.splitlines()
        assert note.startswith("note: console.filter in ") and "the console starts with #" in note, note
        assert "\x01" not in note, note
        for flag in (["--filter", "x/#"], ["--filt", "x/#"], ["--filt=x/#"]):  # argparse takes a shortened flag
            flagged = _run(env, *flag, "config")
            assert _shown(flagged.stdout)["filter"] == "x/# (flag)" and not flagged.stderr, (flag, flagged.stderr)
    path.write_text('[console]\ncolour = "red"\n', encoding="utf-8")
    assert "unknown key 'colour' in [console]" in _run(env, "config").stderr
