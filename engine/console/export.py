"""Results as CSV: one row per result the console holds, for a spreadsheet or pandas.

Columns: time (local ISO 8601 with milliseconds and UTC offset), id, pred, label, correct (1/0, empty
when there is no label), conf, latency_ms, worker, model, p0..p9 (the ten class probabilities), and
error (empty unless the worker could not classify the image). Missing values are empty cells.

Text cells come from the broker (ids, worker and model names, errors): one that starts with = + - @ (or a
tab or carriage return) would be a formula to a spreadsheet, so it gets a leading ' (OWASP's advice). The
file is new (an existing file or a symlink is refused) and readable by its owner only (0600).
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import time
from collections.abc import Iterable
from pathlib import Path

import platformdirs

from engine.console.snapshot import ResultRow
from engine.errors import ConfigError

COLUMNS = ["time", "id", "pred", "label", "correct", "conf", "latency_ms", "worker", "model",
           *(f"p{i}" for i in range(10)), "error"]


def export_dir() -> Path:
    """Where the console's `e` writes: mnist-tui/ in the user's documents folder (XDG_DOCUMENTS_DIR on
    Linux, ~/Documents elsewhere), never the current directory (after the quickstart: a git checkout)."""
    return platformdirs.user_documents_path() / "mnist-tui"


def default_name(now: float | None = None) -> str:
    """mnist-results-20251125-220000.csv (local time)."""
    return time.strftime("mnist-results-%Y%m%d-%H%M%S.csv", time.localtime(now if now is not None else time.time()))


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t).astimezone().isoformat(timespec="milliseconds")


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def text_cell(value: str | None) -> str:
    """A text cell that no spreadsheet takes for a formula."""
    if not value:
        return ""
    return "'" + value if value.startswith(_FORMULA_START) else value


def csv_row(row: ResultRow) -> list[str]:
    probs = [f"{p:.6g}" for p in row.probs] if row.probs is not None else [""] * 10
    correct = row.correct
    return [
        _iso(row.t),
        text_cell(row.id),
        "" if row.pred is None else str(row.pred),
        "" if row.label is None else str(row.label),
        "" if correct is None else str(int(correct)),
        "" if row.conf is None else f"{row.conf:.6g}",
        "" if row.latency_ms is None else f"{row.latency_ms:.3f}",
        text_cell(row.worker),
        text_cell(row.model),
        *probs,
        text_cell(row.error),
    ]


def write_results_csv(rows: Iterable[ResultRow], path: Path) -> int:
    """Write `rows` to `path` (a new file; an existing one is refused); returns how many were written."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with open(fd, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            n = 0
            for row in rows:
                writer.writerow(csv_row(row))
                n += 1
    except FileExistsError:
        raise ConfigError(f"{path} exists already: not overwritten") from None
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    return n
