"""engine.child_process.start_with_lower_priority: the threads a role starts run at a lower priority than
the rest of the process (the console's publisher gives way to its worker and broker)."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from engine.child_process import start_with_lower_priority

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")


def thread_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_threads_started_inside_run_lower_and_the_caller_keeps_its_priority() -> None:
    before = thread_nice()
    seen: dict[str, int] = {}
    done = threading.Event()

    def worker() -> None:
        seen["started thread"] = thread_nice()
        done.set()

    def start() -> None:
        seen["start"] = thread_nice()
        threading.Thread(target=worker).start()

    start_with_lower_priority(start, 3)
    assert done.wait(10)
    assert seen == {"start": min(before + 3, 19), "started thread": min(before + 3, 19)}
    assert thread_nice() == before
    assert os.getpriority(os.PRIO_PROCESS, os.getpid()) == before  # the main thread too


def test_what_start_raises_reaches_the_caller() -> None:
    def start() -> None:
        raise ValueError("no broker")

    with pytest.raises(ValueError, match="no broker"):
        start_with_lower_priority(start, 2)
    with pytest.raises(ValueError, match="no broker"):
        start_with_lower_priority(start, 0)  # no change asked for: called right here
