"""Small text formatters shared by the panes: counts, rates, times, sizes."""

from __future__ import annotations

import time

from rich.cells import cell_len


def count(n: int | float | None) -> str:
    """12,345 (or "-" for None)."""
    if n is None:
        return "-"
    return f"{int(n):,}"



def plural(n: int, noun: str) -> str:
    """1 topic, 2 topics, 12,345 topics."""
    return f"{count(n)} {noun}{'' if n == 1 else 's'}"

def short_count(n: int | float | None) -> str:
    """At most five characters: 9,999, 12.3k, 123k, 1.2M, 12M (or "-" for None)."""
    if n is None:
        return "-"
    n = int(n)
    if abs(n) < 10_000:
        return f"{n:,}"
    for unit, scale in (("k", 1_000), ("M", 1_000_000), ("G", 1_000_000_000)):
        value = n / scale
        if abs(value) < 99.95:
            return f"{value:.1f}{unit}"
        if abs(value) < 999.5:
            return f"{value:.0f}{unit}"
    return f"{n / 1e12:.0f}T"


def rate(value: float | None, unit: str = "/s") -> str:
    """98.7/s, 1,234/s, 12.3k/s."""
    if value is None:
        return "-"
    if value >= 100_000:
        return f"{value / 1000:.0f}k{unit}"
    if value >= 10_000:
        return f"{value / 1000:.1f}k{unit}"
    if value >= 100:
        return f"{value:,.0f}{unit}"
    return f"{value:.1f}{unit}"


def set_rate(value: float | None) -> str:
    """The publisher's set rate: 0 means as fast as it can."""
    if value is None:
        return "-"
    if value == 0:
        return "max"
    return f"{value:,g}/s" if value < 10_000 else f"{value:,.0f}/s"


def ms(value: float | None) -> str:
    """A latency in milliseconds: 0.42 ms, 3.1 ms, 125 ms, 1.2 s."""
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value / 1000:.1f} s"
    if value >= 100:
        return f"{value:.0f} ms"
    if value >= 1:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


def size(n: int) -> str:
    """Bytes: 268 B, 12.3 KiB, 1.0 MiB."""
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024 / 1024:.1f} MiB"


def short_size(n: int) -> str:
    """Bytes in at most four characters, for a narrow column: 268B, 9.9K, 293K, 1.0M (KiB, MiB, GiB)."""
    if n < 1000:
        return f"{n}B"
    value = n / 1024
    for unit in ("K", "M", "G"):
        if value < 9.95:
            return f"{value:.1f}{unit}"
        if value < 999.5:
            return f"{value:.0f}{unit}"
        value /= 1024
    return f"{value:.1f}T"


def clock(t: float, millis: bool = True) -> str:
    """Local time of day: 14:03:07.123."""
    lt = time.localtime(t)
    text = time.strftime("%H:%M:%S", lt)
    return f"{text}.{int((t % 1) * 1000):03d}" if millis else text


def duration(seconds: float) -> str:
    """3 s, 4 min, 2 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


def percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{fraction * 100:.2f}%"


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: tuple[float, ...] | list[float], width: int) -> str:
    """The last `width` values as block characters, scaled to their maximum."""
    tail = list(values)[-width:]
    if not tail:
        return ""
    top = max(tail)
    if top <= 0:
        return SPARKS[0] * len(tail)
    return "".join(SPARKS[min(len(SPARKS) - 1, int(v / top * (len(SPARKS) - 1) + 0.5))] for v in tail)


def ellipsize_left(text: str, width: int) -> str:
    """Keep the end of an id (its sequence number) when it does not fit: …1a2b-42."""
    if len(text) <= width:
        return text
    return "…" + text[-(width - 1):] if width > 1 else text[-width:]


def middle_cut(text: str, cells: int) -> tuple[int, int]:
    """Where to cut `text` (wider than `cells`, at least 2) to keep its start and its end around an ellipsis:
    (end of the head, start of the tail), so that `text[:head] + "…" + text[tail:]` takes at most `cells` cells.
    Ids that differ at the end (`infer-vm-6597`, `infer-vm-6598`) still do (`infer…6597`). Counted in cells:
    a wide character (CJK, most emoji) takes two and is never cut in half; the tail gets the odd cell, and
    a cell a wide character cannot use goes to the other side."""
    budget = max(cells - 1, 0)
    head, used = 0, 0
    while head < len(text) and used + cell_len(text[head]) <= budget // 2:
        used += cell_len(text[head])
        head += 1
    tail = len(text)
    while tail > head and used + cell_len(text[tail - 1]) <= budget:
        used += cell_len(text[tail - 1])
        tail -= 1
    while head < tail and used + cell_len(text[head]) <= budget:  # what the tail left
        used += cell_len(text[head])
        head += 1
    return head, tail


def middle(text: str, cells: int) -> str:
    """`text` in at most `cells` cells: whole when it fits, else its start and end around an ellipsis
    (`middle_cut`)."""
    if cell_len(text) <= cells:
        return text
    head, tail = middle_cut(text, cells)
    return text[:head] + "…" + text[tail:]


def buckets(times: tuple[float, ...] | list[float], values: tuple[float | None, ...] | list[float | None],
            now: float, window: float, width: int) -> list[float | None]:
    """`values` (taken at `times`) over the last `window` seconds, as `width` bucket means, oldest first;
    None for a bucket without any value."""
    sums = [0.0] * width
    counts = [0] * width
    start = now - window
    for t, v in zip(times, values, strict=False):
        if v is None or t < start:
            continue
        i = min(width - 1, int((t - start) / window * width))
        sums[i] += v
        counts[i] += 1
    return [s / n if n else None for s, n in zip(sums, counts, strict=True)]


def time_sparkline(times: tuple[float, ...] | list[float], values: tuple[float | None, ...] | list[float | None],
                   now: float, window: float, width: int) -> str:
    """A sparkline of the last `window` seconds in `width` characters (a blank where nothing came),
    scaled to the largest bucket."""
    means = buckets(times, values, now, window, width)
    top = max((m for m in means if m is not None), default=0.0)
    out = []
    for m in means:
        if m is None:
            out.append(" ")
        elif top <= 0:
            out.append(SPARKS[0])
        else:
            out.append(SPARKS[min(len(SPARKS) - 1, int(m / top * (len(SPARKS) - 1) + 0.5))])
    return "".join(out)
