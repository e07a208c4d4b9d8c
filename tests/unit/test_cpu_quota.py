"""Where `bench --worker-cpu-share` makes its control groups (engine/cpu_quota.py), on cgroup layouts laid out in
a folder as the kernel lays them out; the groups themselves are made for real in tests/integration/test_bench.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cpu_quota import find_cpu_hierarchy
from engine.errors import ConfigError


def test_cgroup_v2_without_the_cpu_controller_for_children_says_so(tmp_path: Path) -> None:
    """A v2 child group has no cpu.max unless its parent enables +cpu: said before any group is made."""
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("memory pids\n")
    with pytest.raises(ConfigError, match=r"cpu controller is not enabled for groups under .* \+cpu"):
        find_cpu_hierarchy(tmp_path)
    (tmp_path / "cgroup.subtree_control").write_text("cpu memory pids\n")
    assert find_cpu_hierarchy(tmp_path)[1] == 2


def test_cgroup_v1_uses_the_cpu_hierarchy(tmp_path: Path) -> None:
    (tmp_path / "cpu,cpuacct").mkdir()
    (tmp_path / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("-1\n")
    folder, version = find_cpu_hierarchy(tmp_path)
    assert version == 1 and folder.is_dir() and str(folder).startswith(str(tmp_path / "cpu,cpuacct"))


def test_no_cpu_controller_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs Linux with a cgroup CPU controller"):
        find_cpu_hierarchy(tmp_path)
