"""A child process of the console's: spawned, two pipes, a wait until it is up, a stop with deadlines.

The console runs its observer (`observer_process.py`) and its local roles (`roles_process.py`) each in a
child process of its own, so that neither shares the screen's GIL. Both are started and stopped alike:

- `ChildProcess.start(target, *args)` spawns `target(commands, events, *args)` (a fresh interpreter:
  nothing of the console's threads or state is inherited) with two one-way pipes: commands go down,
  events (snapshots, log records, "ready", ...) come up.
- `wait_ready` reads events until the caller says the child is up; a child that exits or does not come
  up in time is killed and reported in one line (BrokerError).
- `stop` asks the child to stop, waits for it within a deadline, then terminates and at last kills it.

In the child, `child_prologue` comes first: Ctrl-C is left to the console, the child's priority is set,
and its stdout and stderr go to /dev/null (nothing a child prints may garble the screen); warnings can
come back over the events pipe with `PipeLogHandler`. Nothing here imports textual.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from engine.errors import BrokerError

KILL_WAIT = 5.0  # seconds a terminated (then killed) child gets to go


def child_prologue(nice: int) -> None:
    """First thing in a child: Ctrl-C is the console's, `nice` is its priority, prints go nowhere."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(nice)  # inherited by every thread and process the child starts
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # a stray print (or a C library's warning) must not land on the console's screen
    os.dup2(devnull, 2)


def forward_logs(events: Connection, lock: threading.Lock, level: int = logging.WARNING) -> None:
    """In a child: every log record at `level` or above goes up the events pipe as ("log", level, name, text)."""
    root = logging.getLogger()
    root.handlers[:] = [PipeLogHandler(events, lock, level)]
    root.setLevel(level)


class PipeLogHandler(logging.Handler):
    """Sends each record as ("log", levelno, logger name, message); `lock` guards the pipe's other writers."""

    def __init__(self, conn: Connection, lock: threading.Lock, level: int = logging.WARNING) -> None:
        super().__init__(level=level)
        self.conn = conn
        self.pipe_lock = lock  # not `self.lock`: that is the Handler's own, held around emit()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            with self.pipe_lock:
                self.conn.send(("log", record.levelno, record.name, record.getMessage()))
        except Exception:  # the console is gone; nothing to tell
            pass


class ChildProcess:
    """One spawned child and its two pipes, seen from the console. `what` names it in errors."""

    def __init__(self, name: str, what: str) -> None:
        self.name = name
        self.what = what
        self._ctx = multiprocessing.get_context("spawn")
        self._proc: Any = None
        self.commands: Connection | None = None  # the console writes, the child reads
        self.events: Connection | None = None  # the child writes, the console reads

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None

    def start(self, target: Callable[..., None], *args: Any) -> None:
        """Spawn `target(commands, events, *args)`; the arguments are pickled for the fresh interpreter."""
        cmd_recv, cmd_send = self._ctx.Pipe(duplex=False)
        ev_recv, ev_send = self._ctx.Pipe(duplex=False)
        self._proc = self._ctx.Process(target=target, args=(cmd_recv, ev_send, *args), name=self.name, daemon=True)
        try:
            self._proc.start()
        except BaseException:
            self._proc = None
            for conn in (cmd_recv, cmd_send, ev_recv, ev_send):
                conn.close()
            raise
        cmd_recv.close()  # the child's ends: ours closed, so a dead child reads as EOF here
        ev_send.close()
        self.commands, self.events = cmd_send, ev_recv

    def wait_ready(self, timeout: float, ready: Callable[[], bool], read: Callable[[], None],
                   poll: float = 0.05) -> None:
        """Call `read()` whenever an event waits, until `ready()`; BrokerError if the child exits or times out.

        `read` raises EOFError when the child has closed its end. Whatever else it raises (the child's own
        error, say) also ends the wait. On any failure the child is
        killed before the exception goes on.
        """
        proc, events = self._proc, self.events
        assert proc is not None and events is not None, "start() first"
        deadline = time.monotonic() + timeout
        try:
            while not ready():
                if events.poll(poll):
                    try:
                        read()
                        continue
                    except (EOFError, OSError):  # the child closed its end: it is gone
                        proc.join(KILL_WAIT)
                if not proc.is_alive():
                    raise BrokerError(f"{self.what} exited during start (exit code {proc.exitcode})")
                if time.monotonic() > deadline:
                    raise BrokerError(f"{self.what} did not start within {timeout:.0f} s")
        except BaseException:
            self.kill()
            raise

    def send(self, item: Any) -> None:
        """Send a command down; BrokerError when the child is not running or its pipe is gone."""
        conn = self.commands
        if conn is None:
            raise BrokerError(f"{self.what} is not running")
        try:
            conn.send(item)
        except (OSError, ValueError) as exc:
            raise BrokerError(f"{self.what} is gone: {exc}") from None

    def stop(self, timeout: float, stopped: threading.Event | None = None, command: Any = "stop") -> None:
        """Send `command`, give the child `timeout` seconds to finish, then terminate (and kill) it.

        `stopped`: set by a thread of the caller's that reads the events pipe when the child says it has
        stopped. Without one, the events are read (and dropped) here while the child winds up: a child
        blocked writing into a full pipe could not stop.
        """
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(BrokerError):
            self.send(command)
        if stopped is not None:
            stopped.wait(timeout)
            proc.join(KILL_WAIT)
        else:
            deadline = time.monotonic() + timeout
            while proc.is_alive() and time.monotonic() < deadline:
                try:
                    if self.events is not None and self.events.poll(0.05):
                        self.events.recv_bytes()
                except (EOFError, OSError):
                    proc.join(0.05)
        self.kill()

    def kill(self) -> None:
        """Terminate the child (SIGTERM, then SIGKILL if it lingers) and close both pipes."""
        proc = self._proc
        if proc is not None and proc.is_alive():
            proc.terminate()
            proc.join(KILL_WAIT)
            if proc.is_alive():
                proc.kill()
                proc.join(KILL_WAIT)
        for conn in (self.commands, self.events):
            if conn is not None:
                conn.close()
        self._proc = self.commands = self.events = None
