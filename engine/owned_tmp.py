"""Temporary directories named after the process that owns them, and swept once that process is gone.

A process killed outright (SIGKILL, a hangup that ends it before its cleanup) leaves its directory behind;
the next one to make a directory of the same kind removes those whose owner no longer runs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def remove_stale(prefix: str) -> None:
    """Remove `<tmp>/<prefix><pid>-*` directories whose process no longer exists."""
    for path in Path(tempfile.gettempdir()).glob(f"{prefix}*-*"):
        owner = path.name[len(prefix):].split("-", 1)[0]
        if not owner.isdigit() or int(owner) == os.getpid():
            continue
        try:
            os.kill(int(owner), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:  # alive, or not ours to judge
            continue


def owned_tmpdir(prefix: str) -> Path:
    """A new `<tmp>/<prefix><our pid>-XXXX` directory, after removing those of processes that are gone."""
    remove_stale(prefix)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))
