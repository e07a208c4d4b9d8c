"""Warnings about exposed secrets: a password in the broker URL, a password file its group or others may read.
Logged at WARNING (headless) and shown as notifications when the console opens, on a real broker."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from helpers import DEADLINE

from engine.cli import address_from_args, build_parser
from engine.mqtt.address import password_file_warning
from tui.app import MnistApp
from tui.cli import main as console_main

SECRET = "s3cret-pw"


def args_for(*argv: str) -> Any:
    return build_parser().parse_args([*argv, "run", "output"])


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def password_file(tmp_path: Path, mode: int) -> Path:
    path = tmp_path / "broker.password"
    path.write_text(SECRET + "\n")
    path.chmod(mode)
    return path


def test_a_password_in_the_url_is_warned_about(caplog):
    with caplog.at_level(logging.WARNING):
        address = address_from_args(args_for("--broker", f"mqtt://worker-1:{SECRET}@127.0.0.1:1883"))
    assert address is not None and address.password == SECRET  # still used: a warning, not a refusal
    (warning,) = warnings_of(caplog)
    assert "password" in warning and "--password-file" in warning and "MNIST_BROKER_PASSWORD" in warning
    assert SECRET not in warning and "\n" not in warning


def test_a_url_without_password_is_not(caplog):
    with caplog.at_level(logging.WARNING):
        address_from_args(args_for("--broker", "mqtt://worker-1@127.0.0.1:1883"))
    assert warnings_of(caplog) == []


@pytest.mark.parametrize(("mode", "who"), [(0o644, "its group and others"), (0o640, "its group"),
                                           (0o604, "others"), (0o600, None), (0o400, None)])
def test_a_password_file_others_may_read_is_warned_about(tmp_path, caplog, mode, who):
    path = password_file(tmp_path, mode)
    with caplog.at_level(logging.WARNING):
        address = address_from_args(args_for("--broker", "mqtt://worker-1@127.0.0.1:1883", "--password-file",
                                              str(path)))
    assert address is not None and address.password == SECRET
    if who is None:
        assert warnings_of(caplog) == []
        return
    (warning,) = warnings_of(caplog)
    assert f"may be read by {who} (mode {mode:04o})" in warning and f"chmod 600 {path}" in warning
    assert SECRET not in warning


def test_the_file_named_by_the_environment_is_checked_too(tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("MNIST_BROKER_PASSWORD_FILE", str(password_file(tmp_path, 0o644)))
    with caplog.at_level(logging.WARNING):
        address_from_args(args_for("--broker", "mqtt://worker-1@127.0.0.1:1883"))
    assert any("chmod 600" in w for w in warnings_of(caplog))


def test_an_unreadable_path_gets_no_warning(tmp_path):
    assert password_file_warning(tmp_path / "missing") is None  # reading it is what fails, with its own line


@pytest.mark.parametrize("case", ["url", "file"])
def test_the_console_opens_with_the_warning(mosquitto_broker, tmp_path, monkeypatch, case):
    """`mnist-tui --broker ...` (attached, no local roles): the warning is a notification on the screen."""
    port = mosquitto_broker.address.port
    if case == "url":
        argv = ["--broker", f"mqtt://console:{SECRET}@127.0.0.1:{port}", "--roles", "none"]
        expected = "the broker URL holds a password"
    else:
        path = password_file(tmp_path, 0o644)
        argv = ["--broker", f"mqtt://console@127.0.0.1:{port}", "--password-file", str(path), "--roles", "none"]
        expected = "chmod 600"
    shown: list[str] = []
    notify = MnistApp.notify

    def recording(self: MnistApp, message: str, *args: Any, **kwargs: Any) -> None:
        shown.append(str(message))
        notify(self, message, *args, **kwargs)

    async def pilot(p: Any) -> None:
        for _ in range(int(DEADLINE / 0.05)):
            if any(expected in text for text in shown):
                break
            await p.pause(0.05)
        p.app.exit()

    run = MnistApp.run
    monkeypatch.setattr(MnistApp, "notify", recording)
    monkeypatch.setattr(MnistApp, "run", lambda self, **kw: run(self, headless=True, auto_pilot=pilot))
    assert console_main(argv) == 0
    assert any(expected in text for text in shown), shown
    assert not any(SECRET in text for text in shown)
