"""What a batch costs the worker's batching thread, per stage and per image: `python -m tools.batch_cost`.

A benchmark, not a test. Runs the worker's work on one batch (each image's metadata read and its PNG
inflated, the batch's pixels decoded, the forward pass, the result JSON) on the shipped digits with
metadata stamped in, as the publisher sends them, for several batch sizes, in these ways (`--ways`):

- `none`: batches back to back (as at full speed, when the thread never waits);
- `sleep`: the thread sleeps `--gap` ms between batches (as at a moderate rate, waiting for images);
- `spin`: the thread busy-waits `--gap` ms instead, reading the clock, so the processor never idles: if this
  costs as much as `sleep`, what a wait costs is not the idle processor's wake-up;
- `loop`: the thread runs a pure-Python loop of about `--gap` ms instead (calibrated first, no clock read
  within it): work of its own with a small footprint, and no system call.

If every way of spending the gap costs the same, and more the longer the gap, what the next batch pays does
not depend on what this thread did meanwhile, only on how long (docs/PERFORMANCE.md, "Moderate rates").

Prints microseconds of thread CPU per image for each stage, the median of `--rounds` rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from engine.digits.fastpng import decode_batch, inflate_grey28
from engine.digits.model import load_model, set_threads
from engine.protocol import embed_meta, extract_meta
from engine.result_json import encode_results

STAGES = ("meta+inflate", "decode", "predict", "encode")
ASSETS = Path(__file__).resolve().parent.parent / "assets" / "mnist_images"


def _payloads(count: int) -> list[bytes]:
    pngs = [path.read_bytes() for path in sorted(ASSETS.glob("*.png"))]
    return [embed_meta(pngs[i % len(pngs)], {"id": f"bench-{i}", "seq": i, "t": time.time(), "src": "bench"})
            for i in range(count)]


def _busy(iterations: int) -> int:
    total = 0
    for i in range(iterations):
        total += i & 7
    return total


def _loop_iterations(gap: float) -> int:
    """How many `_busy` iterations take about `gap` seconds here."""
    n = 10_000
    while True:
        t0 = time.perf_counter()
        _busy(n)
        took = time.perf_counter() - t0
        if took > 0.02:
            return max(1, round(n * gap / took))
        n *= 2


_LOOP: dict[float, int] = {}  # gap -> iterations of `_busy`, calibrated once before the rounds


def _wait(mode: str, gap: float) -> None:
    if mode == "loop":
        _busy(_LOOP[gap])
    elif mode == "sleep":
        time.sleep(gap)
    elif mode == "spin":
        end = time.perf_counter() + gap
        while time.perf_counter() < end:
            pass


def _round(batch: list[bytes], batches: int, mode: str, gap: float, predict: Callable) -> list[float]:
    """Thread CPU per image of each stage, in microseconds, over `batches` batches."""
    clock = time.thread_time
    spent = [0.0] * len(STAGES)
    for _ in range(batches):
        _wait(mode, gap)
        t0 = clock()
        heads = []
        raws = []
        for payload in batch:
            meta = extract_meta(payload)
            heads.append({"id": meta.id, "label": meta.label, "worker": "w", "src": meta.src, "t_sent": meta.t})
            raws.append(inflate_grey28(payload))
        t1 = clock()
        images = decode_batch(raws)
        t2 = clock()
        probs = predict(images)
        t3 = clock()
        encode_results(heads, probs, "lenet5", "w", [0.0] * len(batch), 0.0)
        t4 = clock()
        for i, cost in enumerate((t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            spent[i] += cost
    return [cost / batches / len(batch) * 1e6 for cost in spent]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.batch_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,4,16,64", help="batch sizes, comma-separated (default 1,4,16,64)")
    parser.add_argument("--gap", type=float, default=4.0, help="ms between batches (default 4)")
    parser.add_argument("--ways", default="none,sleep,spin",
                        help="what the thread does between batches, comma-separated: none, sleep, spin, loop "
                             "(default none,sleep,spin)")
    parser.add_argument("--images", type=int, default=2000, help="images per round and way (default 2000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is shown (default 3)")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    if unknown := set(args.ways.split(",")) - {"none", "sleep", "spin", "loop"}:
        parser.error(f"unknown way: {', '.join(sorted(unknown))}")
    set_threads(1)  # as the worker runs
    model = load_model()
    if "loop" in args.ways.split(","):
        _LOOP[args.gap / 1000] = _loop_iterations(args.gap / 1000)
    rows = []
    for size in sizes:
        batch = _payloads(size)
        batches = max(20, args.images // size)
        _round(batch, 20, "none", 0.0, model.predict)  # warm up
        for mode in args.ways.split(","):
            rounds = [_round(batch, batches, mode, args.gap / 1000, model.predict) for _ in range(args.rounds)]
            stages = [statistics.median(r[i] for r in rounds) for i in range(len(STAGES))]
            rows.append({"batch": size, "between": mode, "us_per_image": dict(zip(STAGES, stages, strict=True)),
                         "total_us_per_image": sum(stages)})
    if args.json:
        print(json.dumps({"gap_ms": args.gap, "rows": rows}, indent=1))
        return 0
    print(f"{'batch':>5}  {'between':8}" + "".join(f"{stage:>14}" for stage in STAGES) + f"{'total':>10}  us/image")
    for row in rows:
        between = row["between"] if row["between"] == "none" else f"{row['between']} {args.gap:g}"
        print(f"{row['batch']:>5}  {between:8}" + "".join(f"{v:>14.1f}" for v in row["us_per_image"].values())
              + f"{row['total_us_per_image']:>10.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
