"""A publish the broker closes the connection on, each time it reads it (MQTT 3.1.1): given up, not sent for ever.

A broker closes the connection on a packet larger than its maximum packet size. MQTT 5 says that maximum in
the CONNACK, and the console refuses a larger message before it is sent (`check_publish`). MQTT 3.1.1 does not
say it: the message goes out, the broker closes the connection, and paho sends a QoS 1 or 2 message again at
each reconnect, so the console reconnected again and again until quit, its subscriptions down meanwhile.

So, on 3.1.1, the console's own QoS 1 and 2 publishes of the `p` dialog are followed until the broker
acknowledges them. One that was in flight at two connection losses in a row (the broker closed the connection
after it was sent, and again after it was sent at the reconnect) and is larger than any packet the broker has
acknowledged is given up: it leaves the client's outgoing queue (`FastClient.drop_outgoing`), the user is told
in one line (a "refused" verdict), and from then on a message that makes a packet as large is held back before
it is sent (`closed_on`, in the snapshot's `Connection`; only from FLOOR up, see below). One loss alone proves
nothing (a network drops), so the first costs one reconnect and one resend; a message that large is never sent
a third time (unless the user asks).

Only the dialog's publishes: a command, a drawing or a clear is small, and a broker that drops the connection
twice while one waits (restarted, say) must not teach the console that small packets are refused.

What is learned is a guess: some brokers also close the connection on a publish their ACL forbids (EMQX with
`deny_action = disconnect`), and a network may drop twice during a long upload. So:
- nothing under FLOOR is learned. Such a publish is still given up (or it would be sent at every reconnect
  for ever), and said so, but the next message is sent as usual. FLOOR is 64 KiB: what the dialog sends
  otherwise (a typed line, a JSON document, a digit's PNG of about 300 bytes, a drawing) is far smaller, and
  the smallest packet limits of general-purpose brokers are about that size or larger (RabbitMQ's default
  for a CONNECT packet is 65,536 bytes; AWS IoT Core takes 128 KB, Azure IoT Hub 256 KB, EMQX 1 MiB by
  default, mosquitto any size unless configured); a broker set lower is a constrained device's, where each
  message over it costs two reconnects and is given up all the same;
- the words say "too large or refused by the broker", never that the size was the cause;
- what was learned is forgotten when the broker acknowledges a packet at least as large (one in flight
  meanwhile), or when the user sends a message anyway (`forget_limit`: the dialog's second enter).
Used under the observer's lock; nothing here talks to the client.
"""

from __future__ import annotations

from typing import NamedTuple

from engine.console.publish_verdicts import Pending

LOSSES = 2  # connection losses in a row, each with the publish unacknowledged, that give it up
FLOOR = 64 * 1024  # the smallest packet whose size is learned as one the broker closes the connection on


class Outgoing(NamedTuple):
    pending: Pending
    packet: int  # the size of its PUBLISH packet
    mark: int  # `OversizeGuard.losses` before it was handed to the client


class Given(NamedTuple):
    """A publish given up: the broker closed the connection each time it was sent."""

    mid: int
    pending: Pending
    packet: int
    learned: bool  # a message as large is held back from now on (`OversizeGuard.closed_on`)


class OversizeGuard:
    """The console's own QoS 1/2 publishes on MQTT 3.1.1 until acknowledged, and what the broker closed on."""

    def __init__(self) -> None:
        self.outgoing: dict[int, Outgoing] = {}
        self.closed_on: int | None = None  # the smallest packet given up so: the broker takes smaller ones only
        self.largest_taken = 0  # the largest of them the broker acknowledged
        self.losses = 0  # connections lost so far

    def sent(self, mid: int, pending: Pending, packet: int, mark: int) -> None:
        """Follow publish `mid`, handed to the client when `losses` was `mark`: read before the client's
        `publish`, so that a loss that comes before `sent` (the broker may close the connection first) counts."""
        if len(self.outgoing) >= 1000:  # acknowledgements lost with a connection
            self.outgoing.pop(next(iter(self.outgoing)))
        self.outgoing[mid] = Outgoing(pending, packet, mark)

    def acknowledged(self, mid: int) -> None:
        out = self.outgoing.pop(mid, None)
        if out is not None:
            self.largest_taken = max(self.largest_taken, out.packet)
            if self.closed_on is not None and out.packet >= self.closed_on:  # the broker takes that size after all
                self.closed_on = None

    def forget_limit(self) -> None:
        """Forget the size learned (the user sends a message as large anyway)."""
        self.closed_on = None

    def lost(self) -> list[Given]:
        """A connection that was up is lost: the publishes to give up (the caller drops them from the client).

        The largest of those unacknowledged at `LOSSES` losses since they were handed over is given up, and with
        it every other one at least as large (the broker would close on it too: one as large is refused from now
        on, if it is at least FLOOR). A smaller one queued behind it was never read by the broker: it is sent
        again, as paho does.
        """
        self.losses += 1
        suspects = [out.packet for out in self.outgoing.values()
                    if self.losses - out.mark >= LOSSES and out.packet > self.largest_taken]
        if not suspects:
            return []
        limit = max(suspects)
        if self.closed_on is not None:
            limit = min(self.closed_on, limit)
        learned = limit >= FLOOR
        if learned:
            self.closed_on = limit
        given = [Given(mid, out.pending, out.packet, learned) for mid, out in self.outgoing.items()
                 if out.packet >= limit]
        for g in given:
            del self.outgoing[g.mid]
        return given

    def forget(self) -> None:
        """A new client (another protocol): nothing of the old one's is in flight."""
        self.outgoing.clear()


def given_up_text(g: Given) -> str:
    """Why `g` was given up, for the "refused" verdict: the size is a guess, so is the cause."""
    held = ", and one as large is held back from now on" if g.learned else ""
    return (f"it closed the connection each time it got it: too large for it (a packet of {g.packet:,} bytes; MQTT "
            f"3.1.1 does not say its maximum packet size) or refused by it; not sent again{held}")
