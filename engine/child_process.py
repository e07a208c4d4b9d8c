"""Child processes that do not outlive the process that started them."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
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


def start_with_lower_priority(start: Callable[[], None], more_nice: int) -> None:
    """Call `start` on a thread of its own whose nice value is `more_nice` above this thread's, so that the
    threads it starts run at that priority too; the rest of the process keeps its own. Linux only (there the
    nice value belongs to each thread, and a new thread takes its creator's); elsewhere `start` runs as is.
    Raises what `start` raised.
    """
    if not sys.platform.startswith("linux") or more_nice <= 0:
        start()
        return
    raised: list[BaseException] = []

    def run() -> None:
        with contextlib.suppress(OSError):  # then it stays as it was
            os.nice(more_nice)  # this thread only
        try:
            start()
        except BaseException as exc:  # handed to the caller below
            raised.append(exc)

    thread = threading.Thread(target=run, name="start-lower-priority")
    thread.start()
    thread.join()
    if raised:
        raise raised[0]
