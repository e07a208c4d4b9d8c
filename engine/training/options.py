"""The `train` subcommand's flags and defaults, apart from the trainer so the CLI starts without torch."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.settings import DEFAULT_WEIGHTS

DEFAULT_EPOCHS = 40
DEFAULT_SEED = 0
DEFAULT_BATCH = 64
DEFAULT_LR = 2e-3
# One thread: as fast as two on an idle 2-core machine for a net this small, and far faster when the
# machine is busy (OpenMP threads that wait for each other spin); the thread count also fixes the
# order of floating-point sums, so it is part of what makes a run repeatable.
DEFAULT_THREADS = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `train` subcommand's flags."""
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help=f"passes over the data ({DEFAULT_EPOCHS})")
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"seed for init, order, augmentation ({DEFAULT_SEED})"
    )
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help=f"training batch size ({DEFAULT_BATCH})")
    parser.add_argument(
        "--lr", type=float, default=DEFAULT_LR, help=f"peak learning rate, one-cycle schedule ({DEFAULT_LR})"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=DEFAULT_THREADS,
        help=f"torch threads; part of what makes a run repeatable ({DEFAULT_THREADS})",
    )
    parser.add_argument("--no-augment", action="store_true", help="train on the digits as they are")
    parser.add_argument("--idx", type=Path, metavar="DIR", help="train on the MNIST IDX files in DIR (gzipped or not)")
    parser.add_argument(
        "--limit", type=int, metavar="N", help="use only N training digits, picked by the seed (quick trials)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS, help="weights file to write (the shipped weights)")
    parser.add_argument(
        "--card", type=Path, help="model card to write (MODEL_CARD.md for the shipped weights, else OUT with .md)"
    )
    parser.add_argument("--no-bench", action="store_true", help="skip measuring forward speed for the card")
