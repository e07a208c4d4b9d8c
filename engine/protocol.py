"""The wire format (docs/PROTOCOL.md): PNG metadata chunks, result JSON, legacy results, commands."""

from __future__ import annotations

import json
import math
import re
import struct
import zlib
from dataclasses import dataclass
from typing import Any, NamedTuple

from engine.untrusted import clean_number, clean_probs, clean_text, loads_json, visible_text

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
META_KEYWORD = b"mnist"
_META_CHUNK = b"tEXt" + META_KEYWORD + b"\x00"  # chunk type, keyword, separator
_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_LEGACY = re.compile(r"^\s*tensor\(\[\s*(\d)\s*\]\)\s*$")


class ImageMeta(NamedTuple):
    """What an image's `mnist` chunk says (a tuple: made for every image, so cheap to make)."""

    id: str | None = None
    label: int | None = None
    t: float | None = None
    src: str | None = None


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def embed_meta(png: bytes, meta: dict[str, Any]) -> bytes:
    """Return `png` with one tEXt chunk `mnist` = compact JSON spliced in just before IEND.

    No pixel is re-encoded and the result stays a valid PNG. `png` must end with a standard IEND chunk.
    """
    text = json.dumps(meta, separators=(",", ":"), ensure_ascii=True).encode("latin-1")
    if png.endswith(_IEND):
        return png[: -len(_IEND)] + _chunk(b"tEXt", META_KEYWORD + b"\x00" + text) + _IEND
    raise ValueError("not a PNG ending in IEND")


class MetaStamp:
    """`embed_meta` for the images of one source, numbered: `stamp(png, seq, label, t)` is
    `embed_meta(png, {"id": f"{id_prefix}{seq}", "label": label, "t": t, "src": src})`, byte for byte.

    The publisher and the bench's generator stamp thousands of images a second; this builds the JSON around
    the number, the label and the time once, and the chunk's CRC from the keyword's, so an image costs
    about a quarter of what `json.dumps` and a fresh chunk took (3 against 12 us).
    """

    def __init__(self, id_prefix: str, src: str) -> None:
        self.id_prefix = id_prefix
        self.src = src
        quoted = json.dumps(id_prefix, ensure_ascii=True)[:-1]  # '"prefix', the id's number follows
        self._head = ('{"id":' + quoted).encode("ascii")
        self._tail = (',"src":' + json.dumps(src, ensure_ascii=True) + "}").encode("ascii")
        self._crc = zlib.crc32(_META_CHUNK)

    def stamp(self, png: bytes, seq: int, label: int | None, t: float) -> bytes:
        plain = type(seq) is int and (label is None or type(label) is int) and type(t) is float and math.isfinite(t)
        if not plain:  # what json.dumps writes otherwise (a bool label, an infinite time) is its own
            return embed_meta(png, {"id": f"{self.id_prefix}{seq}", "label": label, "t": t, "src": self.src})
        if not png.endswith(_IEND):
            raise ValueError("not a PNG ending in IEND")
        middle = f'{seq}","label":{"null" if label is None else label},"t":{t!r}'.encode("ascii")
        text = self._head + middle + self._tail
        crc = zlib.crc32(text, self._crc)
        size = len(_META_CHUNK) - 4 + len(text)  # the chunk's length counts the keyword, not its type
        return b"".join((png[: -len(_IEND)], size.to_bytes(4, "big"), _META_CHUNK, text, crc.to_bytes(4, "big"),
                         _IEND))


def has_meta(payload: bytes) -> bool:
    """A cheap first look (no parsing): a PNG with an `mnist` chunk, whose metadata may hold an id."""
    return payload.startswith(PNG_SIGNATURE) and _META_CHUNK in payload


# A metadata object that is flat and plain, as the input role and the bench write it: keys and string values
# without escapes or control characters, JSON numbers, true, false, null, no whitespace. For such an object a
# key's last value (json.loads keeps the last of repeated keys) is found without parsing, about 2 us against
# 5 for json.loads and ImageMeta; anything else is parsed as JSON.
_STR = rb'"[^"\\\x00-\x1f]*"'
_NUM = rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?"
_VALUE = rb"(?:" + _STR + rb"|" + _NUM + rb"|true|false|null)"
_FLAT = re.compile(rb"\{(?:" + _STR + rb":" + _VALUE + rb"(?:," + _STR + rb":" + _VALUE + rb")*)?\}")
_NUMBER = re.compile(_NUM)
_LONGEST_FLAT = 1024  # longer (an integer of thousands of digits, which json.loads refuses): parsed


def _meta_bytes(payload: bytes) -> bytes | None:
    """The JSON bytes of the `mnist` chunk, or None when the payload has none."""
    if not payload.startswith(PNG_SIGNATURE):
        return None
    # Our chunk sits right before IEND: look for it from the end first, which is O(1) for our images.
    pos = payload.rfind(_META_CHUNK)
    if pos < 12:
        return None
    length = int.from_bytes(payload[pos - 4 : pos], "big") - len(META_KEYWORD) - 1
    start = pos + len(_META_CHUNK)
    data = payload[start : start + length]
    if length < 0 or len(data) != length:
        return None
    return data


