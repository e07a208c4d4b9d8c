"""A stop asked for by SIGINT or SIGTERM, which a signal handler can record safely.

A Python signal handler runs in the main thread between two of its bytecodes, also while that thread is
inside `threading.Event.set`, `clear` or `wait` and holds the Event's lock. A handler that calls
`Event.set` then waits for a lock its own thread holds: a worker stopped by two signals at once (its parent's
SIGTERM and the kernel's parent-death SIGTERM) hung in `stop.set()` for good, connected to nothing, never
exiting. `SignalStop` keeps the request in a plain attribute instead, and its `wait` polls it.

A blocking read in the main thread (stdin) is another matter: Python runs the handler and reads on
(PEP 475), so a recorded request is never seen while nothing arrives. Inside `interruptible()` the handler
also raises `Interrupted`, which ends the read.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from types import FrameType

POLL = 0.05  # s: how soon `wait` sees a request


class Interrupted(KeyboardInterrupt):
    """A signal that cuts short what the main thread was doing: raised by `SignalStop.handler` inside
    `SignalStop.interruptible()`, once the stop is recorded, and by `run` while it starts. The exit status says
    which signal (128 + it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


class SignalStop:
    """`is_set` and `wait(timeout)` as a `threading.Event`'s; set only by `handler`, never locked."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._raising = False

    def handler(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        if self._raising:
            raise Interrupted(signum)

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """A block in which a signal also raises `Interrupted`: for a blocking read in the main thread, and
        only around code that holds no lock and leaves nothing half done that matters once stopped."""
        self._raising = True
        try:
            if self.signum is not None:  # asked for just before: the handler did not raise then
                raise Interrupted(self.signum)
            yield
        finally:
            self._raising = False

    def is_set(self) -> bool:
        return self.signum is not None

    def wait(self, timeout: float) -> bool:
        """True as soon as a stop was asked (seen within POLL seconds); False after `timeout` without one."""
        deadline = time.monotonic() + timeout
        while self.signum is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, POLL))
        return True
