"""A share of a CPU for each of a benchmark's workers: `--worker-cpu-share 0.2` (Linux, a cgroup CPU quota).

Each worker process goes into a control group of its own, held to `share` of one CPU per 100 ms period
(cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us`). With `--worker-cpus` beside it, a worker that can take only
a fraction of its core leaves the load generators room to offer it five or ten times what it can take on a
machine with few cores. Creating a control group needs root (or a delegated subtree), and under cgroup v2 the
cpu controller enabled for the children of the bench's own group (`+cpu` in its `cgroup.subtree_control`);
without them, the bench says so in one line. The groups are removed when the bench ends; their `cpu.stat`
(how often the quota stopped the worker) goes into the report.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from pathlib import Path

from engine.errors import ConfigError

log = logging.getLogger(__name__)

PERIOD_US = 100_000  # the kernel's own default period
MIN_QUOTA_US = 1_000  # the kernel's least quota


def parse_share(text: str) -> float:
    """An argparse type: a share of one CPU, from 0.01 (1 ms of each 100 ms period) to 1."""
    import argparse

    try:
        share = float(text)
    except ValueError:
        share = float("nan")
    if not MIN_QUOTA_US / PERIOD_US <= share <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share of a CPU from {MIN_QUOTA_US / PERIOD_US:g} to 1")
    return share


def _own_group(version: int, controller_line: str) -> str:
    """This process's control group path (v2: the `0::` line; v1: the line naming the cpu controller)."""
    for line in controller_line.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if version == 2 and hierarchy == "0" and not controllers:
            return path
        if version == 1 and "cpu" in controllers.split(","):
            return path
    return "/"


def find_cpu_hierarchy(mount: Path = Path("/sys/fs/cgroup")) -> tuple[Path, int]:
    """(the folder to make groups in, cgroup version); ConfigError when there is no CPU controller."""
    try:
        own = Path("/proc/self/cgroup").read_text()
    except OSError:
        own = ""
    v2 = mount / "cgroup.controllers"
    with contextlib.suppress(OSError):
        if "cpu" in v2.read_text().split():
            group = mount / _own_group(2, own).lstrip("/")
            if not group.is_dir():  # a container's own view: its mount is its group
                group = mount
            try:
                enabled = (group / "cgroup.subtree_control").read_text().split()
            except OSError:
                enabled = []
            if "cpu" not in enabled:
                raise ConfigError(f"--worker-cpu-share: the cpu controller is not enabled for groups under {group} "
                                  "(cgroup v2: +cpu in its cgroup.subtree_control)")
            return group, 2
    for name in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        folder = mount / name
        if (folder / "cpu.cfs_quota_us").exists():
            group = folder / _own_group(1, own).lstrip("/")
            return (group if group.is_dir() else folder), 1  # a container's own view: its mount is its group
    raise ConfigError("--worker-cpu-share needs Linux with a cgroup CPU controller (none under /sys/fs/cgroup)")


class CpuQuota:
    """Control groups, one per process added, each held to `share` of one CPU; `close()` removes them."""

    def __init__(self, share: float, name: str, mount: Path = Path("/sys/fs/cgroup")) -> None:
        self.share = share
        self.name = name
        self.parent, self.version = find_cpu_hierarchy(mount)
        self.groups: dict[int, Path] = {}  # pid -> its group

    def add(self, pid: int) -> None:
        """Move process `pid` (all its threads) into a group of its own with the quota."""
        group = self.parent / f"{self.name}-{pid}"
        quota = max(MIN_QUOTA_US, round(self.share * PERIOD_US))
        try:
            group.mkdir(exist_ok=True)
            self.groups[pid] = group
            if self.version == 2:
                (group / "cpu.max").write_text(f"{quota} {PERIOD_US}")
            else:
                (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                (group / "cpu.cfs_quota_us").write_text(str(quota))
            (group / "cgroup.procs").write_text(str(pid))
        except OSError as exc:
            self.close()
            code = errno.errorcode.get(exc.errno or 0, "")
            raise ConfigError(f"--worker-cpu-share: cannot hold a worker to a share of a CPU under {self.parent} "
                              f"({code + ': ' if code else ''}{exc.strerror or exc})") from None

    def stats(self) -> dict[int, dict[str, int]]:
        """Per pid, its group's cpu.stat (nr_periods, nr_throttled, throttled time), read now."""
        out: dict[int, dict[str, int]] = {}
        for pid, group in self.groups.items():
            fields: dict[str, int] = {}
            with contextlib.suppress(OSError):
                for line in (group / "cpu.stat").read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if value.strip().isdigit():
                        fields[key] = int(value)
            out[pid] = fields
        return out

    def close(self) -> None:
        """Remove the groups; a process still in one goes back to the parent group first."""
        for pid, group in list(self.groups.items()):
            del self.groups[pid]
            if not group.exists():
                continue
            with contextlib.suppress(OSError):
                for left in (group / "cgroup.procs").read_text().split():  # the worker, or what it started
                    with contextlib.suppress(OSError):
                        (self.parent / "cgroup.procs").write_text(left)
            try:
                os.rmdir(group)
            except OSError as exc:
                log.warning("could not remove the control group %s (%s): remove it with rmdir", group,
                            exc.strerror or exc)
