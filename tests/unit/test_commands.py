"""Every subcommand the CLI offers resolves to its module's functions, and runs through `dispatch`."""

from __future__ import annotations

import pytest

from engine.cli import COMMANDS, main


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_has_arguments_and_a_runner(name: str) -> None:
    command = COMMANDS[name]
    assert callable(command.adder())
    assert callable(command.runner())


def test_health_is_dispatched_and_answers_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    # port 1 on loopback refuses at once: the command runs and says why in one line, no traceback
    status = main(["--broker", "mqtt://127.0.0.1:1", "health", "--timeout", "0.5"])
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith("mnist-tui: ") and len(err.strip().splitlines()) == 1


def test_a_health_timeout_past_any_clock_is_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    # 1e308 passed as a finite number and ended in an OverflowError traceback from the first wait
    with pytest.raises(SystemExit) as exit_:
        main(["--broker", "mqtt://127.0.0.1:1", "health", "--timeout", "1e308"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert "argument --timeout" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
