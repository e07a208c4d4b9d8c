"""Settings from MNIST_* variables get the checks of their flags: same parsers, one line, exit status 2."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from engine.cli import build_parser, main, settings_from_args
from engine.env_options import BENCH_ENV_VARS, ENV_VARS

BAD = [
    ({"MNIST_RATE": "fast"}, [], "MNIST_RATE='fast': not a number"),
    ({"MNIST_RATE": "-1"}, [], "MNIST_RATE='-1': must be from 0 to 100,000"),
    ({"MNIST_QOS": "3"}, [], "MNIST_QOS='3': QoS must be 0, 1 or 2"),
    ({"MNIST_MAX_BATCH": "0"}, [], "MNIST_MAX_BATCH='0': must be from 1 to 1,024"),
    ({"MNIST_QUEUE_SIZE": "-5"}, [], "MNIST_QUEUE_SIZE='-5': must be >= 1"),
    ({"MNIST_SHUFFLE": "maybe"}, [], "MNIST_SHUFFLE='maybe': not a yes/no value"),
    ({"MNIST_EMBEDDED": "emqx"}, [], "MNIST_EMBEDDED='emqx': invalid choice"),
    ({"MNIST_WORKERS": "none"}, [], "MNIST_WORKERS='none': not an integer"),
    ({}, ["--rate", "1e9"], "argument --rate: must be from 0 to 100,000: 1e9"),
    ({}, ["--rate", "1e-400"], "argument --rate: must be 0 (max) or from 0.01 to 100,000: 1e-400"),  # not max
    ({}, ["--max-delay-ms", "nan"], "argument --max-delay-ms: must be from 0 to 1,000"),
]


@pytest.mark.parametrize(("env", "flags", "expected"), BAD, ids=lambda v: str(v)[:40])
def test_bad_setting_is_one_line_and_exit_2(env, flags, expected, monkeypatch, capsys) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_info:
        main([*flags, "run", "input"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("mnist-tui") and ": error: " in lines[0] and expected in lines[0], lines[0]


def test_a_bad_variable_through_the_console_script_has_no_traceback() -> None:
    proc = subprocess.run([sys.executable, "-m", "engine", "run", "input"], capture_output=True, text=True,
                          env={"MNIST_RATE": "fast", "PATH": "/usr/bin:/bin"}, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["mnist-tui: error: MNIST_RATE='fast': not a number: 'fast' "
                                               "(see --help)"]


@pytest.mark.parametrize(("text", "value"), [("1", True), ("true", True), ("YES", True), ("on", True),
                                             ("0", False), ("false", False), ("no", False)])
def test_booleans_from_the_environment(text, value, monkeypatch) -> None:
    monkeypatch.setenv("MNIST_SHUFFLE", text)
    monkeypatch.setenv("MNIST_DURABLE", text)
    settings = settings_from_args(build_parser().parse_args([]))
    assert (settings.order == "shuffle") is value
    assert settings.durable is value


def test_good_variables_are_used_and_flags_win(monkeypatch) -> None:
    monkeypatch.setenv("MNIST_RATE", "250")
    monkeypatch.setenv("MNIST_MAX_BATCH", "32")
    monkeypatch.setenv("MNIST_QOS", "1")
    settings = settings_from_args(build_parser().parse_args(["run", "infer", "--max-batch", "8"]))
    assert (settings.rate, settings.max_batch, settings.qos) == (250.0, 8, 1)


def test_durable_turns_on_everything_that_keeps_messages() -> None:
    plain = settings_from_args(build_parser().parse_args([]))
    assert (plain.qos, plain.result_qos, plain.session_expiry, plain.durable) == (0, None, 0, False)
    durable = settings_from_args(build_parser().parse_args(["--durable"]))
    assert durable.durable and durable.qos == 1 and durable.result_qos == 1 and durable.session_expiry > 0
    chosen = settings_from_args(build_parser().parse_args(["--durable", "--session-expiry", "60",
                                                           "--result-qos", "2"]))
    assert (chosen.session_expiry, chosen.result_qos) == (60, 2)


# --help, --version and the counting -v/-q flags have no variable (MNIST_LOG_LEVEL names a level outright)
NO_VARIABLE = {"help", "version", "verbose", "less_verbose"}


def test_every_option_names_its_variable_in_help() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for p, names in ((parser, ENV_VARS), (commands["run"], ENV_VARS), (commands["bench"], ENV_VARS | BENCH_ENV_VARS)):
        for action in p._actions:
            if not action.option_strings or action.dest in NO_VARIABLE:
                continue
            var = names.get(action.dest)
            assert var is not None, f"{p.prog} {action.option_strings[0]} has no variable"
            assert var in (action.help or ""), f"{p.prog} {action.option_strings[0]}: {action.help!r}"
