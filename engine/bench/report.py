"""The bench's report: figures taken from the workers' statuses and processes, and the table it prints.

`stage_means` weighs each worker status by the images finished since the one before; `per_image` adds
CPU microseconds per answered image to each process's entry; `render_table` prints the report that
`Bench.measure` (engine/bench/run.py) returns (`--json` prints the same dict as JSON).
"""

from __future__ import annotations

from typing import Any

from engine.bench.stats import PARTS

STAGES = ("queue", "decode", "infer", "publish")


def per_image(processes: dict[str, Any], answered: int) -> dict[str, Any]:
    """CPU microseconds per answered image for each process (bench, broker, generators)."""
    for entry in processes.values():
        if answered and isinstance(entry.get("cpu_seconds"), (int, float)):
            entry["cpu_us_per_image"] = round(1e6 * entry["cpu_seconds"] / answered, 1)
    return processes


def stage_means(
    log: list[tuple[float, str, dict[str, Any]]], worker_ids: list[str]
) -> tuple[dict[str, float | None], float | None]:
    """Mean time per image in each stage and mean batch, over the status messages of busy workers.

    Each status carries means over the worker's last batches; statuses are weighted by the images
    the worker finished since its previous status, so idle seconds do not dilute the figures.
    """
    wanted = set(worker_ids)
    last_done: dict[str, int] = {}
    sums = dict.fromkeys(STAGES, 0.0)
    weights = dict.fromkeys(STAGES, 0.0)
    batch_sum = batch_weight = 0.0
    for _t, wid, status in log:
        if wanted and wid not in wanted:
            continue
        done = status.get("processed", 0) + status.get("errors", 0)
        prev = last_done.get(wid)
        last_done[wid] = done
        if prev is None or done <= prev:
            continue
        weight = float(done - prev)
        stages = status.get("stages_ms") or {}
        for name in STAGES:
            value = stages.get(name)
            if isinstance(value, (int, float)):
                sums[name] += value * weight
                weights[name] += weight
        batch = status.get("batch_mean")
        if isinstance(batch, (int, float)):
            batch_sum += batch * weight
            batch_weight += weight
    means = {name: (round(sums[name] / weights[name], 4) if weights[name] else None) for name in STAGES}
    return means, (round(batch_sum / batch_weight, 2) if batch_weight else None)



def render_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    c = report["config"]
    offered = "full speed" if not c["rate"] else f"{c['rate']:g} images/s offered"
    title = (f"mnist-tui bench: {c['workers']} worker(s), QoS {c['qos']}, {offered}, "
             f"MQTT {c['mqtt']}, {c['broker_kind']} at {c['broker']}")
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("measure")
    table.add_column("value", justify="right")
    lat = report["latency_ms"]
    stages = report["stages_ms"]

    def num(v: Any, fmt: str = "{:,.2f}") -> str:
        return "-" if v is None else fmt.format(v)

    rows = [
        ("images sent", f"{report['sent']:,}"),
        ("answered", f"{report['answered']:,}"),
        ("lost", f"{report['lost']:,}"),
        ("duplicated", f"{report['duplicated']:,}"),
        ("error results", f"{report['errors']:,}"),
        ("accuracy", num(report["accuracy"] and report["accuracy"] * 100, "{:.2f}%")),
        ("offered (images/s)", num(report["offered_rate"], "{:,.0f}")),
        ("throughput (answers/s)", num(report["throughput"], "{:,.0f}")),
        ("latency p50 / p90 / p99 (ms)", f"{num(lat['p50'])} / {num(lat['p90'])} / {num(lat['p99'])}"),
        ("latency max / mean (ms)", f"{num(lat['max'])} / {num(lat['mean'])}"),
        ("latency p50 parts (ms)", " / ".join(
            f"{num((report.get('latency_parts_ms') or {}).get(part, {}).get('p50'))} {part.replace('_', ' ')}"
            for part in PARTS)),
        ("per image: queue / decode / infer / publish (ms)",
         " / ".join(num(stages[s], "{:.4f}") for s in STAGES)),
        ("mean batch", num(report["batch_mean"])),
    ]
    for name, value in rows:
        table.add_row(name, value)
    for wid, w in report["per_worker"].items():
        table.add_row(
            f"worker {wid}",
            f"{w['answered']:,} answers, CPU {num(w.get('cpu_percent'), '{:.0f}')}%, "
            f"RSS {num(w.get('rss_mb_start'), '{:.0f}')} -> {num(w.get('rss_mb_end'), '{:.0f}')} MB",
        )
    for name, p in report["processes"].items():
        table.add_row(name, f"CPU {num(p.get('cpu_percent'), '{:.0f}')}%, RSS {num(p.get('rss_mb_end'), '{:.0f}')} MB")
    console.print(table)
    for note in report["notes"]:
        console.print(f"note: {note}")
    if report["stalls"]:
        console.print(f"note: the window stalled {report['stalls']} time(s): answers stopped coming")
    if report["interrupted"]:
        console.print("note: interrupted; the figures cover the part that ran")
