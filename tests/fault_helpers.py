"""Helpers for the fault, fuzz and security tests: headless roles as child processes, tagged images,
reading retained statuses and results.

A child process is `python -m engine ...`, as a user runs it; its stderr is read by a thread so that
a test can wait for a log line and the pipe never fills.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from functools import lru_cache

import paho.mqtt.client as mqtt
import psutil
from helpers import MqttProbe, wait_for

from engine.digits.model import LoadedModel, load_model
from engine.protocol import embed_meta
from engine.settings import DEFAULT_DATASET

ENGINE = [sys.executable, "-m", "engine"]
ASSETS = DEFAULT_DATASET


@lru_cache(maxsize=1)
def model() -> LoadedModel:
    """The shipped model (or MNIST_MODEL), loaded once for every in-process worker of the session."""
    return load_model(os.environ.get("MNIST_MODEL") or None)


@lru_cache(maxsize=1)
def digit() -> bytes:
    """One real MNIST PNG from the bundled dataset."""
    return (ASSETS / "0.png").read_bytes()


def tagged(msg_id: str, png: bytes | None = None, **extra: object) -> bytes:
    """A PNG digit carrying `{"id": msg_id, "t": now, ...extra}` in its `mnist` tEXt chunk."""
    return embed_meta(png or digit(), {"id": msg_id, "t": time.time(), **extra})


def send(probe: MqttProbe, ids: Iterable[str], qos: int = 1, topic: str = "mnist", **extra: object) -> list[str]:
    """Publish one tagged digit per id as fast as paho takes them; wait until the last one is sent
    (QoS 0) or acknowledged (QoS 1): the broker then has them all, in order."""
    sent = []
    info = None
    for msg_id in ids:
        info = probe.client.publish(topic, tagged(msg_id, **extra), qos=qos)
        sent.append(msg_id)
    if info is not None:
        info.wait_for_publish(60)
        assert info.is_published(), "the broker did not take the images"
    return sent


def results(probe: MqttProbe, worker: str | None = None) -> list[dict]:
    found = [json.loads(m.payload) for m in probe.messages("result")]
    return [r for r in found if worker is None or r.get("worker") == worker]


def id_counts(probe: MqttProbe, worker: str | None = None) -> Counter[str]:
    return Counter(r["id"] for r in results(probe, worker))


def wait_answered(probe: MqttProbe, ids: Iterable[str], timeout: float = 60) -> Counter[str]:
    """Wait until every id has a result; return how often each id was answered."""
    wanted = set(ids)

    def missing() -> set[str]:
        return wanted - set(id_counts(probe))

    wait_for(lambda: not missing(), timeout,
             message=lambda: f"{len(missing())} of {len(wanted)} images never answered, e.g. {sorted(missing())[:5]}")
    return id_counts(probe)


def status(probe: MqttProbe, topic: str) -> dict | None:
    """The last status seen on `topic` (None if none or cleared)."""
    found = probe.messages(topic)
    return json.loads(found[-1].payload) if found and found[-1].payload else None


def wait_status(
    probe: MqttProbe, topic: str, predicate: Callable[[dict], bool], timeout: float = 60, what: str = "",
    engine: Engine | None = None,
) -> dict:
    """Wait until the last status on `topic` satisfies `predicate`; return it. With `engine`, fail at
    once (with its stderr) if that child process ends first."""
    def check() -> dict | None:
        current = status(probe, topic)
        if current is not None and predicate(current):
            return current
        if engine is not None and engine.proc.poll() is not None:
            raise AssertionError(f"{engine.argv} exited ({engine.proc.returncode}): {engine.stderr}")
        return None

    return wait_for(check, timeout, message=lambda: f"status {topic} {what or 'not as expected'}: "
                                                   f"{_short(status(probe, topic))}")


def _short(current: dict | None) -> str:
    if current is None:
        return "none"
    keep = ("state", "connected", "received", "processed", "errors", "dropped", "queue", "queue_max", "reason")
    return str({k: current[k] for k in keep if k in current})


def command(probe: MqttProbe, role: str, client_id: str, payload: bytes | str, req: str) -> dict:
    """Send one control command with a `req` id and return its answer (the probe must read mnist/reply/#)."""
    if isinstance(payload, str):
        payload = payload.encode()
    probe.publish(f"mnist/control/{role}/{client_id}", payload, qos=1)
    return wait_for(lambda: next((a for a in (json.loads(m.payload) for m in probe.messages("mnist/reply/#"))
                                  if a.get("req") == req), None),
                    message=f"no answer to {payload[:60]!r}")


class Engine:
    """`python -m engine ARGS` as a child process. `new_session` puts it in its own process group, as
    a shell does with a foreground job, so `ctrl_c()` reaches it the way a terminal's Ctrl-C does."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, new_session: bool = False) -> None:
        self.argv = [*ENGINE, *args]
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, env={**os.environ, **(env or {})}, start_new_session=new_session,
        )
        self.pid = self.proc.pid
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._lines.append(line.rstrip("\n"))

    @property
    def stderr(self) -> str:
        return "\n".join(self._lines)

    def wait_line(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        regex = re.compile(pattern)

        def found() -> re.Match[str] | None:
            for line in list(self._lines):
                match = regex.search(line)
                if match:
                    return match
            if self.proc.poll() is not None and not self._reader.is_alive():
                raise AssertionError(f"{self.argv} exited ({self.proc.returncode}): {self.stderr}")
            return None

        return wait_for(found, timeout, message=lambda: f"no line matching {pattern!r} in: {self.stderr[-2000:]}")

    def children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def rss(self) -> int:
        return psutil.Process(self.pid).memory_info().rss

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def ctrl_c(self) -> None:
        os.killpg(self.pid, signal.SIGINT)

    def wait(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(10)


def one_line_error(stderr: str) -> str:
    """The single non-empty line a failing command printed, checked to carry no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{stderr}"
    return lines[0]


def publish_raw(client: mqtt.Client, topic: str, payloads: Iterable[bytes], qos: int = 1) -> int:
    """Publish raw payloads as fast as paho takes them; wait for the last; return how many."""
    info = None
    n = 0
    for payload in payloads:
        info = client.publish(topic, payload, qos=qos)
        n += 1
    if info is not None:
        info.wait_for_publish(120)
        assert info.is_published(), "the broker did not take the payloads"
    return n
