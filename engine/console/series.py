"""Numbers over time from a topic's messages: the payload itself, or a number field of a JSON payload."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from engine.console.payload_diff import flatten
from engine.untrusted import STATUS_CLOCKS, STATUS_COUNTS, clean_number, loads_json

VALUE = "(value)"  # the field name of a payload that is a number itself
MAX_FIELDS = 50


def _parse(payload: bytes) -> Any:
    try:
        text = payload.decode("utf-8").strip()
        if not text or len(text) > 65_536:
            return None
        return loads_json(text)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def _is_number(value: Any) -> bool:
    return clean_number(value) is not None


def number_fields(payloads: Iterable[bytes]) -> list[str]:
    """The numeric fields seen in `payloads` (VALUE for a bare number), in the order first seen."""
    seen: dict[str, None] = {}
    for payload in payloads:
        value = _parse(payload)
        if _is_number(value):
            seen.setdefault(VALUE, None)
        elif isinstance(value, (dict, list)):
            for key, leaf in flatten(value).items():
                if _is_number(leaf):
                    seen.setdefault(key, None)
        if len(seen) >= MAX_FIELDS:
            break
    return list(seen)[:MAX_FIELDS]


def series(messages: Iterable[tuple[float, bytes]], field: str) -> tuple[list[float], list[float]]:
    """(times, values) of `field` in (time, payload) pairs; messages without it are skipped."""
    times: list[float] = []
    values: list[float] = []
    for t, payload in messages:
        value = _parse(payload)
        if field != VALUE:
            value = flatten(value).get(field) if isinstance(value, (dict, list)) else None
        if _is_number(value):
            times.append(t)
            values.append(float(value))
    return times, values


PLAIN_RANGE = (1e-12, 1e15)  # largest magnitudes a terminal plot draws as they are (plotext: none past ~1e50)


def for_plot(values: Sequence[float]) -> tuple[list[float], int]:
    """`values` divided by 10**exponent, and the exponent (0: as they are), so that a terminal plot can draw
    them: plotext draws nothing when the largest magnitude is past about 1e50 or the numbers are tiny
    (1e-300), and fails outright near 1e308 (an overflow to infinity). Any client may publish such a number."""
    top = max((abs(v) for v in values), default=0.0)
    low, high = PLAIN_RANGE
    if top == 0.0 or low <= top <= high:
        return list(values), 0
    exponent = math.floor(math.log10(top))
    half = exponent // 2  # in two steps: 10.0 ** -324 is 0, and 10.0 ** 309 overflows
    first, second = 10.0 ** half, 10.0 ** (exponent - half)
    return [v / first / second for v in values], exponent


def y_limits(values: Sequence[float]) -> tuple[float, float] | None:
    """The y axis for `values` where a terminal plot's own would mislead: values that are all 0 (a counter that
    has not moved: `dropped`, `errors`) get 0 to 1, where plotext spans -1 to 1, negative values no count ever
    has. None elsewhere: plotext then spans the values, and a flat line at c from c/2 to 3c/2, across no zero."""
    if values and all(v == 0 for v in values):
        return 0.0, 1.0
    return None


UNIX_TIMES = (1e9, 1e10)  # seconds since 1970 from 2001 to 2286: a field of such values is a clock
CLOCK_PACES = ((0.8, 1.25), (800.0, 1250.0))  # a second (or 1,000 ms) a second: the pace of a clock
# Words of a name that says its number follows wall time (`timestamp`, `uptime_ms`, `upTime`, `elapsed_s`,
# `seconds_since_boot`), besides a status's own clocks (engine.untrusted.STATUS_CLOCKS)
CLOCK_WORDS = frozenset({"t", "ts", "time", "timestamp", "stamp", "uptime", "up", "runtime", "elapsed", "age",
                         "since", "clock", "epoch", "now", "date"})


class Changes(NamedTuple):
    """What changes over a topic's newest messages, of the fields asked about."""

    varying: frozenset[str]  # fields whose value changes
    clocks: frozenset[str]  # clocks: a Unix time (changing or not), or one named as a clock rising a second a second
    present: frozenset[str]  # fields with a number in those messages


