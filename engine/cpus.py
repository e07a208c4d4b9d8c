"""Which CPUs a benchmark's processes may run on: `--worker-cpus 0` or `0-3,6` (Linux only)."""

from __future__ import annotations

import argparse
import contextlib
import os

from engine.errors import ConfigError


def parse_cpu_list(text: str) -> frozenset[int]:
    """An argparse type for a CPU list as `taskset -c` takes it: `0`, `0,2`, `0-3,6`."""
    cpus: set[int] = set()
    try:
        for part in text.split(","):
            low, sep, high = part.strip().partition("-")
            first, last = int(low), int(high) if sep else int(low)
            if first < 0 or last < first or last - first > 4096:
                raise ValueError
            cpus.update(range(first, last + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a CPU list such as 0, 0,2 or 0-3") from None
    return frozenset(cpus)


def split_cpus(workers: frozenset[int]) -> frozenset[int]:
    """The CPUs left for everything else once `workers` are taken; ConfigError if none or one is not ours."""
    if not hasattr(os, "sched_setaffinity"):
        raise ConfigError("--worker-cpus needs Linux (CPU affinity)")
    allowed = frozenset(os.sched_getaffinity(0))
    if not workers <= allowed:
        raise ConfigError(f"--worker-cpus {_show(workers)}: this process may run on CPUs {_show(allowed)} only")
    rest = allowed - workers
    if not rest:
        raise ConfigError(f"--worker-cpus {_show(workers)} leaves no CPU for the broker and the load "
                          f"(this process may run on {_show(allowed)})")
    return rest


def pin_process(pid: int, cpus: frozenset[int]) -> None:
    """Pin every thread of `pid` to `cpus`; threads it starts later inherit it from their creator."""
    tasks = [pid]
    with contextlib.suppress(OSError):
        tasks = [int(name) for name in os.listdir(f"/proc/{pid}/task")]
    for tid in tasks:
        with contextlib.suppress(ProcessLookupError):  # a thread that has just ended
            os.sched_setaffinity(tid, cpus)


def _show(cpus: frozenset[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))
