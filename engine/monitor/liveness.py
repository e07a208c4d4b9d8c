"""Whether a role's latest status says it is alive now, for `health` and `metrics`.

A status is retained, so the broker hands out the last one a role sent long after the role is gone: a role
that died while the broker was down (its last will never published), a stray status someone retained by
hand, one left over from before a broker restart with persistence. Roles send a status about once a second
(docs/PROTOCOL.md), so a role counts as alive only while its status says a state a connected role says and
it was heard recently: sent live to this watcher, or retained with a `ts` (the sender's clock) a few seconds
old. A live status beats the clock, so a role on a host whose clock is off is still seen once it sends. A
retained `ts` more than `SILENT_AFTER` ahead of this clock says nothing of the status's age: it counts as no
time at all, or a role that died on a host whose clock runs an hour ahead (or a status retained by hand with
a time to come) would be alive to every watcher that starts within that hour.

Nothing here imports textual.
"""

from __future__ import annotations

import math
from typing import Any

LIVE_STATES = ("running", "stopped", "error")  # what a connected role says; "offline" is its last will
SILENT_AFTER = 10.0  # seconds without a status before a role counts as silent (they send one a second)


def state_of(status: dict[str, Any]) -> str:
    """The role's state as a short word: "offline" for a last will, "unknown" for anything not in the protocol."""
    if status.get("connected") is False:
        return "offline"
    state = status.get("state")
    if state == "offline" or state in LIVE_STATES:
        return str(state)
    return "unknown"


def heard_at(status: dict[str, Any], retained: bool, now: float, wall: float) -> float:
    """When (on the clock `now` reads) the role was last known to send: now for a status that came live, the
    status's own `ts` for a retained one (-inf when it has none, or one further ahead of `wall` than
    `SILENT_AFTER`), never later than now."""
    if not retained:
        return now
    if not has_time(status):
        return -math.inf
    age = wall - float(status["ts"])
    return now - max(0.0, age) if age >= -SILENT_AFTER else -math.inf


def heard_again(before: float | None, status: dict[str, Any], retained: bool, now: float, wall: float) -> float:
    """`heard_at` for a role last heard at `before` (None: never): a retained status seen again (the broker
    sends them anew after a reconnect) never makes a role heard earlier than it was, as one whose ts is older
    than what came live (its clock runs behind) would."""
    heard = heard_at(status, retained, now, wall)
    return heard if before is None else max(before, heard)


def has_time(status: dict[str, Any]) -> bool:
    """Whether the status has a `ts` at all (one `heard_at` could not use was then ahead of this clock)."""
    ts = status.get("ts")
    return isinstance(ts, (int, float)) and not isinstance(ts, bool) and math.isfinite(ts)


def is_silent(heard: float, now: float) -> bool:
    return now - heard > SILENT_AFTER


def ago(seconds: float) -> str:
    """A duration in a few characters: 12 s, 5 min, 3 h, 2 d."""
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"
