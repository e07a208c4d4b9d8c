"""How long a full refresh takes with thousands of topics in the tree: `python -m tools.topic_tree`.

A benchmark, not a test. It runs the console headless (Pilot, no broker: an observer fed by `ingest`) with
`--topics` topics three levels deep, folded and then with every level open (`]`), and times a full refresh
(`refresh_from_observer(full=True)`, then the pause that lets Textual handle what it posted) `--repeat`
times with a count changed before each; prints the median and the largest of each.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from engine.console.observer import Observer
from engine.mqtt.address import BrokerAddress
from tui.app import MnistApp
from tui.chrome.header_bar import BrokerInfo
from tui.topics.topic_tree import TopicTree


async def measure(topics: int, repeat: int) -> None:
    observer = Observer(BrokerAddress(port=1), client_id="topic-tree-bench")
    for i in range(topics):
        observer.ingest(f"plant/line{i % 50:02d}/machine{i // 50:04d}", b"21.5")
    app = MnistApp(observer, BrokerInfo("mqtt://127.0.0.1:1", "external", "none (benchmark)"))
    async with app.run_test(size=(120, 40)) as pilot:
        tree = app.screen.query_one(TopicTree)
        deadline = time.monotonic() + 60
        while len(tree.topic_names) < topics and time.monotonic() < deadline:
            await pilot.pause(0.1)
        for opened in (False, True):
            if opened:
                tree.expand_everything()
                await pilot.pause(0.3)
            times = []
            for k in range(repeat):
                observer.ingest(f"plant/line00/machine{k % 10:04d}", b"22")
                start = time.perf_counter()
                app.refresh_from_observer(full=True)
                await pilot.pause()
                times.append((time.perf_counter() - start) * 1000)
            print(f"{len(tree.topic_names):,} topics, {'every level open' if opened else 'folded'}: full refresh "
                  f"median {statistics.median(times):.0f} ms, max {max(times):.0f} ms ({repeat} refreshes)")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.topic_tree", description=__doc__.split("\n\n")[0])
    parser.add_argument("--topics", type=int, default=4000, help="topics in the tree (default 4,000; the console "
                        "tracks 5,000 at most)")
    parser.add_argument("--repeat", type=int, default=10, help="refreshes timed of each kind (default 10)")
    args = parser.parse_args()
    asyncio.run(measure(args.topics, args.repeat))


if __name__ == "__main__":
    main()
