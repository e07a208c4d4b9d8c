"""`python -m engine COMMAND ...`: the headless subcommands without the console (no textual import)."""

from __future__ import annotations

import sys

from engine.cli import main

if __name__ == "__main__":
    sys.exit(main())
