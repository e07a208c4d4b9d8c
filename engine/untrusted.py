"""The boundary for what comes from the broker: text, JSON, statuses, results and replies.

Anything another client wrote (topic names, client ids, statuses, results, replies, payloads) is
untrusted. It passes through here before the console's model keeps it:

- `clean_text` removes control characters (ESC, so no CSI or OSC sequence such as a title change or an
  OSC 52 clipboard write; the C1 controls; BEL, BS, CR, ...) and the bidirectional overrides that make
  text read differently from what it is, and bounds the length. Markup is the screen's concern: the
  console escapes it (`tui/safe_text.py`), this module does not know about it.
- `visible_text` shows those characters, and the invisible ones (zero-width space, byte order mark,
  soft hyphen, ...), as escapes such as `\u200b` instead, so that a name that differs from another only
  by them (a client id, a topic) does not look the same on the screen.
- `loads_json` parses JSON without NaN or Infinity (Python's json accepts them) and without the
  RecursionError of deep nesting.
- `clean_status` checks every field of a role status by type and range: a field that does not fit is
  dropped and counted, never raised. Unknown fields are kept, cleaned and depth-bounded.

Nothing here imports textual (engine rule).
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable
from typing import Any

# C0 controls (tab and newline included: every field here is one line), DEL, C1 controls, and the
# bidirectional marks, embeddings, overrides and isolates.
_UNSAFE_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_UNSAFE_MULTILINE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# What `visible_text` escapes: the above, and the characters that show as nothing (or as a blank) on a
# terminal: soft hyphen, combining grapheme joiner, Arabic letter mark, Hangul fillers, Khmer inherent
# vowels, Mongolian variation selectors and vowel separator, zero-width space and joiners, line and
# paragraph separators, word joiner and invisible operators, the blank braille pattern, variation
# selectors, byte order mark, interlinear annotation marks, tag characters; and the emoji skin-tone
# modifiers, which the layout counts as part of the emoji before them (no cells of their own, or none at
# all alone) and a terminal that does not join them (tmux) draws two cells wide, pushing a row's border
# out of place.
_HIDDEN_CHARS = re.compile(
    "[\x00-\x1f\x7f-\x9f\xad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    "\u2028-\u202e\u2060-\u206f\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb"
    "\U0001f3fb-\U0001f3ff\U000e0000-\U000e007f\U000e0100-\U000e01ef]"
)
_HIDDEN_MULTILINE = re.compile(_HIDDEN_CHARS.pattern.replace("\x00-\x1f", "\x00-\x08\x0b-\x1f", 1))
_CUT_ESCAPE = re.compile(r"\\(?:x[0-9a-f]?|u[0-9a-f]{0,3}|U[0-9a-f]{0,7})?$")
TEXT_LIMIT = 300
MAX_DEPTH = 8  # nesting kept of unknown status fields


def clean_text(value: object, limit: int = TEXT_LIMIT, *, multiline: bool = False) -> str:
    """`value` as a string that is safe to show on a terminal: no control or bidi characters, bounded."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit * 4:
        text = text[: limit * 4]
    text = (_UNSAFE_MULTILINE if multiline else _UNSAFE_CHARS).sub("", text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def visible_text(value: object, limit: int = TEXT_LIMIT, *, exact: bool = False, multiline: bool = False) -> str:
    """`value` as one line that is safe to show and shows what it holds: every control, bidirectional or
    invisible character as an escape (`\x1b`, `\u200b`), bounded. Text without them is left as it is.

    `exact`: a backslash is escaped too (`\\`), so that two texts never give the same result within the
    limit (a name made of the escape's own characters, `infer\u200b-1` typed out, is another name).
    `multiline`: newlines and tabs are kept (a payload)."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit * 4:
        text = text[: limit * 4]
    if exact:
        text = text.replace("\\", "\\\\")
    text = (_HIDDEN_MULTILINE if multiline else _HIDDEN_CHARS).sub(_escape, text)
    if len(text) > limit:
        head = text[: limit - 1]
        cut = _CUT_ESCAPE.search(head)  # an escape cut in half (`\u20`) goes whole
        text = (head[: cut.start()] if cut else head) + "…"
    return text


def is_clean(text: str) -> bool:
    """True when `text` holds no character that `clean_text` would remove (newline and tab allowed)."""
    return _UNSAFE_MULTILINE.search(text) is None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# One decoder of each kind, made once: json.loads with an argument builds a new JSONDecoder every call,
# which cost about as much as parsing a result.
_FINITE_DECODER = json.JSONDecoder(parse_constant=_no_constant)
_DECODER = json.JSONDecoder()
_ENCODER = json.JSONEncoder(ensure_ascii=False)


def loads_json(data: bytes | str, *, non_finite: bool = False) -> Any:
    """json.loads, by default without NaN/Infinity; ValueError for bad JSON, too deep nesting or bad UTF-8.

    `non_finite`: parse NaN and Infinity as floats (for a status, whose checks drop just that field).
    """
    if isinstance(data, (bytes, bytearray)):  # as json.loads does: UTF-8, -16 or -32 by the first bytes
        data = data.decode(json.detect_encoding(data), "surrogatepass")
    elif not isinstance(data, str):
        raise ValueError(f"JSON must be text, not {type(data).__name__}")
    if data.startswith("\ufeff"):
        raise ValueError("JSON starts with a byte order mark")
    try:
        return (_DECODER if non_finite else _FINITE_DECODER).decode(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def json_object(payload: bytes, *, non_finite: bool = False) -> dict[str, Any] | None:
    """A JSON object from a payload; None for anything else."""
    try:
        data = loads_json(payload, non_finite=non_finite)
    except ValueError:  # UnicodeDecodeError is a ValueError
        return None
    return data if isinstance(data, dict) else None


# ----------------------------------------------------------------------------------------------------
# checks of one value: each returns the value to keep or raises _Bad


class _Bad(Exception):
    pass


def _number(value: Any, low: float = 0.0, high: float = 1e18) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Bad
    if isinstance(value, float) and not math.isfinite(value):
        raise _Bad
    if not low <= value <= high:
        raise _Bad
    return value


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise _Bad
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _Bad
    return clean_text(value)


def _reason(value: Any) -> str:
    """Why a role stopped: text, or any other JSON value (a number, an object) as its JSON text, so that an
    `error` status still says why. Encoded lazily and cut: an object of any size costs TEXT_LIMIT pieces."""
    if isinstance(value, str):
        return clean_text(value)
    pieces = _ENCODER.iterencode(value)
    try:
        text = "".join(itertools.islice(pieces, TEXT_LIMIT + 1))  # each piece is a character or more
    except (RecursionError, TypeError, ValueError):
        raise _Bad from None
    return clean_text(text)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad
    return value


def _qos(value: Any) -> int:
    if isinstance(value, bool) or value not in (0, 1, 2):
        raise _Bad
    return int(value)


def _numbers(value: Any) -> dict[str, float | None]:
    """A small dict of name -> number or null (latency percentiles, stage times)."""
    if not isinstance(value, dict) or len(value) > 32:
        raise _Bad
    return {clean_text(k, 40): (None if v is None else _number(v)) for k, v in value.items()}


def _counts(value: Any) -> dict[str, int]:
    if not isinstance(value, dict) or len(value) > 1000:
        raise _Bad
    return {clean_text(k, 80): _count(v) for k, v in value.items()}


def _confusion(value: Any) -> list[list[int]]:
    if not isinstance(value, list) or len(value) != 10:
        raise _Bad
    rows = []
    for row in value:
        if not isinstance(row, list) or len(row) != 10:
            raise _Bad
        rows.append([_count(v) for v in row])
    return rows


def _last(value: Any) -> dict[str, Any]:
    """The publisher's last image: {id, label, name, png (base64)}."""
    if not isinstance(value, dict):
        raise _Bad
    label = value.get("label")
    if label is not None and (isinstance(label, bool) or label not in range(10)):
        label = None
    png = value.get("png")
    return {
        "id": clean_text(value.get("id"), 80) if value.get("id") is not None else None,
        "label": label,
        "name": clean_text(value.get("name"), 120) if value.get("name") is not None else None,
        "png": png if isinstance(png, str) and len(png) <= 100_000 else None,
    }


_FIELDS: dict[str, Callable[[Any], Any]] = {
    # every role
    "role": _text, "id": _text, "state": lambda v: clean_text(_text(v), 40), "host": _text,
    "reason": _reason, "pid": _count, "ts": _number, "uptime": _number, "connected": _flag, "subscribed": _flag,
    "sessions_lost": _count,
    # input
    "dataset": _text, "size": _count, "sent": _count, "rate": _number, "rate_actual": _number, "qos": _qos,
    "order": _text, "loop": _flag, "remaining": _count, "errors": _count, "last": _last, "pace": _flag,
    "paced": _number, "no_subscriber": _count,
    # infer
    "model": _text, "received": _count, "processed": _count, "queue": _count, "queue_peak": _count, "queue_max": _count,
    "queue_full": _flag, "dropped": _count, "shed": _count, "expired": _count, "backlogs_dropped": _count,
    "intake_pauses": _count, "batch_mean": _number, "max_batch": _count,
    "max_delay_ms": _number, "max_wait": _number, "loads": _count, "warmup_ms": _number,
    "lat_ms": _numbers, "stages_ms": _numbers, "group": _text,
    # output
    "labelled": _count, "correct": _count, "accuracy": lambda v: _number(v, 0.0, 1.0),
    "duplicates": _count, "legacy": _count, "malformed": _count, "per_worker": _counts,
    "confusion": _confusion,
}

# What a status's numbers mean, for a reader that has to tell them apart (the console's plot): its clocks (a
# time of day, the time since the role started) and its counts, which only ever rise, by any pace (`sent` and
# `processed` rise a second a second at 1 image/s, and are no clocks).
STATUS_CLOCKS = frozenset({"ts", "uptime"})
STATUS_COUNTS = frozenset(name for name, check in _FIELDS.items() if check is _count)


def _deep_clean(value: Any, depth: int = 0) -> Any:
    """An unknown field: strings cleaned, non-finite numbers gone, nesting and size bounded."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise _Bad
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if depth >= MAX_DEPTH:
        raise _Bad
    if isinstance(value, list):
        return [_deep_clean(v, depth + 1) for v in value[:100]]
    if isinstance(value, dict):
        return {clean_text(k, 80): _deep_clean(v, depth + 1) for k, v in list(value.items())[:100]}
    raise _Bad


def clean_status(data: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """A status with every field checked: (the fields that fit, how many were dropped).

    Known fields must have their type and range (counts are non-negative integers, numbers finite and
    non-negative, `qos` 0-2, ...); null is accepted for any of them but `state`. A field that does not
    fit is dropped and counted; nothing here raises. A `reason` that is not text is kept as its JSON text.
    """
    out: dict[str, Any] = {}
    bad = 0
    for key, value in list(data.items())[:200]:
        name = clean_text(key, 80)
        check = _FIELDS.get(name)
        try:
            if value is None and name != "state":
                out[name] = None
            elif check is not None:
                out[name] = check(value)
            else:
                out[name] = _deep_clean(value)
        except (_Bad, TypeError, ValueError, OverflowError):
            bad += 1
    bad += max(0, len(data) - 200)
    return out, bad


def clean_probs(value: Any) -> list[float] | None:
    """Ten finite probabilities in [0, 1], or None."""
    if not isinstance(value, list) or len(value) != 10:
        return None
    if all(type(v) is float and 0.0 <= v <= 1.0 for v in value):  # the common case (NaN fails the range)
        return value
    try:
        return [float(_number(v, 0.0, 1.0)) for v in value]
    except _Bad:
        return None


def clean_number(value: Any, low: float = -math.inf, high: float = math.inf) -> float | None:
    """A finite number in [low, high], or None (an integer of hundreds of digits too, which JSON allows and
    no float holds)."""
    try:
        return float(_number(value, low, high))
    except (_Bad, OverflowError):
        return None
