"""`python -m tools.soak`: the three roles as separate processes under sustained load, memory sampled.

Starts an embedded mosquitto, then `run output`, `run infer` and `run input --rate R` (each its own
process, as on three machines), lets images flow for the given time and prints the resident memory
(RSS) of every process after the warm-up and then at intervals, with the roles' final counters from
their retained statuses. The figures in docs/PERFORMANCE.md come from here.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
import psutil

from engine.mqtt.broker import EmbeddedBroker
from engine.mqtt.client import connect_kwargs, make_client

_MB = 1024.0 * 1024.0


def _statuses(address: Any) -> tuple[mqtt.Client, dict[str, dict[str, Any]]]:
    latest: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()
    client = make_client(address, f"soak-watch-{os.getpid()}", protocol=4)

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.payload:
            with lock:
                latest[msg.topic.split("/")[3]] = json.loads(msg.payload)

    client.on_message = on_message
    client.on_connect = lambda c, *_a: c.subscribe("mnist/status/+/+", 0)
    client.connect(address.host, address.port, **connect_kwargs(client))
    client.loop_start()
    return client, latest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long images flow (default 10)")
    parser.add_argument("--rate", type=float, default=1700.0, help="images per second offered (default 1700)")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before the first memory reading")
    parser.add_argument("--every", type=float, default=60.0, help="seconds between memory readings")
    parser.add_argument("--mqtt", default="auto", choices=("auto", "5", "3.1.1"))
    args = parser.parse_args(argv)

    broker = EmbeddedBroker(kind="mosquitto").start()
    env = dict(os.environ, MNIST_BROKER=broker.address.url)
    env.pop("MNIST_WORKERS", None)
    base = [sys.executable, "-m", "engine", "--mqtt", args.mqtt]
    roles = {
        "output": base + ["--id", "soak-output", "run", "output", "--quiet"],
        "infer": base + ["--id", "soak-infer", "run", "infer", "--quiet"],
        "input": base + ["--id", "soak-input", "--rate", str(args.rate), "run", "input", "--quiet"],
    }
    watcher, statuses = _statuses(broker.address)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name in ("output", "infer"):
            procs[name] = subprocess.Popen(roles[name], env=env, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not all(statuses.get(n, {}).get("state") == "running" for n in ("soak-output", "soak-infer")):
            if time.monotonic() > deadline:
                raise SystemExit("roles did not start")
            time.sleep(0.1)
        procs["input"] = subprocess.Popen(roles["input"], env=env, stdin=subprocess.DEVNULL)
        watched = {name: psutil.Process(p.pid) for name, p in procs.items()}
        if broker.pid:
            watched["mosquitto"] = psutil.Process(broker.pid)
        start = time.monotonic()
        end = start + args.minutes * 60
        next_reading = start + args.warmup
        print(f"soak: {args.minutes:g} min at {args.rate:g} images/s offered, broker {broker.address.url}", flush=True)
        print("t(s)  " + "  ".join(f"{n:>10}" for n in watched) + "   sent  answered(output)", flush=True)
        while time.monotonic() < end:
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            if time.monotonic() >= next_reading:
                next_reading += args.every
                rss = "  ".join(f"{p.memory_info().rss / _MB:8.1f}MB" for p in watched.values())
                sent = statuses.get("soak-input", {}).get("sent")
                got = statuses.get("soak-output", {}).get("received")
                print(f"{time.monotonic() - start:5.0f} {rss}  {sent}  {got}", flush=True)
        rss_end = "  ".join(f"{p.memory_info().rss / _MB:8.1f}MB" for p in watched.values())
        print(f"end   {rss_end}", flush=True)
        procs["input"].send_signal(signal.SIGTERM)
        procs["input"].wait(30)
        time.sleep(5)  # let the last images through
        final = {n: statuses.get(f"soak-{n}", {}) for n in ("input", "infer", "output")}
        print(json.dumps({
            "sent": final["input"].get("sent"),
            "infer_processed": final["infer"].get("processed"), "infer_dropped": final["infer"].get("dropped"),
            "output_received": final["output"].get("received"), "output_duplicates": final["output"].get("duplicates"),
            "accuracy": final["output"].get("accuracy"),
        }), flush=True)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        watcher.disconnect()
        watcher.loop_stop()
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
