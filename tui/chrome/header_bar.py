"""The header line: broker URL, which broker, connection state and MQTT version, as much as fits."""

from __future__ import annotations

import math
from typing import NamedTuple

from textual.content import Content
from textual.markup import escape
from textual.widgets import Static

from engine.console.observer import Connection, Snapshot

PROTOCOLS = {5: "MQTT 5", 4: "MQTT 3.1.1"}
SEPARATOR = " [dim]│[/] "


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


def connection_markup(conn: Connection, now: float, why: bool = True) -> str:
    """The connection state; `why` adds the error of a broker that is away."""
    if conn.state == "connected":
        return "[bold $text-success]●[/] connected"
    if conn.state == "reconnecting":
        wait = retry_text(conn.next_try, now)
        reason = f" ({escape(conn.error)})" if conn.error and why else ""
        return f"[bold $text-warning]◌ reconnecting{wait}[/]{reason}"
    if conn.state == "stopped":
        return "[dim]○ stopped[/]"
    return f"[$text-warning]◌ {conn.state}[/]"


def header_markup(broker: BrokerInfo, conn: Connection, now: float, width: int) -> str:
    """The richest header that fits `width` cells: the broker's description gives way to its kind, then to
    nothing, before the connection state (with its retry countdown) is cut; the error comes only with room."""
    if conn.state == "starting":  # no broker yet (tui/starting.py): say what the console waits for
        return f"[bold]mnist-tui[/]{SEPARATOR}[bold $text-warning]◌ starting:[/] {escape(conn.error or '')}"
    head = ["[bold]mnist-tui[/]", escape(broker.url)]
    description = escape(broker.description)
    kind = escape(KIND_LABELS.get(broker.kind, broker.kind))
    full, short = connection_markup(conn, now), connection_markup(conn, now, why=False)
    protocol = PROTOCOLS.get(conn.protocol, "MQTT ?")
    candidates = (
        [*head, description, full, protocol],
        [*head, description, short, protocol],
        [*head, kind, short, protocol],
        [*head, short, protocol],
        [*head, short],
    )
    for parts in candidates:
        markup = SEPARATOR.join(parts)
        if Content.from_markup(markup).cell_length <= width:
            return markup
    return markup  # the line ends in an ellipsis (see #header in app.tcss)


class HeaderBar(Static):
    """One line; updated from snapshots (only when the text changes)."""

    def __init__(self, broker: BrokerInfo, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.broker = broker
        self._last: str | None = None

    def update_snapshot(self, snap: Snapshot) -> None:
        markup = header_markup(self.broker, snap.connection, snap.time, self.content_size.width or 118)
        if markup != self._last:
            self._last = markup
            self.update(markup, layout=False)
