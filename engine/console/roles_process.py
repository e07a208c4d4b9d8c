"""The console's local roles (and embedded broker) in a child process, not in the console's own threads.

Why a process: the roles are CPU-bound Python (paho loops, PNG decoding, the worker's batching), and in
the console's process they would share its GIL. Under a publisher at full speed that starved both the
screen (keys answered after a second) and the pipeline itself. In a child process the console stays
quick, and it sees the roles exactly as it sees remote ones: through the broker (local is remote).

The child runs at a lower CPU priority (nice 5, its publishing thread 10): on a small machine a publisher
at full speed can use every core, and the console must still answer a key at once; the publisher comes
last, since what it sends beyond what the worker takes is only dropped (docs/PERFORMANCE.md, "The
console's priorities"). The child runs an
`engine.roles.pipeline.LocalPipeline` and reports back over a pipe: ready (with the broker's
address and kind) or one error line; its log records come back over the same pipe, so nothing it
prints can garble the screen. It stops when told to, or when the console dies (the pipe closes).
Nothing here imports textual.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from engine.console.child import ChildProcess, child_prologue, forward_logs
from engine.errors import MnistError
from engine.mqtt.address import BrokerAddress
from engine.settings import Settings

NICE = 5  # the screen comes first: under a full-speed publisher it still gets the CPU the moment it wants it
PUBLISHER_NICE = 5  # nice 10: the worker, the broker and the output role come before the publisher
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


def _child_main(commands: Connection, conn: Connection, settings: Settings, roles: tuple[str, ...],
                address: BrokerAddress | None, broker_kind: str, protocols: tuple[int, ...] | None,
                broker_config: Path | None = None) -> None:
    child_prologue(NICE)  # the nice value goes to every role thread, the worker and the embedded mosquitto
    lock = threading.Lock()
    forward_logs(conn, lock)
    from engine.roles.pipeline import LocalPipeline

    # The infer worker in a process of its own: in this one it would share a GIL with a publisher at full
    # speed and answer a third of what it answers alone (docs/PERFORMANCE.md, "The console's pace").
    pipeline = LocalPipeline(settings, roles, address, broker_kind=broker_kind, broker_config=broker_config,
                             protocols=protocols, worker_processes=True, publisher_nice=PUBLISHER_NICE)
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
        commands.recv()  # "stop", or EOF when the console died
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
        self._child = ChildProcess("mnist-tui-roles", "the local roles")
        self._reader: threading.Thread | None = None
        self._stopped = threading.Event()

    @property
    def pid(self) -> int | None:
        return self._child.pid

    def start(self, timeout: float = START_TIMEOUT) -> PipelineInfo:
        self._child.start(_child_main, self.settings, self.roles, self.address, self.broker_kind, self.protocols,
                          self.broker_config)
        events = self._child.events
        assert events is not None

        def read() -> None:
            msg = events.recv()
            if msg[0] == "log":
                self._log(msg)
            elif msg[0] == "error":
                raise MnistError(msg[1])
            elif msg[0] == "ready":
                self.info = msg[1]

        self._child.wait_ready(timeout, lambda: self.info is not None, read, poll=0.1)
        assert self.info is not None
        self._reader = threading.Thread(target=self._read, args=(events,), name="roles-log", daemon=True)
        self._reader.start()
        return self.info

    def _log(self, msg: tuple[Any, ...]) -> None:
        if self.on_log is not None:
            self.on_log(msg[1], msg[2], msg[3])

    def _read(self, conn: Connection) -> None:
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
        self._child.stop(timeout, stopped=self._stopped if self._reader is not None else None)
