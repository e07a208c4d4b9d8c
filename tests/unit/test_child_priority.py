"""engine.child_process.lower_thread_priority: a thread lowers its own priority, and the threads it starts
afterwards share it, while the rest of the process keeps its own (the console's publisher gives way to its
worker and broker)."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from engine.child_process import lower_thread_priority

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")


def thread_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_a_thread_and_those_it_starts_run_lower_and_the_rest_keeps_its_priority() -> None:
    before = thread_nice()
    seen: dict[str, int] = {}

    def started() -> None:
        seen["started by it"] = thread_nice()

    def lowered() -> None:
        lower_thread_priority(3)
        seen["itself"] = thread_nice()
        child = threading.Thread(target=started)
        child.start()
        child.join()

    thread = threading.Thread(target=lowered)
    thread.start()
    thread.join()
    assert seen == {"itself": min(before + 3, 19), "started by it": min(before + 3, 19)}
    assert thread_nice() == before  # the caller, here the main thread, is untouched
    lower_thread_priority(0)  # nothing asked: nothing done
    assert thread_nice() == before
