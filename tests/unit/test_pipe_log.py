"""The roles child process hands its warnings to the console over a pipe, without hanging on a lock."""

from __future__ import annotations

import logging
import threading
from multiprocessing import Pipe

from engine.console.child import PipeLogHandler


def test_a_warning_goes_through_the_pipe_and_logging_returns() -> None:
    parent, child = Pipe()
    logger = logging.getLogger("test-pipe-log")
    logger.propagate = False
    handler = PipeLogHandler(child, threading.Lock())
    logger.addHandler(handler)
    try:
        done = threading.Event()
        # the handler's own lock is held around emit(): one that took the pipe's lock as its own hung here
        worker = threading.Thread(target=lambda: (logger.warning("disk %s", "full"), done.set()), daemon=True)
        worker.start()
        assert done.wait(10), "logging a warning hung"
        assert parent.poll(10)
        assert parent.recv() == ("log", logging.WARNING, "test-pipe-log", "disk full")
    finally:
        logger.removeHandler(handler)
