"""One worker under C floods: `python -m tools.c_flood --floods 2 --seconds 10`.

A benchmark, not a test. It starts a mosquitto of its own and one `python -m engine run infer` worker
on it, then `--floods` `mosquitto_pub -t mnist -f assets/mnist_images/0.png --repeat N` processes (C
publishers: they cost the machine little, so what is offered is mostly what the broker can pass on).
While they run it pings the worker every 100 ms on its control topic and reads its statuses. Reports
the worker's answered/s (its `processed` over the measured span), shed and dropped per second, and the
ping reply latency (p50 / p99 / max, unanswered). Compare answered/s with the worker's closed-loop
capacity (`python -m engine bench --workers 1 --duration 10`) on the same machine, minutes apart.

`--worker-cpu N` pins the worker to CPU N and everything else (this process, the broker, the floods)
to the other CPUs, so that the floods cannot take the worker's core: on a 2-core machine that is the
one way to see what the worker does with a core of its own under overload. The report then has the
worker's CPU time over the span (all its threads), so its answered/s can be set against the images a
core would answer at its full-speed CPU per image (`bench --json`, `per_worker[*].cpu_us_per_image`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from engine.mqtt.broker import EmbeddedBroker
from engine.topics import Topics

ASSET = Path(__file__).resolve().parent.parent / "assets" / "mnist_images" / "0.png"


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))], 1)


def process_cpu_seconds(pid: int) -> tuple[float, float]:
    """(monotonic time, user + system CPU seconds of every thread of `pid`) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return time.monotonic(), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.c_flood", description=__doc__.splitlines()[0])
    parser.add_argument("--floods", type=int, default=2, help="mosquitto_pub processes (default 2)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured span (default 10)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of flood before measuring")
    parser.add_argument("--qos", type=int, choices=(0, 1), default=0, help="the floods' QoS (default 0)")
    parser.add_argument("--repeat-delay", type=float, default=0.0, metavar="S",
                        help="mosquitto_pub's pause between messages, to offer less than it can (default 0)")
    parser.add_argument("--worker-cpu", type=int, default=None, metavar="N",
                        help="pin the worker to CPU N and the rest to the other CPUs")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if args.worker_cpu is not None:
        cpus = os.sched_getaffinity(0)
        rest = cpus - {args.worker_cpu}
        if args.worker_cpu not in cpus or not rest:
            print(f"--worker-cpu {args.worker_cpu}: needs that CPU and one more among {sorted(cpus)}", file=sys.stderr)
            return 2
        os.sched_setaffinity(0, rest)  # the broker and the floods are started from here and inherit it
    topics = Topics()
    wid = "cflood"
    statuses: list[tuple[float, dict]] = []
    sent: dict[str, float] = {}
    replies: list[float] = []
    lock = threading.Lock()
    load_before = os.getloadavg()
    with EmbeddedBroker(kind="mosquitto") as broker:
        addr = broker.address
        worker = subprocess.Popen([sys.executable, "-m", "engine", "--broker", addr.url, "run", "infer",
                                   "--id", wid, "--quiet"])
        if args.worker_cpu is not None:
            os.sched_setaffinity(worker.pid, {args.worker_cpu})  # before its threads start: they inherit it
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"cflood-{uuid.uuid4().hex[:6]}")

        def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
            now = time.monotonic()
            try:
                data = json.loads(msg.payload)
            except ValueError:
                return
            with lock:
                if msg.topic == topics.status("infer", wid):
                    statuses.append((now, data))
                elif data.get("req") in sent:
                    replies.append((now - sent.pop(data["req"])) * 1000)

        client.on_message = on_message
        client.on_connect = lambda c, *_: c.subscribe([(topics.status("infer", wid), 0),
                                                       (topics.reply("infer", wid), 0)])
        client.connect(addr.host, addr.port)
        client.loop_start()
        floods: list[subprocess.Popen[bytes]] = []
        try:
            deadline = time.monotonic() + 120
            while not any(s.get("state") == "running" for _t, s in statuses):
                if time.monotonic() > deadline or worker.poll() is not None:
                    print("the worker never said it was running", file=sys.stderr)
                    return 1
                time.sleep(0.1)
            floods = [subprocess.Popen(["mosquitto_pub", "-h", addr.host, "-p", str(addr.port), "-t", topics.images,
                                        "-f", str(ASSET), "-q", str(args.qos), "--repeat", "100000000",
                                        "--repeat-delay", str(args.repeat_delay)]) for _ in range(args.floods)]
            time.sleep(args.warmup)
            with lock:
                replies.clear()
                sent.clear()
                first = statuses[-1]
            cpu_first = process_cpu_seconds(worker.pid)
            end = time.monotonic() + args.seconds
            n = 0
            while time.monotonic() < end:
                n += 1
                req = f"ping-{n}"
                with lock:
                    sent[req] = time.monotonic()
                client.publish(topics.control("infer", wid), json.dumps({"cmd": "ping", "req": req}), qos=0)
                time.sleep(0.1)
            cpu_last = process_cpu_seconds(worker.pid)
            time.sleep(1.5)  # the last pings' replies, and a status after the span
            with lock:
                last = statuses[-1]
                unanswered = len(sent)
                lat = list(replies)
        finally:
            for flood in floods:
                flood.kill()
                flood.wait()
            worker.terminate()
            worker.wait(30)
            client.loop_stop()
    span = last[0] - first[0]
    a, b = first[1], last[1]

    def per_s(name: str) -> float | None:
        if not isinstance(a.get(name), (int, float)) or not isinstance(b.get(name), (int, float)):
            return None
        return round((b[name] - a[name]) / span) if span > 0 else None

    cpu_share = (cpu_last[1] - cpu_first[1]) / max(cpu_last[0] - cpu_first[0], 1e-9)
    answered = per_s("processed")
    report = {
        "floods": args.floods, "qos": args.qos, "repeat_delay": args.repeat_delay, "span_s": round(span, 1),
        "answered_per_s": answered,
        "shed_per_s": per_s("shed"), "dropped_per_s": per_s("dropped"), "received_per_s": per_s("received"),
        "queue": b.get("queue"), "ping_ms": {"sent": n, "unanswered": unanswered, "p50": percentile(lat, 0.5),
                                             "p99": percentile(lat, 0.99), "max": percentile(lat, 1.0)},
        "worker_cpu": args.worker_cpu,
        "worker_cpu_share": round(cpu_share, 2),
        "worker_cpu_us_per_answer": round(cpu_share * 1e6 / answered, 1) if answered else None,
        "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()],
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key:16} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
