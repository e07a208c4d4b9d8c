"""Child processes that do not outlive the process that started them."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable


def die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking the kernel to send the child SIGTERM when its parent thread dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: nobody will stop us
            os._exit(1)

    return preexec


def lower_thread_priority(more_nice: int) -> None:
    """Raise the calling thread's nice value by `more_nice` (threads it starts afterwards take it too);
    the rest of the process keeps its own. Linux only, where the nice value belongs to each thread:
    elsewhere it would lower the whole process, so nothing is done. A refusal leaves it as it was."""
    if not sys.platform.startswith("linux") or more_nice <= 0:
        return
    with contextlib.suppress(OSError):
        os.nice(more_nice)
