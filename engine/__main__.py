"""`python -m engine COMMAND ...`: the headless subcommands without the console (no textual import)."""

from __future__ import annotations

import sys
import warnings

from engine.cli import build_parser, dispatch
from engine.errors import MnistError


def main(argv: list[str] | None = None) -> int:
    # torch warns about the pickle protocol of a file it is about to refuse; the refusal is the one line
    warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
    try:  # a Ctrl-C at any moment, even while the parser imports the optional commands, ends quietly
        parser = build_parser()
        args = parser.parse_args(argv)
        if not args.command:
            parser.error("a command is needed here (run, train, bench, ...); the console is `mnist-tui`")
        return dispatch(args)
    except MnistError as exc:
        print(f"mnist-tui: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
