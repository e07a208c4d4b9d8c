"""What changed between two payloads: by key for JSON objects, line by line (difflib) for text.

Pure and Textual-free; the payloads are broker content, so every line is cleaned before it is returned.
"""

from __future__ import annotations

import difflib
import json
from typing import Any, NamedTuple

from engine.untrusted import clean_text, loads_json

MAX_LINES = 400  # diff lines returned; the rest is summed up in one line
MAX_KEYS = 5_000  # leaves compared per payload
VALUE_LIMIT = 120


class DiffLine(NamedTuple):
    kind: str  # "added", "removed", "changed", "same", "info"
    text: str


def _json_value(data: bytes) -> Any:
    text = data.decode("utf-8")
    if text.strip()[:1] not in ("{", "["):
        raise ValueError("not a JSON object or array")
    return loads_json(text)


def flatten(value: Any, prefix: str = "", out: dict[str, Any] | None = None) -> dict[str, Any]:
    """Leaves of a JSON value by path: {"a": {"b": [1, 2]}} -> {"a.b[0]": 1, "a.b[1]": 2} (bounded)."""
    out = {} if out is None else out
    stack: list[tuple[str, Any]] = [(prefix, value)]
    while stack and len(out) < MAX_KEYS:
        path, item = stack.pop()
        if isinstance(item, dict) and item:
            stack.extend((f"{path}.{k}" if path else str(k), v) for k, v in reversed(list(item.items())))
        elif isinstance(item, list) and item:
            stack.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(item))))
        else:
            out[path or "(value)"] = item
    return out


def _show(value: Any) -> str:
    return clean_text(json.dumps(value, ensure_ascii=False), VALUE_LIMIT)


def json_diff(old: Any, new: Any) -> list[DiffLine]:
    a, b = flatten(old), flatten(new)
    lines = []
    for key in sorted(a.keys() | b.keys()):
        name = clean_text(key, VALUE_LIMIT)
        if key not in b:
            lines.append(DiffLine("removed", f"- {name}: {_show(a[key])}"))
        elif key not in a:
            lines.append(DiffLine("added", f"+ {name}: {_show(b[key])}"))
        elif a[key] != b[key] or type(a[key]) is not type(b[key]):
            lines.append(DiffLine("changed", f"~ {name}: {_show(a[key])} → {_show(b[key])}"))
    if not lines:
        lines.append(DiffLine("info", "the same JSON value"))
    return lines


def text_diff(old: str, new: str) -> list[DiffLine]:
    lines = []
    for line in difflib.unified_diff(old.splitlines(), new.splitlines(), "older", "newer", lineterm="", n=2):
        kind = "info" if line.startswith(("---", "+++", "@@")) else {"+": "added", "-": "removed"}.get(line[:1],
                                                                                                  "same")
        lines.append(DiffLine(kind, clean_text(line, 400)))
    if not lines:
        lines.append(DiffLine("info", "the same text"))
    return lines


def payload_diff(old: bytes, new: bytes) -> tuple[str, list[DiffLine]]:
    """("json" | "text" | "binary", the lines) for two payloads, the older first."""
    try:
        result = ("json", json_diff(_json_value(old), _json_value(new)))
    except (ValueError, UnicodeDecodeError, RecursionError):
        try:
            result = ("text", text_diff(old.decode("utf-8"), new.decode("utf-8")))
        except UnicodeDecodeError:
            same = "the same bytes" if old == new else f"binary payloads differ ({len(old):,} B and {len(new):,} B)"
            if old != new:
                at = next((i for i, (x, y) in enumerate(zip(old, new, strict=False)) if x != y),
                          min(len(old), len(new)))
                same += f", first at byte {at:,}"
            result = ("binary", [DiffLine("info", same)])
    kind, lines = result
    if len(lines) > MAX_LINES:
        lines = lines[:MAX_LINES] + [DiffLine("info", f"… {len(lines) - MAX_LINES:,} more lines")]
    return kind, lines
