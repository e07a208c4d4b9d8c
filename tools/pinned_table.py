"""The reports of `tools/pinned_overload.sh` as one Markdown table: `python -m tools.pinned_table DIR`.

One row per flood run: the round, floods and QoS, images received per second (what the broker passed
on), the multiple of that round's pinned capacity at the same QoS, answered/s and its share of the
capacity, shed/s, the worker's CPU (share of its core, microseconds per answered image), and the
control-ping latency. Capacity rows (`bench --worker-cpus`) are listed first.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any


def _num(value: Any, digits: int = 0) -> str:
    return f"{value:,.{digits}f}" if isinstance(value, (int, float)) else "-"


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def table(directory: Path) -> list[str]:
    capacity: dict[tuple[str, int], float] = {}
    lines = ["| run | capacity/s | worker CPU/image |", "|---|---|---|"]
    for path in sorted(directory.glob("r*-capacity-q*.json")):
        m = re.match(r"(r\d+)-capacity-q(\d)", path.stem)
        report = _load(path)
        if m is None or report is None:
            continue
        capacity[(m.group(1), int(m.group(2)))] = report.get("throughput") or 0.0
        cpu = [w.get("cpu_us_per_image") for w in report.get("per_worker", {}).values()]
        lines.append(f"| {path.stem} | {_num(report.get('throughput'))} | {_num(cpu[0] if cpu else None, 1)} us |")
    lines += ["", "| run | received/s (x capacity) | answered/s (of capacity) | shed/s | worker core, CPU/answer "
              "| ping p50 / p99 ms (unanswered) |", "|---|---|---|---|---|---|"]
    for path in sorted(directory.glob("r*-flood*.json")):
        report = _load(path)
        m = re.match(r"(r\d+)-", path.stem)
        if report is None or m is None:
            continue
        cap = capacity.get((m.group(1), int(report.get("qos", 0))))
        got, offered = report.get("answered_per_s"), report.get("received_per_s")
        times = f" ({offered / cap:.1f}x)" if cap and isinstance(offered, (int, float)) else ""
        share = f" ({got / cap:.0%})" if cap and isinstance(got, (int, float)) else ""
        ping = report.get("ping_ms", {})
        lines.append(
            f"| {path.stem} | {_num(offered)}{times} | {_num(got)}{share} | {_num(report.get('shed_per_s'))} "
            f"| {_num(report.get('worker_cpu_share'), 2)}, {_num(report.get('worker_cpu_us_per_answer'), 1)} us "
            f"| {_num(ping.get('p50'), 1)} / {_num(ping.get('p99'), 1)} "
            f"({ping.get('unanswered', '-')} of {ping.get('sent', '-')}) |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.pinned_table", description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    if not args.directory.is_dir():
        print(f"{args.directory}: not a directory", file=sys.stderr)
        return 2
    print("\n".join(table(args.directory)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
