"""What skipping costs a real worker, reads and writes included: `python -m tools.skip_drain`.

A benchmark, not a test. On an embedded mosquitto it starts an infer worker with a durable session and
`--max-wait 1`, stops it, publishes `--images` QoS 1 dataset digits stamped a minute old into its session,
and starts it again: the worker skips them all as the broker hands them over. Prints the wall time until
its status counts them as expired and the worker's CPU over that of a start-up alone (the first run's,
measured the same way), per image. `tools.skip_cost` measures the Python work of a skip without a broker.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

import paho.mqtt.client as mqtt

from engine.digits.dataset import load_dataset
from engine.mqtt.broker import EmbeddedBroker
from engine.protocol import embed_meta
from engine.settings import Settings

WORKER_ID = "skip-drain"


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait(check: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.skip_drain", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=90_000,
                        help="old images queued for the worker (default 90,000; mosquitto.conf queues 100,000)")
    args = parser.parse_args(argv)
    with EmbeddedBroker(kind="mosquitto") as broker:
        address = broker.address
        engine = [sys.executable, "-m", "engine", "--broker", address.url, "--qos", "1", "--session-expiry",
                  "3600", "--id", WORKER_ID, "--max-wait", "1", "run", "infer", "--quiet"]
        status: dict[str, Any] = {}
        watch = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        watch.on_message = lambda _c, _u, m: status.update(json.loads(m.payload)) if m.payload else None
        watch.connect(address.host, address.port)
        watch.subscribe(f"mnist/status/infer/{WORKER_ID}")
        watch.loop_start()
        worker = subprocess.Popen(engine)
        if not _wait(lambda: status.get("state") == "running", 60):
            print("the worker never said it was running", file=sys.stderr)
            worker.kill()
            return 1
        time.sleep(1)  # its status comes after its subscription; let the start-up settle
        start_up = _cpu_seconds(worker.pid)
        worker.terminate()
        worker.wait()
        status.clear()
        old = time.time() - 60
        payloads = [embed_meta(s.png, {"id": f"drain-{i}", "label": s.label, "t": old, "src": "skip-drain"})
                    for i, s in enumerate(load_dataset(Settings().dataset)[:500])]
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        pub.max_inflight_messages_set(1000)
        pub.max_queued_messages_set(0)
        pub.connect(address.host, address.port)
        pub.loop_start()
        for i in range(args.images):
            info = pub.publish("mnist", payloads[i % len(payloads)], qos=1)
            if i % 1000 == 999 or i == args.images - 1:
                info.wait_for_publish(30)
        pub.disconnect()
        pub.loop_stop()
        t0 = time.monotonic()
        worker = subprocess.Popen(engine)
        done = _wait(lambda: (status.get("expired") or 0) >= args.images or worker.poll() is not None, 300)
        wall = time.monotonic() - t0
        cpu = _cpu_seconds(worker.pid) if worker.poll() is None else float("nan")
        worker.terminate()
        worker.wait()
        watch.loop_stop()
        print(f"{status.get('expired')} of {args.images} skipped in {wall:.2f} s (start-up included); worker CPU "
              f"{cpu:.2f} s, {start_up:.2f} s of it a start-up's: {(cpu - start_up) / args.images * 1e6:.1f} us "
              f"an image")
        return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
