"""Infer workers as separate processes: each `python -m engine run infer` with its own client id.

Threads in one Python process share one GIL, so N workers that really run in parallel are N
processes. They find the broker through the environment (MNIST_BROKER and friends, so a password
never shows in the process list) and split the image stream through a shared subscription group.
A child that loses its parent is sent SIGTERM by the kernel (Linux), so none is left behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from engine.child_process import die_with_parent
from engine.errors import BrokerError, ConfigError
from engine.mqtt.address import BrokerAddress
from engine.owned_tmp import owned_tmpdir
from engine.settings import Settings

log = logging.getLogger(__name__)

_PROTOCOL_FLAGS = {5: "5", 4: "3.1.1"}
WORKER_MB = 200  # memory of one worker process: torch and the model, 150 MB of its own, 250 MB resident


def check_worker_count(count: int) -> None:
    """ConfigError with one line when `count` worker processes would not fit in the memory available now (also
    under a container's limit): `bench --workers 1000` started workers until the kernel's OOM killer took them
    and whatever else it chose."""
    from engine.memory import available_memory

    available = available_memory()
    fit = max(1, available // (WORKER_MB * 1024 * 1024))
    if count > fit:
        raise ConfigError(f"--workers {count:,}: a worker process takes about {WORKER_MB} MB, and "
                          f"{available / 2**30:.1f} GB of memory is available here: at most {fit:,} fit")


def worker_command(settings: Settings, client_id: str | None, *, python: str | None = None) -> list[str]:
    """The argv of one headless infer worker with `settings` (global options go before `run`)."""
    s = settings
    t = s.topics
    prefix = t.status_prefix.rsplit("/", 1)[0]
    argv = [python or sys.executable, "-m", "engine",
            "--image-topic", t.images, "--result-topic", t.results, "--topic-prefix", prefix,
            "--qos", str(s.qos),
            "--max-batch", str(s.max_batch), "--max-delay-ms", repr(float(s.max_delay_ms)),
            "--queue-size", str(s.queue_size), "--max-payload", str(s.max_payload),
            "--max-pixels", str(s.max_pixels), "--session-expiry", str(s.session_expiry),
            "--mqtt", _PROTOCOL_FLAGS.get(s.protocol, "auto")]
    if s.model_path:
        argv += ["--model", str(s.model_path)]
    if s.share_group:
        argv += ["--group", s.share_group]
    if s.threads:
        argv += ["--threads", str(s.threads)]
    if s.max_wait:
        argv += ["--max-wait", repr(float(s.max_wait))]
    if s.result_qos is not None:
        argv += ["--result-qos", str(s.result_qos)]
    if s.allow_torchscript:
        argv.append("--allow-torchscript")
    if client_id:
        argv += ["--id", client_id]
    # --workers 1 explicitly: a child must never read MNIST_WORKERS and start children of its own
    return argv + ["run", "infer", "--quiet", "--workers", "1"]


def broker_environment(address: BrokerAddress, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment that points a child at `address`, credentials and TLS files included."""
    env = dict(os.environ if base is None else base)
    env["MNIST_BROKER"] = address.url
    for name, value in (("MNIST_BROKER_USER", address.username), ("MNIST_BROKER_PASSWORD", address.password),
                        ("MNIST_CAFILE", address.cafile), ("MNIST_CERT", address.certfile),
                        ("MNIST_KEY", address.keyfile)):
        if value:
            env[name] = value
        else:
            env.pop(name, None)
    if address.insecure:
        env["MNIST_INSECURE"] = "1"
    else:
        env.pop("MNIST_INSECURE", None)
    env.pop("MNIST_BROKER_PASSWORD_FILE", None)  # the password, if any, is in MNIST_BROKER_PASSWORD now
    env.pop("MNIST_WORKERS", None)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class WorkerProcess:
    """One infer worker child process; its stderr goes to a log file (shown when it fails).

    The child gets a process group of its own, so a Ctrl-C in the terminal reaches only the parent, which
    then stops its children in order. Not a session of its own: where the kernel groups processes by
    session for CPU time (autogroup, on by default in many distributions), a child in a session of its own
    weighs as much as the console and all its other processes together, whatever its nice value.
    It is forked from a keeper thread that lives as long as the child, because the kernel's
    parent-death signal fires when the forking *thread* ends.
    """

    def __init__(self, argv: list[str], env: dict[str, str], client_id: str | None, log_dir: Path) -> None:
        self.argv = argv
        self.client_id = client_id
        self.log_path = log_dir / f"worker-{len(list(log_dir.iterdir()))}.log"
        self._error: BaseException | None = None
        started = threading.Event()

        def keep() -> None:
            try:
                with open(self.log_path, "wb") as err:
                    self.proc = subprocess.Popen(
                        argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                        preexec_fn=die_with_parent(), process_group=0,
                    )
            except BaseException as exc:  # handed to the caller below
                self._error = exc
                return
            finally:
                started.set()
            self.proc.wait()

        self._keeper = threading.Thread(target=keep, name="infer-worker-keeper", daemon=True)
        self._keeper.start()
        started.wait()
        if self._error is not None:
            raise BrokerError(f"cannot start an infer worker process: {self._error}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def last_error(self) -> str:
        """The last meaningful line the child wrote (its one-line error, usually)."""
        try:
            lines = [ln.strip() for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            lines = []
        for line in reversed(lines):
            if "mnist-tui:" in line or "Error" in line or "error" in line:
                return line.split("mnist-tui:", 1)[-1].strip()
        return lines[-1] if lines else f"exited with status {self.proc.returncode}"

    def terminate(self) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> bool:
        try:
            self.proc.wait(timeout=max(0.0, timeout))
            return True
        except subprocess.TimeoutExpired:
            return False

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)


class WorkerPool:
    """Start N worker processes and stop them all: SIGTERM (each finishes its queue), then SIGKILL."""

    def __init__(self, address: BrokerAddress, settings: Settings) -> None:
        self.address = address
        self.settings = settings
        self.workers: list[WorkerProcess] = []
        self._log_dir = owned_tmpdir("mnist-workers-")  # a console killed by a hangup left its own behind
        self._env = broker_environment(address)

    def spawn(self, client_ids: Iterable[str | None]) -> list[WorkerProcess]:
        started = []
        for cid in client_ids:
            worker = WorkerProcess(worker_command(self.settings, cid), self._env, cid, self._log_dir)
            self.workers.append(worker)
            started.append(worker)
            log.info("started infer worker process %s(pid %d)", f"{cid} " if cid else "", worker.pid)
        return started

    def failed(self) -> WorkerProcess | None:
        """The first worker that has already exited, if any."""
        return next((w for w in self.workers if not w.alive()), None)

    def terminate(self) -> None:
        """Ask every worker to stop (SIGTERM); `stop` then waits for them."""
        for worker in self.workers:
            worker.terminate()

    def stop(self, timeout: float = 20.0) -> None:
        self.terminate()
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            if not worker.wait(deadline - time.monotonic()):
                log.warning("infer worker %s (pid %d) did not stop in time: killed", worker.client_id, worker.pid)
                worker.kill()
        self.workers.clear()
        for path in self._log_dir.glob("*"):
            with contextlib.suppress(OSError):
                path.unlink()
        with contextlib.suppress(OSError):
            self._log_dir.rmdir()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
