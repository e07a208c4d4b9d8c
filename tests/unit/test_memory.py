"""The memory a run may still take (engine/memory.py): a control group's limit counts, as a container's does.

The control group trees are written under tmp_path as the kernel lays them out; psutil gives the machine's.
"""

from __future__ import annotations

from pathlib import Path

import psutil

from engine.memory import NO_LIMIT, available_memory

MB = 1024 * 1024


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_a_cgroup_v2_limit_of_this_group_or_a_group_above_counts(tmp_path: Path) -> None:
    root = tmp_path / "sys"
    _write(root / "cgroup.controllers", "cpu memory pids\n")
    _write(root / "box" / "memory.max", str(512 * MB))  # the container
    _write(root / "box" / "memory.current", str(100 * MB))
    _write(root / "box" / "job" / "memory.max", "max")  # this process's group: no limit of its own
    _write(root / "box" / "job" / "memory.current", str(60 * MB))
    cgroup = tmp_path / "cgroup"
    _write(cgroup, "0::/box/job\n")
    assert available_memory(cgroup, root) == 412 * MB
    _write(root / "box" / "job" / "memory.max", str(100 * MB))  # a tighter one below
    assert available_memory(cgroup, root) == 40 * MB


def test_a_cgroup_v1_memory_limit_counts_and_no_limit_is_the_machine(tmp_path: Path) -> None:
    root = tmp_path / "sys"
    memory = root / "memory" / "docker" / "abc"
    _write(memory / "memory.limit_in_bytes", str(1024 * MB))
    _write(memory / "memory.usage_in_bytes", str(300 * MB))
    cgroup = tmp_path / "cgroup"
    _write(cgroup, "12:pids:/docker/abc\n4:memory:/docker/abc\n1:name=systemd:/docker/abc\n")
    assert available_memory(cgroup, root) == 724 * MB
    _write(memory / "memory.limit_in_bytes", str(NO_LIMIT * 8))  # the kernel's "unlimited"
    machine = psutil.virtual_memory().available
    assert abs(available_memory(cgroup, root) - machine) < 256 * MB  # the machine's, as it is now


def test_no_cgroup_to_read_is_the_machine(tmp_path: Path) -> None:
    machine = psutil.virtual_memory().available
    assert abs(available_memory(tmp_path / "missing", tmp_path) - machine) < 256 * MB
    assert available_memory() <= psutil.virtual_memory().total  # this machine's own files, whatever they say
