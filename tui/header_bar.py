"""The header line: broker URL, which broker, connection state and MQTT version."""

from __future__ import annotations

import math
from typing import NamedTuple

from textual.markup import escape
from textual.widgets import Static

from engine.observer import Connection, Snapshot

PROTOCOLS = {5: "MQTT 5", 4: "MQTT 3.1.1"}


class BrokerInfo(NamedTuple):
    """What the console knows about the broker besides its connection: given by whoever started it."""

    url: str
    kind: str  # "mosquitto", "python" or "external"
    description: str  # e.g. "mosquitto 2.0.11 (embedded)"


KIND_LABELS = {"mosquitto": "embedded mosquitto", "python": "embedded Python broker", "external": "external broker"}


def retry_text(next_try: float | None, now: float) -> str:
    """", next try in 3 s", counting down in whole seconds rounded up (so never "0 s" while a wait is
    left), then ", trying now" from when the attempt is due until its outcome is known: an attempt on a
    host that does not answer lasts seconds."""
    if not next_try:
        return ""
    left = next_try - now
    if left <= 0:
        return ", trying now"
    return f", next try in {math.ceil(left)} s"


def connection_markup(conn: Connection, now: float, width: int) -> str:
    if conn.state == "connected":
        return "[bold $text-success]●[/] connected"
    if conn.state == "reconnecting":
        wait = retry_text(conn.next_try, now)
        why = f" ({escape(conn.error)})" if conn.error and width >= 110 else ""
        return f"[bold $text-warning]◌ reconnecting{wait}[/]{why}"
    if conn.state == "stopped":
        return "[dim]○ stopped[/]"
    return f"[$text-warning]◌ {conn.state}[/]"


class HeaderBar(Static):
    """One line; updated from snapshots (only when the text changes)."""

    def __init__(self, broker: BrokerInfo, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.broker = broker
        self._last: str | None = None

    def update_snapshot(self, snap: Snapshot) -> None:
        width = self.size.width or 120
        conn = snap.connection
        parts = ["[bold]mnist-tui[/]", escape(self.broker.url)]
        if width >= 100:
            parts.append(escape(self.broker.description))
        elif width >= 70:
            parts.append(escape(KIND_LABELS.get(self.broker.kind, self.broker.kind)))
        parts += [connection_markup(conn, snap.time, width), PROTOCOLS.get(conn.protocol, "MQTT ?")]
        markup = " [dim]│[/] ".join(parts)
        if markup != self._last:
            self._last = markup
            self.update(markup, layout=False)
