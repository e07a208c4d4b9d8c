"""Start and stop a set of roles in this process, on an embedded broker or an existing one."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import BrokerError, ConfigError
from engine.mqtt.address import BrokerAddress
from engine.mqtt.client import PROTOCOL_NAMES, probe
from engine.protocol import Result
from engine.roles.collector import Collector
from engine.roles.publisher import Publisher
from engine.roles.role import Role
from engine.settings import Settings, default_client_id
from engine.topics import ROLES

if TYPE_CHECKING:
    from engine.mqtt.broker import EmbeddedBroker
    from engine.roles.workerpool import WorkerPool

log = logging.getLogger(__name__)


class LocalPipeline:
    """The roles named in `roles`, each with its own MQTT client, in background threads.

    With no `address`, an embedded broker is started first (mosquitto when installed, else the Python
    broker) and stopped last. Nothing here gives the UI a back door: it sees these roles through the
    broker only, like roles on other machines.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        roles: Iterable[str] = ROLES,
        address: BrokerAddress | None = None,
        *,
        broker_kind: str = "auto",
        broker_config: Path | None = None,
        workers: int = 1,
        client_ids: dict[str, str] | None = None,
        on_result: Callable[[Result, bytes], None] | None = None,
        protocols: tuple[int, ...] | None = None,
        worker_processes: bool = False,
        publisher_nice: int = 0,
    ):
        """`broker_config`: a mosquitto.conf for the embedded broker instead of the project's (--broker-config).
        `worker_processes`: every infer worker runs as its own process (else the first runs here), and
        start() returns once each has said `running` in its retained status.
        `publisher_nice`: the input role's publishing thread runs at this much lower a priority than the
        rest, its control and status threads not (Linux):
        a publisher at full speed offers more than the workers take, and what it sends beyond that only
        costs the broker and the workers CPU. Keep it small: a lowered thread that is preempted while it
        holds the GIL holds up the process's other threads too (its control replies among them)."""
        self.settings = settings or Settings()
        self.role_names = tuple(dict.fromkeys(roles))
        unknown = [r for r in self.role_names if r not in ROLES]
        if unknown:
            raise ConfigError(f"unknown role {unknown[0]!r} (roles: {', '.join(ROLES)})")
        if workers < 1:
            raise ConfigError("--workers must be at least 1")
        self.workers = workers
        self.address = address
        self.broker_kind_wanted = broker_kind
        self.broker_config = broker_config
        self.client_ids = client_ids or {}
        self.on_result = on_result
        self.protocols = protocols
        self.worker_processes = worker_processes
        self.publisher_nice = publisher_nice
        self.broker: EmbeddedBroker | None = None
        self.roles: list[Role] = []
        self.pool: WorkerPool | None = None  # infer workers 2..N, as processes
        self.protocol: int = 5
        self.notes: list[str] = []
        self._db_dir: Path | None = None

    # ----- what the header shows -----
    @property
    def broker_kind(self) -> str:
        return self.broker.kind if self.broker is not None else "external"

    @property
    def broker_description(self) -> str:
        if self.broker is not None:
            return self.broker.description
        return f"external broker at {self.address.url}" if self.address else "no broker"

    @property
    def protocol_name(self) -> str:
        return PROTOCOL_NAMES.get(self.protocol, str(self.protocol))

    def role(self, name: str) -> Role | None:
        return next((r for r in self.roles if r.role == name), None)

    # ----- lifecycle -----
    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        # Files first: a bad dataset or model is reported before any broker is started or reached.
        samples = None
        model = None
        if "input" in self.role_names:
            from engine.digits.dataset import load_dataset

            samples = load_dataset(self.settings.dataset, self.settings.list_file)
        if "infer" in self.role_names:
            from engine.digits.model import load_model

            model = load_model(self.settings.model_path, allow_torchscript=self.settings.allow_torchscript)
        protocols = self.protocols or (5, 4)
        if self.address is None:
            from engine.mqtt.broker import EmbeddedBroker  # only when we run one

            broker = self.broker = EmbeddedBroker(kind=self.broker_kind_wanted, config=self.broker_config,
                                                  persistence_dir=self._persistence_dir())
            if self.settings.durable and broker.kind != "mosquitto":
                self.notes.append("--durable: the embedded Python broker keeps nothing over a restart "
                                  "(install mosquitto for a persistent one)")
            broker.start()
            self.address = broker.address
            protocols = tuple(p for p in protocols if p in broker.protocols) or protocols
        self.protocol = probe(self.address, protocols=protocols)
        settings = replace(self.settings, protocol=self.protocol)
        self.settings = settings
        workers = self.workers
        if "infer" in self.role_names and workers > 1:
            shared = self.broker.shared_subscriptions if self.broker is not None else True
            if not shared:
                self.notes.append(
                    "the embedded Python broker has no shared subscriptions: running one infer worker "
                    "(install mosquitto for more)"
                )
                workers = 1
            elif not settings.share_group:
                settings = replace(settings, share_group="mnist-infer")
        if settings.durable:  # stable ids, so that a restarted role gets its session back
            self.client_ids = {name: self.client_ids.get(name) or default_client_id(name, stable=True)
                               for name in self.role_names}
        roles: list[Role] = []
        for name in self.role_names:
            if name == "input":
                publisher = Publisher(self.address, settings, self.client_ids.get("input"), samples=samples)
                publisher.publish_nice = self.publisher_nice
                roles.append(publisher)
            elif name == "infer":
                from engine.roles.worker import Worker

                base = self.client_ids.get("infer")
                if self.worker_processes:
                    from engine.roles.workerpool import WorkerPool

                    base = base or default_client_id("infer")
                    self.pool = WorkerPool(self.address, settings)
                    self.pool.spawn([base] if workers == 1 else [f"{base}-{i + 1}" for i in range(workers)])
                    continue
                cid = base if workers == 1 else (f"{base}-1" if base else None)
                roles.append(Worker(self.address, settings, cid, model=model))
                if workers > 1:
                    # The others run as processes: threads of one process would share its GIL.
                    from engine.roles.workerpool import WorkerPool

                    self.pool = WorkerPool(self.address, settings)
                    self.pool.spawn([f"{base}-{i + 1}" if base else None for i in range(1, workers)])
            elif name == "output":
                roles.append(Collector(self.address, settings, self.client_ids.get("output"), self.on_result))
        # Consumers first, subscribed before the publisher starts, so that nothing it sends is missed: an
        # image published before a worker's subscription is acknowledged has no subscriber and is dropped.
        consumers = [r for r in roles if r.role != "input"]
        for role in sorted(consumers, key=lambda r: r.role != "output"):
            self.roles.append(role)  # before it starts: a start that fails half way is stopped with the rest
            role.start()
        self._wait_ready(self.roles)
        if self.worker_processes and self.pool is not None:  # no worker in this process: wait for theirs
            self._wait_for_worker_processes(settings, 90.0)
        for role in roles:
            if role.role == "input":
                self.roles.append(role)
                role.start()
                self._wait_ready([role])

    def _wait_ready(self, roles: list[Role]) -> None:
        """Until each of `roles` is connected and subscribed; BrokerError when one fails or times out."""
        for role in roles:
            ready = role.wait_ready(15)
            failed = self.pool.failed() if self.pool is not None else None
            if failed is not None:
                raise BrokerError(f"infer worker process {failed.client_id or failed.pid}: {failed.last_error()}")
            if role.fatal_error:
                raise BrokerError(role.fatal_error)
            if not ready:
                raise BrokerError(f"{role.role} {role.client_id}: {role.last_error or 'no connection to the broker'}")

    def _wait_for_worker_processes(self, settings: Settings, timeout: float) -> None:
        """Until each worker process's retained status says `running` and `subscribed` (to its images: nothing
        sent from now on is missed), or one fails."""
        import json
        import threading
        import time

        from engine.mqtt.client import connect_kwargs, make_client

        pool = self.pool
        assert pool is not None and self.address is not None
        wanted = {settings.topics.status("infer", w.client_id) for w in pool.workers if w.client_id}
        running: set[str] = set()
        lock = threading.Lock()

        def on_message(_c: object, _u: object, msg: object) -> None:
            try:
                status = json.loads(msg.payload)  # type: ignore[attr-defined]
                ready = status.get("state") == "running" and status.get("subscribed") is True
            except Exception:
                return
            if ready:
                with lock:
                    running.add(msg.topic)  # type: ignore[attr-defined]

        client = make_client(self.address, default_client_id("infer-wait"), protocol=self.protocol)
        client.on_connect = lambda c, *_a: c.subscribe([(t, 0) for t in wanted])
        client.on_message = on_message
        client.connect_async(self.address.host, self.address.port, **connect_kwargs(client))
        client.loop_start()
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                failed = pool.failed()
                if failed is not None:
                    raise BrokerError(f"infer worker process {failed.client_id or failed.pid}: {failed.last_error()}")
                with lock:
                    if wanted <= running:
                        return
                time.sleep(0.05)
            raise BrokerError(f"infer worker processes did not say running within {timeout:.0f} s")
        finally:
            client.disconnect()
            client.loop_stop()

    def stop(self) -> None:
        """Publisher first, then workers (finishing their batch), collector, and the broker last."""
        order = {"input": 0, "infer": 1, "output": 2}
        for role in sorted(self.roles, key=lambda r: order[r.role]):
            if role.role == "output" and self.worker_processes and self.pool is not None:
                self.pool.stop()  # the workers finish their queues before the collector goes
                self.pool = None
            if role.role == "infer" and self.pool is not None:
                self.pool.terminate()  # the worker processes finish their queues while this one does
            try:
                role.stop()
            except Exception:
                log.exception("stopping %s failed", role.role)
        if self.pool is not None:
            self.pool.stop()
            self.pool = None
        self.roles.clear()
        if self.broker is not None:
            self.broker.stop()
        if self._db_dir is not None:
            shutil.rmtree(self._db_dir, ignore_errors=True)
            self._db_dir = None

    def _persistence_dir(self) -> Path | None:
        """--durable: a directory of our own for the embedded mosquitto's database (it keeps durable
        sessions and their queued messages over a restart of the broker); removed at stop."""
        if not self.settings.durable:
            return None
        self._db_dir = Path(tempfile.mkdtemp(prefix=f"mnist-tui-db-{os.getpid()}-"))
        return self._db_dir

    def __enter__(self) -> LocalPipeline:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