def published_at(payload: bytes) -> float | None:
    """`extract_meta(payload).t`, the time the image says it was published, read without parsing the rest
    of the metadata when it is flat and plain (see _FLAT): a worker asks it of every image it may skip."""
    data = _meta_bytes(payload)
    if data is None:
        return None
    if len(data) > _LONGEST_FLAT or _FLAT.fullmatch(data) is None:
        return extract_meta(payload).t
    # In a flat object no string holds a quote, so `"t":` is found only as a key: the last one counts
    pos = data.rfind(b'"t":')
    found = _NUMBER.match(data, pos + 4) if pos >= 0 else None
    if found is None:  # no time, or not a number
        return None
    value = found.group()
    return _clean_time(float(value) if b"." in value or b"e" in value or b"E" in value else int(value))


def extract_meta(payload: bytes) -> ImageMeta:
    """Metadata from the `mnist` tEXt chunk; an empty ImageMeta when absent or unreadable (never raises)."""
    data = _meta_bytes(payload)
    if data is None:
        return ImageMeta()
    try:
        raw = json.loads(data.decode("latin-1"))
    except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
        return ImageMeta()
    if not isinstance(raw, dict):
        return ImageMeta()
    return ImageMeta(
        id=_clean_str(raw.get("id")),
        label=_clean_label(raw.get("label")),
        t=_clean_time(raw.get("t")),
        src=_clean_str(raw.get("src")),
    )


def _clean_str(value: Any, max_len: int = 128) -> str | None:
    """A text field of metadata or a result (id, src, worker, model), at most `max_len` characters; one with
    a control, bidirectional or invisible character is kept with it escaped (`\\u200d`), as it is shown
    everywhere else, instead of being dropped: an id with a ZWJ emoji was shown as `-` and lost in the CSV."""
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        text = str(value)
        if text.isprintable():
            return text[:max_len] or None
        return visible_text(text, max_len)
    return None


def _clean_label(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 9:
        return value
    return None


clean_meta_text = _clean_str  # for metadata that comes another way (MQTT 5 user properties)
clean_meta_label = _clean_label


def _clean_time(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1e11:
        return float(value)
    return None


@dataclass
class Result:
    """One result as the collector sees it, from our JSON or from the original demo's text."""

    id: str | None
    pred: int | None
    label: int | None = None
    conf: float | None = None
    probs: list[float] | None = None
    error: str | None = None
    worker: str | None = None
    model: str | None = None
    src: str | None = None
    t_sent: float | None = None
    t_recv: float | None = None
    t_done: float | None = None
    batch: int | None = None
    legacy: bool = False

    @property
    def correct(self) -> bool | None:
        if self.pred is None or self.label is None:
            return None
        return self.pred == self.label


def parse_result(payload: bytes) -> Result:
    """Parse a result payload; raises ValueError with a one-line reason when it is neither format."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("result is not UTF-8") from None
    legacy = _LEGACY.match(text)
    if legacy:
        return Result(id=None, pred=int(legacy.group(1)), legacy=True)
    try:
        raw = loads_json(text)
    except ValueError:
        raise ValueError(f"result is neither JSON nor tensor([d]): {clean_text(text, 40)!r}") from None
    if not isinstance(raw, dict):
        raise ValueError("result JSON is not an object")
    pred = raw.get("pred")
    error = raw.get("error")
    if error is None and (isinstance(pred, bool) or not (isinstance(pred, int) and 0 <= pred <= 9)):
        raise ValueError("result has neither a pred 0-9 nor an error")
    probs = raw.get("probs")
    batch = raw.get("batch")
    return Result(
        id=_clean_str(raw.get("id")),
        pred=pred if error is None else None,
        label=_clean_label(raw.get("label")),
        conf=clean_number(raw.get("conf"), 0.0, 1.0),
        probs=clean_probs(probs),
        error=visible_text(error) if error is not None else None,  # what it holds, escaped
        worker=_clean_str(raw.get("worker")),
        model=_clean_str(raw.get("model")),
        src=_clean_str(raw.get("src")),
        t_sent=_clean_time(raw.get("t_sent")),
        t_recv=_clean_time(raw.get("t_recv")),
        t_done=_clean_time(raw.get("t_done")),
        batch=batch if isinstance(batch, int) and not isinstance(batch, bool) else None,
    )


class CommandError(ValueError):
    """A control command that is malformed, unknown or out of range: answered, never fatal."""


def parse_command(payload: bytes) -> tuple[str, dict[str, Any], Any]:
    """(cmd, args, req) from a control payload; raises CommandError with a one-line reason."""
    try:
        raw = json.loads(payload.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError; RecursionError: deep nesting
        raise CommandError(f"command is not JSON: {payload[:40]!r}") from None
    if not isinstance(raw, dict):
        raise CommandError("command must be a JSON object like {\"cmd\": \"start\"}")
    req = raw.pop("req", None)
    cmd = raw.pop("cmd", None)
    if not isinstance(cmd, str) or not cmd:
        raise CommandError("command has no \"cmd\" string")
    return cmd, raw, req if isinstance(req, (str, int)) else None


def number_arg(args: dict[str, Any], name: str, low: float, high: float, default: float | None = None) -> float:
    """A numeric command argument within [low, high]; CommandError otherwise."""
    value = args.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CommandError(f"{name} must be a number between {low:g} and {high:g}")
    if not low <= value <= high:
        raise CommandError(f"{name} {value:g} out of range {low:g}..{high:g}")
    return float(value)
