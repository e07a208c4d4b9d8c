"""The console's local roles (and embedded broker) in a child process, not in the console's own threads.

Why a process: the roles are CPU-bound Python (paho loops, PNG decoding, the worker's batching), and in
the console's process they would share its GIL. Under a publisher at full speed that starved both the
screen (keys answered after a second) and the pipeline itself. In a child process the console stays
quick, and it sees the roles exactly as it sees remote ones: through the broker (local is remote).

The child runs at a lower CPU priority (nice 10): on a small machine a publisher at full speed can use
every core, and the console must still answer a key at once. The child runs an
`engine.roles.pipeline.LocalPipeline` and reports back over a pipe: ready (with the broker's
address and kind) or one error line; its log records come back over the same pipe, so nothing it
prints can garble the screen. It stops when told to, or when the console dies (the pipe closes).
Nothing here imports textual.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from engine.errors import BrokerError, MnistError
from engine.mqtt.address import BrokerAddress
from engine.settings import Settings

NICE = 10  # the screen comes first: under a full-speed publisher it still gets the CPU the moment it wants it
START_TIMEOUT = 120.0  # loading torch and the model on a busy 2-core machine can take a while
STOP_TIMEOUT = 30.0


@dataclass(frozen=True)
class PipelineInfo:
    address: BrokerAddress
    broker_kind: str  # "mosquitto", "python" or "external"
    broker_description: str
    protocol: int
    notes: tuple[str, ...]
    roles: tuple[str, ...]  # "input input-host-123", ...


class _PipeLogHandler(logging.Handler):
    def __init__(self, conn: Connection, lock: threading.Lock) -> None:
        super().__init__(level=logging.WARNING)
        self.conn = conn
        self.pipe_lock = lock  # not `self.lock`: that is the Handler's own, held around emit()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            with self.pipe_lock:
                self.conn.send(("log", record.levelno, record.name, record.getMessage()))
        except Exception:  # the console is gone; nothing to tell
            pass


def _child_main(conn: Connection, settings: Settings, roles: tuple[str, ...], address: BrokerAddress | None,
                broker_kind: str, protocols: tuple[int, ...] | None, broker_config: Path | None = None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the console's to handle
    with contextlib.suppress(OSError):
        os.nice(NICE)  # inherited by every role thread and by the embedded mosquitto
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # a stray print (or a C library's warning) must not land on the console's screen
    os.dup2(devnull, 2)
    lock = threading.Lock()
    root = logging.getLogger()
    root.handlers[:] = [_PipeLogHandler(conn, lock)]
    root.setLevel(logging.WARNING)
    from engine.roles.pipeline import LocalPipeline

    # The infer worker in a process of its own: in this one it would share a GIL with a publisher at full
    # speed and answer a third of what it answers alone (docs/PERFORMANCE.md, "The console's pace").
    pipeline = LocalPipeline(settings, roles, address, broker_kind=broker_kind, broker_config=broker_config,
                             protocols=protocols, worker_processes=True)
    try:
        pipeline.start()
    except MnistError as exc:
        with lock:
            conn.send(("error", str(exc)))
        return
    except Exception as exc:  # anything else still comes back as one line
        with lock:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    assert pipeline.address is not None
    info = PipelineInfo(
        pipeline.address, pipeline.broker_kind, pipeline.broker_description, pipeline.protocol,
        tuple(pipeline.notes), tuple(f"{r.role} {r.client_id}" for r in pipeline.roles)
        + tuple(f"infer {w.client_id}" for w in (pipeline.pool.workers if pipeline.pool is not None else [])),
    )
    with lock:
        conn.send(("ready", info))
    with contextlib.suppress(EOFError, OSError):
        conn.recv()  # "stop", or EOF when the console died
    pipeline.stop()
    with contextlib.suppress(Exception), lock:
        conn.send(("stopped",))


class RolesProcess:
    """Start with `start()` (blocks until the roles are up; MnistError with one line if they cannot start)."""

    def __init__(
        self,
        settings: Settings,
        roles: Iterable[str],
        address: BrokerAddress | None = None,
        *,
        broker_kind: str = "auto",
        broker_config: Path | None = None,
        protocols: tuple[int, ...] | None = None,
        on_log: Callable[[int, str, str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.roles = tuple(roles)
        self.address = address
        self.broker_kind = broker_kind
        self.broker_config = broker_config
        self.protocols = protocols
        self.on_log = on_log
        self.info: PipelineInfo | None = None
        self._ctx = multiprocessing.get_context("spawn")
        self._conn: Connection | None = None
        self._proc: Any = None
        self._reader: threading.Thread | None = None
        self._stopped = threading.Event()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = START_TIMEOUT) -> PipelineInfo:
        parent, child = self._ctx.Pipe()
        self._conn = parent
        self._proc = self._ctx.Process(
            target=_child_main,
            args=(child, self.settings, self.roles, self.address, self.broker_kind, self.protocols,
                  self.broker_config),
            name="mnist-tui-roles",
            daemon=True,
        )
        try:
            self._proc.start()
        except BaseException:
            self._proc = None
            raise
        child.close()
        deadline = time.monotonic() + timeout
        try:
            while True:
                if parent.poll(0.1):
                    msg = parent.recv()
                    if msg[0] == "log":
                        self._log(msg)
                    elif msg[0] == "error":
                        raise MnistError(msg[1])
                    elif msg[0] == "ready":
                        self.info = msg[1]
                        break
                elif not self._proc.is_alive():
                    raise BrokerError(f"the local roles exited during start (exit code {self._proc.exitcode})")
                elif time.monotonic() > deadline:
                    raise BrokerError(f"the local roles did not start within {timeout:.0f} s")
        except BaseException:
            self._kill()
            raise
        self._reader = threading.Thread(target=self._read, name="roles-log", daemon=True)
        self._reader.start()
        return self.info

    def _log(self, msg: tuple[Any, ...]) -> None:
        if self.on_log is not None:
            self.on_log(msg[1], msg[2], msg[3])

    def _read(self) -> None:
        conn = self._conn
        assert conn is not None
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break
            if msg[0] == "log":
                self._log(msg)
            elif msg[0] == "stopped":
                break
        self._stopped.set()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the roles (publisher first, workers finish their batch) and the broker; then the process."""
        proc, conn = self._proc, self._conn
        if proc is None or conn is None:
            return
        with contextlib.suppress(OSError, ValueError):
            conn.send("stop")
        if self._reader is not None:
            self._stopped.wait(timeout)
        proc.join(5)
        self._kill()

    def _kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.is_alive():
            proc.terminate()
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        if self._conn is not None:
            self._conn.close()
        self._proc = None
        self._conn = None
