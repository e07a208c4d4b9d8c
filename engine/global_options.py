"""Options every command line tool is expected to have: --version, --log-level, -v and -q.

They go before the command (`mnist-tui -v run infer`). The log level of the headless commands is INFO
unless told otherwise: `-v` makes it DEBUG, `-q` WARNING, `-qq` ERROR; `--log-level` (or the environment
variable MNIST_LOG_LEVEL) names it outright and wins over -v and -q.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from importlib import metadata

from engine.errors import ConfigError

LEVELS = ("debug", "info", "warning", "error", "critical")


def version() -> str:
    """The installed distribution's version (a checkout that was never installed says so)."""
    try:
        return metadata.version("mnist-tui")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def add_global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    g = parser.add_argument_group("logging (before the command)")
    g.add_argument("--log-level", default=None, metavar="LEVEL", type=str.lower, choices=LEVELS,
                   help=f"one of {', '.join(LEVELS)} (env MNIST_LOG_LEVEL; default: info for the headless commands)")
    g.add_argument("-v", "--verbose", action="count", default=0, help="more log lines (debug)")
    g.add_argument("-q", "--quiet", action="count", default=0, dest="less_verbose",
                   help="fewer log lines: warnings (-q) or errors only (-qq)")


def log_level(args: argparse.Namespace, default: int = logging.INFO) -> int:
    """The level the flags ask for: --log-level, else MNIST_LOG_LEVEL, else `default` moved by -v and -q."""
    name = getattr(args, "log_level", None)
    if name is None:
        env = os.environ.get("MNIST_LOG_LEVEL")
        if env is not None and env.strip():
            name = env.strip().lower()
            if name not in LEVELS:
                raise ConfigError(f"bad MNIST_LOG_LEVEL {env!r}: use one of {', '.join(LEVELS)}")
    if name is not None:
        return logging.getLevelNamesMapping()[name.upper()]
    steps = getattr(args, "less_verbose", 0) - getattr(args, "verbose", 0)
    return max(logging.DEBUG, min(logging.CRITICAL, default + 10 * steps))


def setup_logging(level: int) -> None:
    """Log lines on stderr at `level`; the broker libraries' chatter stays out."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)
    logging.getLogger().setLevel(level)
    logging.getLogger("amqtt").setLevel(max(level, logging.CRITICAL))
    logging.getLogger("transitions").setLevel(max(level, logging.CRITICAL))
