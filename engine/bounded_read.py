"""Reading a file named by a user or by a command from the broker: a regular file only, and only so much.

`path.read_bytes()` on `/dev/zero` (size 0, never ends) reads until memory runs out, and on a named pipe with
no writer it waits for ever; a model path in a `load` command comes from the broker. `read_regular` checks
the file before opening it, opens it without blocking, checks it again once open, and reads at most `limit`
bytes; what it refuses is an OSError with a one-line `strerror`, as a missing file is.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


def read_regular(path: str | Path, limit: int) -> bytes:
    """The bytes of the regular file `path`; OSError when it is something else or larger than `limit` bytes."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise _not_regular(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced between the two looks
            raise _not_regular(path)
        os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit // (1024 * 1024):,} MiB", str(path))
    return data


def _not_regular(path: str | Path) -> OSError:
    return OSError(errno.EINVAL, "a directory" if os.path.isdir(path) else "not a regular file", str(path))
