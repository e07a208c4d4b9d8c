"""`mnist-tui completion SHELL`: a shell completion script for the whole command line, written by shtab."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.cli import Command

NAME = "completion"
HELP = "print a shell completion script (bash, zsh, fish, tcsh)"
SHELLS = ("bash", "zsh", "fish", "tcsh")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Print a completion script for SHELL. bash: `mnist-tui completion bash > "
                          "~/.local/share/bash-completion/completions/mnist-tui`; zsh: write it as `_mnist-tui` "
                          "into a directory of $fpath; fish: into ~/.config/fish/completions/mnist-tui.fish.")
    parser.add_argument("shell", choices=SHELLS, help="the shell to complete in")


def runner(commands: Mapping[str, Command]) -> Callable[[argparse.Namespace], int]:
    """`run` that completes the parser with `commands` (the console script's own, `web` and this one)."""

    def run(args: argparse.Namespace) -> int:
        import shtab

        from engine.cli import build_parser

        print(shtab.complete(build_parser(commands), shell=args.shell), end="")
        return 0

    return run
