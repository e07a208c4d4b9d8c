"""How long the Topics pane takes to list one topic's messages: `python -m tools.topic_table`.

A benchmark, not a test. It runs the console headless (Pilot, no broker: an observer fed by `ingest`),
selects a topic and fills the message table `--repeat` times with 20, 30 and 100 fresh messages, as a new
message on the selected topic makes it do, and prints the median and p90 of each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from engine.console.observer import Message, Observer
from engine.mqtt.address import BrokerAddress
from tui.app import MnistApp
from tui.chrome.header_bar import BrokerInfo
from tui.topics.topics_pane import TopicsPane

TOPIC = "sensors/lab/env"


async def measure(repeat: int, sizes: list[int]) -> None:
    observer = Observer(BrokerAddress(port=1), client_id="topic-table-bench")
    observer.ingest(TOPIC, b'{"temp": 21.5}')
    app = MnistApp(observer, BrokerInfo("mqtt://127.0.0.1:1", "external", "none (benchmark)"))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.2)
        pane = app.screen.query_one(TopicsPane)
        pane.max_rows = None
        pane.tree.select_path(TOPIC)
        await pilot.pause(0.3)
        seq = 1_000_000
        for n in sizes:
            times = []
            for _ in range(repeat):
                payloads = [json.dumps({"temp": 21.5, "hum": 40, "n": i}).encode() for i in range(n)]
                msgs = tuple(Message(seq + i, 1.0 + i, TOPIC, 0, False, len(p), p) for i, p in enumerate(payloads))
                seq += n
                start = time.perf_counter()
                pane._show_messages(msgs)
                times.append(time.perf_counter() - start)
            times.sort()
            print(f"{n:4d} rows: median {statistics.median(times) * 1e3:5.1f} ms, "
                  f"p90 {times[int(len(times) * 0.9)] * 1e3:5.1f} ms ({repeat} fills)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    asyncio.run(measure(args.repeat, [20, 30, 100]))


if __name__ == "__main__":
    main()
