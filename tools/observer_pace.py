"""How many messages a second the console's observer takes: `python -m tools.observer_pace`.

A benchmark, not a test. It starts a mosquitto of its own and the console's observer in its child
process (`engine.console.observer_process.ObserverProcess`, filter `#`, as `mnist-tui` runs it), then
floods it with two `mosquitto_pub --repeat N` processes at once: one worker-made result JSON
(`engine/result_json.py`, with its MQTT 5 content type) on the results topic and one image with its
metadata on the images topic, as a full-speed pipeline sends them. C publishers cost little, so what is
measured is the observer: the results it counted per second from its first to its last, and the CPU
its child process spent per message (images and results), read from /proc. At these rates the observer
decodes a sample (engine/console/sampling.py) and counts the rest: `--no-sampling` decodes every one.
The result carries no `t_done`, so that the observer never skips ahead (a copy of one result looks later
and later). Prints the load average before and after: on a shared machine say so beside the figures.
`--json` prints the report as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from engine.console.observer_process import ObserverProcess
from engine.mqtt.broker import EmbeddedBroker
from engine.mqtt.message_props import CONTENT_TYPE
from engine.protocol import embed_meta
from engine.result_json import encode_results
from engine.topics import Topics

ASSET = Path(__file__).resolve().parent.parent / "assets" / "mnist_images" / "0.png"


def child_cpu_s(pid: int) -> float:
    """User plus system CPU seconds of process `pid` (all its threads) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.observer_pace", description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=30_000, help="results (and as many images) to send")
    parser.add_argument("--idle", type=float, default=3.0, help="seconds without a new result that end a run")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--no-sampling", action="store_true",
                        help="decode every message, as before engine/console/sampling.py")
    args = parser.parse_args(argv)
    topics = Topics()
    now = time.time()
    result = encode_results([{"id": "input-bench-1", "label": 3, "src": "input-bench", "t_sent": now}],
                            np.random.default_rng(1).dirichlet(np.ones(10), size=1), "mnist-cnn", "infer-bench",
                            [now], now)[0]
    # The same result over and over looks later and later to the observer, which would then skip ahead
    # (engine/console/keep_up.py) and decode almost none: without its finishing time it is never judged late.
    result = json.dumps({k: v for k, v in json.loads(result).items() if k != "t_done"},
                        separators=(",", ":")).encode()
    image = embed_meta(ASSET.read_bytes(), {"id": "input-bench-1", "label": 3, "t": now, "src": "input-bench"})
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(kind="mosquitto") as broker:
        files = {topics.results: Path(tmp, "result.json"), topics.images: Path(tmp, "image.png")}
        files[topics.results].write_bytes(result)
        files[topics.images].write_bytes(image)
        observer = ObserverProcess(broker.address, sampling=not args.no_sampling)
        observer.start()
        try:
            deadline = time.monotonic() + 30
            while not observer.snapshot(topics=False).subscribed:
                if time.monotonic() > deadline:
                    print("the observer never subscribed", file=sys.stderr)
                    return 1
                time.sleep(0.05)
            pid = observer.pid
            assert pid is not None
            cpu0 = child_cpu_s(pid)
            t0 = time.monotonic()
            # MQTT 5, and a result with its content type, as a worker publishes it (engine.mqtt.message_props)
            props = {topics.results: ["-D", "publish", "content-type", CONTENT_TYPE], topics.images: []}
            floods = [subprocess.Popen(["mosquitto_pub", "-V", "5", "-h", broker.address.host,
                                        "-p", str(broker.address.port), "-t", topic, "-f", str(path),
                                        *props[topic], "--repeat", str(args.count)])
                      for topic, path in files.items()]
            seen, first, last = 0, None, t0
            while True:
                snap = observer.snapshot(topics=False, results=0)
                now_m = time.monotonic()
                if snap.stats.received > seen:
                    seen, last = snap.stats.received, now_m
                    first = first if first is not None else now_m
                if seen >= args.count or (now_m - last > args.idle and all(f.poll() is not None for f in floods)):
                    break
                time.sleep(0.02)
            cpu = child_cpu_s(pid) - cpu0
            for flood in floods:
                flood.wait(10)
            span = max(last - (first or t0), 1e-9)
            report = {
                "sampling": not args.no_sampling, "results_decoded": snap.stats.decoded,
                "sent_results": args.count, "sent_images": args.count, "results_taken": seen,
                "seconds": round(last - t0, 2), "results_per_s": round(seen / max(last - t0, 1e-9)),
                "results_per_s_first_to_last": round(seen / span),
                "observer_cpu_s": round(cpu, 2), "observer_cpu_us_per_message": round(cpu / max(1, 2 * seen) * 1e6, 1),
                "load_before": [round(x, 2) for x in load_before],
                "load_after": [round(x, 2) for x in os.getloadavg()],
            }
        finally:
            observer.stop()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key:30} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
