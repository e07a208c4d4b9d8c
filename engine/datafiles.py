"""Where the files read at run time live, in a source checkout and in a regular install alike.

`mosquitto.conf` (the embedded broker's config) and `assets/mnist_images/` (the bundled digits) sit at
the top of the repository, outside the packages. A source checkout or an editable install reads them
there. A wheel ships them as setuptools data-files (`[tool.setuptools.data-files]` in pyproject.toml),
which the installer puts under `<data prefix>/share/mnist-tui/`: the environment's prefix, or the
user base for `pip install --user`. `data_path` looks in that order.

The model weights (engine/weights/) and the styles (tui/*.tcss) are package data, found next to the
code that reads them, so they need no lookup here.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

__all__ = ["CHECKOUT", "SHARE", "data_dirs", "data_path"]

CHECKOUT = Path(__file__).resolve().parent.parent  # the repository root, when running from one
SHARE = Path("share") / "mnist-tui"  # matches the data-files targets in pyproject.toml


def data_dirs() -> list[Path]:
    """The folders `data_path` searches, in order: the checkout, then each install scheme's share/mnist-tui."""
    user = sysconfig.get_path("data", sysconfig.get_preferred_scheme("user"))
    prefixes = [sysconfig.get_path("data"), sys.prefix, user]
    dirs = [CHECKOUT]
    for prefix in prefixes:
        candidate = Path(prefix) / SHARE
        if candidate not in dirs:
            dirs.append(candidate)
    return dirs


def data_path(name: str) -> Path:
    """The first existing `name` ("mosquitto.conf", "assets/mnist_images") in `data_dirs()`.

    When none has it, the checkout's path, so that the error a caller raises names a sensible place.
    """
    for folder in data_dirs():
        candidate = folder / name
        if candidate.exists():
            return candidate
    return CHECKOUT / name
