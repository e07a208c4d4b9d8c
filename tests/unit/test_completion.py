"""`mnist-tui completion SHELL`: shtab's scripts cover every subcommand, and bash really completes with one."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from engine.cli import COMMANDS
from tui.cli import main

SUBCOMMANDS = ["run", *COMMANDS, "web", "completion"]


def _script(shell: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["completion", shell]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish", "tcsh"])
def test_each_shell_gets_a_script_naming_every_subcommand(shell: str, capsys: pytest.CaptureFixture[str]) -> None:
    script = _script(shell, capsys)
    missing = [name for name in SUBCOMMANDS if name not in script]
    assert not missing, f"{shell} script lacks {missing}"


def test_bash_completes_subcommands_and_their_options(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    script = tmp_path / "mnist-tui.bash"
    script.write_text(_script("bash", capsys))
    probe = (f"source {script}\n"
             "complete_words() { COMP_WORDS=(\"$@\"); COMP_CWORD=$(($# - 1)); COMP_LINE=\"$*\"; "
             "COMP_POINT=${#COMP_LINE}; COMPREPLY=(); _shtab_mnist_tui; echo \"${COMPREPLY[*]}\"; }\n"
             "complete_words mnist-tui we\n"
             "complete_words mnist-tui web --p\n"
             "complete_words mnist-tui completion z\n")
    lines = subprocess.run([bash, "--norc", "-c", probe], capture_output=True, text=True, timeout=30,
                           check=True).stdout.splitlines()
    assert lines == ["web", "--port", "zsh"]


def test_an_unknown_shell_gets_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["completion", "ksh"])
    err = capsys.readouterr().err
    assert exit_info.value.code != 0 and "invalid choice: 'ksh'" in err and len(err.strip().splitlines()) == 1
