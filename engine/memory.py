"""How much memory this process and its children may still take: the machine's available memory, or less
where a control group (a container, a systemd slice) sets a limit. psutil reports the machine's only: in a
container of 512 MB it said 22 GB, and workers started until the kernel's OOM killer ended them.
"""

from __future__ import annotations

from pathlib import Path

NO_LIMIT = 1 << 60  # cgroup v1 writes "no limit" as a number near 2**63


def available_memory(cgroup_file: str | Path = "/proc/self/cgroup", root: str | Path = "/sys/fs/cgroup") -> int:
    """Bytes available: the least of the machine's available memory and the room left under each memory
    limit of this process's control group and the groups above it (cgroup v2 and v1)."""
    import psutil

    room = [psutil.virtual_memory().available]
    room += _cgroup_room(Path(cgroup_file), Path(root))
    return max(0, min(room))


def _cgroup_room(cgroup_file: Path, root: Path) -> list[int]:
    try:
        lines = cgroup_file.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    room: list[int] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _id, controllers, path = parts
        if controllers == "" and (root / "cgroup.controllers").exists():  # v2: one tree
            room += _limits(root, path, "memory.max", "memory.current")
        elif "memory" in controllers.split(","):  # v1: the memory controller's own tree
            room += _limits(root / "memory", path, "memory.limit_in_bytes", "memory.usage_in_bytes")
    return room


def _limits(base: Path, path: str, limit_name: str, usage_name: str) -> list[int]:
    """Limit minus usage for the group at `path` under `base` and each group above it that sets a limit. In a
    container whose cgroup namespace hides the path, the path is `/`: the container's own group."""
    room = []
    here = base / path.strip("/") if path.strip("/") else base
    while True:
        limit = _number(here / limit_name)
        usage = _number(here / usage_name)
        if limit is not None and limit < NO_LIMIT and usage is not None:
            room.append(limit - usage)
        if here == base or base not in here.parents:
            break
        here = here.parent
    return room


def _number(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max" (v2): no limit
