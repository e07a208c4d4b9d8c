"""The bench reports of a directory as one Markdown table: `python -m tools.bench_table DIR`.

Reads every `*.json` written by `python -m engine bench ... --json` (for instance by
`tools/overload_bench.sh`) and prints one row per run: workers, generators, QoS, offered rate (and the
multiple of the capacity under `--overload`, and the images held back at QoS 1 while the broker's
window was full), answered/s (goodput), images shed or dropped (one count: a worker's `dropped`
includes what it shed) and expired (past `--max-wait` or their MQTT 5 expiry), control-ping
latency, end-to-end latency and the worker CPU per answered image. docs/PERFORMANCE.md's tables are
made with it, so a reader can make them again from the same reports.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HEADER = ("| run | workers x generators | QoS | offered/s | answered/s | shed or dropped / expired "
          "| control p50 / p99 ms (unanswered) | latency p50 / p99 ms | worker CPU/image |")


def _num(value: Any, digits: int = 0) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return f"{value:,.{digits}f}"


def row(name: str, report: dict[str, Any]) -> str:
    config = report.get("config", {})
    workers = report.get("per_worker", {}) or {}
    # a worker's `dropped` already includes what it shed (QoS 0 images dropped unread while its queue was full)
    dropped = sum(w.get("dropped_during", w.get("dropped", 0)) or 0 for w in workers.values())
    expired = sum(w.get("expired_during", w.get("expired", 0)) or 0 for w in workers.values())
    cpu = [w.get("cpu_us_per_image") for w in workers.values() if w.get("cpu_us_per_image") is not None]
    offered = _num(report.get("offered_rate"))
    capacity = report.get("capacity")
    if isinstance(capacity, (int, float)) and capacity > 0 and isinstance(report.get("offered_rate"), (int, float)):
        offered += f" ({report['offered_rate'] / capacity:.1f}x of {_num(capacity)})"
    if report.get("held_back"):
        offered += f", {_num(report['held_back'])} held back"
    answered = _num(report.get("goodput") or report.get("throughput"))
    if isinstance(capacity, (int, float)) and capacity > 0 and isinstance(report.get("goodput"), (int, float)):
        answered += f" ({100 * report['goodput'] / capacity:.0f}%)"
    control = report.get("control_ms") or {}
    latency = report.get("latency_ms") or {}
    return (f"| {name} | {config.get('workers', '-')} x {config.get('generators', 1)} | {config.get('qos', '-')} "
            f"| {offered} | {answered} | {_num(dropped)} / {_num(expired)} "
            f"| {_num(control.get('p50'), 1)} / {_num(control.get('p99'), 1)} ({control.get('unanswered', '-')}) "
            f"| {_num(latency.get('p50'), 1)} / {_num(latency.get('p99'), 1)} "
            f"| {' / '.join(f'{c:.0f} us' for c in cpu) or '-'} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_table", description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="a directory of bench --json reports")
    args = parser.parse_args(argv)
    files = sorted(args.directory.glob("*.json"))
    if not files:
        print(f"bench_table: no .json reports in {args.directory}", file=sys.stderr)
        return 1
    print(HEADER)
    print("|" + "---|" * HEADER.count(" |"))
    for path in files:
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            print(f"| {path.stem} | unreadable: {exc} |")
            continue
        print(row(path.stem, report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
