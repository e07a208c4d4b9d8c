"""The console's table of roles: what each role's retained status says, its recent trend, and the events
its changes make (online, offline, failed, lost session). Bounded; used under the observer's lock."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from engine.console.snapshot import HISTORY, RoleStatus
from engine.topics import Topics
from engine.untrusted import clean_status, clean_text, json_object, visible_text

MAX_ROLES = 1_000  # role entries kept; past it the longest-offline ones go first
FORGET_OFFLINE_AFTER = 3_600.0  # seconds an offline (or silent) role stays listed

AddEvent = Callable[[str, str], None]  # (level, text)


class _RoleState:
    __slots__ = ("role", "id", "state", "data", "received", "history", "history_t", "lat_history", "sessions_lost")

    def __init__(self, role: str, client_id: str) -> None:
        self.role = role
        self.id = client_id
        self.state = "unknown"
        self.data: Mapping[str, Any] = MappingProxyType({})
        self.received = 0.0
        self.history: deque[float] = deque(maxlen=HISTORY)
        self.history_t: deque[float] = deque(maxlen=HISTORY)
        self.lat_history: deque[float | None] = deque(maxlen=HISTORY)
        self.sessions_lost = 0  # the highest `sessions_lost` the role has reported


class RoleTable:
    """Every role heard on the status topics, keyed by (role, client id). Not thread-safe by itself."""

    def __init__(self, topics: Topics, add_event: AddEvent) -> None:
        self.topics = topics
        self._add_event = add_event
        self._roles: dict[tuple[str, str], _RoleState] = {}
        self.ignored = 0  # malformed statuses and status fields
        self.statuses_seen = 0  # status messages read (a console that reads none may lack the right)
        self.forget_after = FORGET_OFFLINE_AFTER
        self.max_roles = MAX_ROLES

    def roles(self) -> tuple[RoleStatus, ...]:
        """An immutable copy, sorted by role, then id."""
        return tuple(
            RoleStatus(e.role, e.id, e.state, e.data, e.received, tuple(e.history), tuple(e.history_t),
                       tuple(e.lat_history))
            for _k, e in sorted(self._roles.items())
        )

    def on_status(self, topic: str, payload: bytes, retain: bool, now: float) -> None:
        self.statuses_seen += 1
        parsed = self.topics.parse_status(topic)
        if parsed is None:
            return
        # Shown as it is: an id that differs from another only by an invisible or control character (a
        # look-alike of a worker) is another role, and looks like one.
        key = (parsed[0], visible_text(parsed[1], 70_000, exact=True))  # one key per id, whole
        if not payload:  # a cleared status: the role is gone from every console
            if self._roles.pop(key, None) is not None:
                self._add_event("information", f"{key[0]} {key[1]} removed")
            return
        raw = json_object(payload, non_finite=True)  # a NaN or Infinity field is dropped and counted below
        if raw is None:
            self.ignored += 1
            return
        data, bad = clean_status(raw)
        self.ignored += bad
        entry = self._roles.get(key)
        prev = entry.state if entry is not None else None
        if entry is None:
            if len(self._roles) >= self.max_roles:
                self.forget(now)
            entry = self._roles[key] = _RoleState(*key)
        state = data.get("state") or "unknown"  # as health says it
        entry.state = state
        entry.data = MappingProxyType(data)
        entry.received = now
        rate = data.get("rate_actual" if key[0] == "input" else "rate")
        if isinstance(rate, (int, float)) and not isinstance(rate, bool) and state != "offline":
            entry.history.append(float(rate))
            entry.history_t.append(now)
            lat = data.get("lat_ms")
            p50 = lat.get("p50") if isinstance(lat, dict) else None
            ok = isinstance(p50, (int, float)) and not isinstance(p50, bool)
            entry.lat_history.append(float(p50) if ok and p50 is not None else None)
        name = f"{key[0]} {key[1]}"
        self._problem_events(name, data, prev, entry, retain)
        if state == "offline" and prev is not None and prev != "offline":
            reason = data.get("reason")
            why = f" ({reason})" if isinstance(reason, str) else ""
            self._add_event("warning", f"{name} went offline{why}")
        # A role in error has said that it failed (`_problem_events`): not also that it is online.
        elif state not in ("offline", "error") and prev == "offline" and not retain:
            self._add_event("information", f"{name} is back online")
        elif prev is None and state not in ("offline", "error") and not retain:
            self._add_event("information", f"{name} is online")

    def forget(self, now: float) -> None:
        """Drop roles offline or silent for `forget_after` seconds; past `max_roles`, the oldest heard."""
        cutoff = now - self.forget_after
        for k in [k for k, e in self._roles.items() if e.received < cutoff]:
            del self._roles[k]
        while len(self._roles) >= self.max_roles:
            oldest = min(self._roles, key=lambda k: (self._roles[k].state != "offline", self._roles[k].received))
            del self._roles[oldest]

    def _problem_events(self, name: str, data: dict[str, Any], prev: str | None, entry: _RoleState,
                        retain: bool) -> None:
        """A role that reports an error (a dead thread) or a lost durable session: one notification each."""
        if data.get("state") == "error" and prev != "error":
            reason = data.get("reason")
            why = clean_text(" ".join(reason.split()), 200) if isinstance(reason, str) else "no reason given"
            self._add_event("error", f"{name} failed: {why}")
        lost = data.get("sessions_lost")
        if isinstance(lost, int) and not isinstance(lost, bool) and lost > entry.sessions_lost:
            if not retain or entry.sessions_lost == 0:
                self._add_event("warning", f"{name} lost its broker session ({lost} so far): "
                                           "what was queued for it while it was away is gone")
            entry.sessions_lost = lost