def changes(messages: Sequence[tuple[float, bytes]], fields: Sequence[str], newest: int = 50) -> Changes:
    """Which of `fields` change over the `newest` of `messages`, and which are clocks. Each payload is parsed
    once."""
    first: dict[str, tuple[float, float]] = {}  # field -> (arrival, value) of its first number
    last: dict[str, tuple[float, float]] = {}
    rising: set[str] = set()  # never went down
    varying: set[str] = set()
    wanted = set(fields)
    for t, payload in messages[-newest:]:
        value = _parse(payload)
        flat = {VALUE: value} if _is_number(value) else flatten(value) if isinstance(value, (dict, list)) else {}
        for field in wanted.intersection(flat):
            number = flat[field]
            if not _is_number(number):
                continue
            number = float(number)
            if field not in first:
                first[field] = (t, number)
                rising.add(field)
            elif number != first[field][1]:
                varying.add(field)
            if field in last and number < last[field][1]:
                rising.discard(field)
            last[field] = (t, number)
    clocks = {field for field in first
              if _is_clock(field, first[field], last[field], field in rising and field in varying)}
    return Changes(frozenset(varying), frozenset(clocks), frozenset(first))


def is_identifier(field: str) -> bool:
    """A number that names something (`pid`, `id`, `sensor_id`), not a quantity."""
    name = field.rsplit(".", 1)[-1].lower()
    return name in ("id", "pid") or name.endswith("_id")


def opening(fields: Sequence[str], seen: Changes) -> int:
    """The index of the field of `fields` that a plot opens on, from what `changes` found: the first that changes
    and is neither a clock nor an identifier (a constant such as a status's `pid` is a flat line, and a clock
    such as its `ts` or `uptime` a climb that says nothing). Where only clocks change (an idle worker: `ts`,
    `uptime`), the first such field, constant as it is (`received`, not `ts`); then an identifier; where every
    field is a clock, the first that changes (0 if none does)."""
    varying, clocks, present = seen
    rules = (lambda f: f in varying and f not in clocks and not is_identifier(f),
             lambda f: f in present and f not in clocks and not is_identifier(f),
             lambda f: f in present and f not in clocks,
             lambda f: f in varying)
    return next((i for rule in rules for i, field in enumerate(fields) if rule(field)), 0)


def is_clock_name(field: str) -> bool:
    """A name that says its number follows wall time: a status's `ts` and `uptime`, or a name (of the last
    level) with a word of CLOCK_WORDS, split at `_`, `-` and camelCase; never a status's count (`sent`,
    `processed`, `received`)."""
    name = field.rsplit(".", 1)[-1]
    if name in STATUS_COUNTS:
        return False
    if name in STATUS_CLOCKS:
        return True
    words = re.split(r"[_\-\s]+|(?<=[a-z0-9])(?=[A-Z])", name)
    return any(word.lower() in CLOCK_WORDS for word in words)


def _is_clock(field: str, first: tuple[float, float], last: tuple[float, float], rising: bool) -> bool:
    """A clock: a Unix time (anything but a status's count: `sent` may pass a billion), or a field whose name
    says it is one (`is_clock_name`) rising at a clock's pace. A count that rises about one a second (`sent`
    and `processed` at 1 image/s) has that pace too: its name, not its pace, tells it apart. `rising`: it
    changed, and never went down."""
    name = field.rsplit(".", 1)[-1]
    low, high = UNIX_TIMES
    if low <= first[1] < high and name not in STATUS_COUNTS:
        return True
    elapsed = last[0] - first[0]
    if not rising or elapsed <= 0 or not is_clock_name(field):
        return False
    pace = (last[1] - first[1]) / elapsed
    return any(slow <= pace <= fast for slow, fast in CLOCK_PACES)
