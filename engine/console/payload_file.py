"""A received payload saved to a file: new (an existing file or a symlink is refused), owner-only (0600).

The name says where it came from and when; the topic (broker content) is reduced to safe characters first.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from engine.errors import ConfigError
from engine.protocol import PNG_SIGNATURE

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def extension(data: bytes) -> str:
    if data.startswith(PNG_SIGNATURE):
        return ".png"
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        return ".bin"
    return ".json" if text[:1] in ("{", "[") else ".txt"


def default_name(topic: str, data: bytes, t: float) -> str:
    """mnist-payload-sensors_lab_temp-20251125-220000-123.txt (local time of the message)."""
    safe = _UNSAFE.sub("_", topic).strip("._")[:60] or "topic"
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(t)) + f"-{int(t * 1000) % 1000:03d}"
    return f"mnist-payload-{safe}-{stamp}{extension(data)}"


def write_payload(data: bytes, path: Path) -> None:
    """Write `data` to the new file `path` (ConfigError when it exists, is a symlink, or cannot be written)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with open(fd, "wb") as handle:
            handle.write(data)
    except FileExistsError:
        raise ConfigError(f"{path} exists already: not overwritten") from None
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
