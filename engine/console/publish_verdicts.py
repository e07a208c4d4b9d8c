"""The broker's verdicts on the console's own publishes (publish, clear, draw, command).

MQTT 5 PUBACK reason codes say accepted or refused at QoS 1 and 2; QoS 0 and MQTT 3.1.1 get
"unconfirmed" (at QoS 1 and 2 on 3.1.1 once the broker has acknowledged the message: before, it may still
close the connection on it, see oversize.py). Each verdict is kept (bounded) and said as an event. Used
under the observer's lock.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, NamedTuple

from engine.console.snapshot import Verdict

PUBACK_WAIT = 30.0  # seconds a publish of the console's own waits for the broker's acknowledgement

AddEvent = Callable[[str, str], None]  # (level, text)


class Pending(NamedTuple):
    """A publish of the console's own, waiting for the broker's acknowledgement."""

    action: str
    tag: str | None
    what: str  # how events name it: "12 B on test/x", "the retained message of t", ...
    size: int
    topic: str = ""
    t: float = 0.0
    v5: bool = True  # sent over MQTT 5, whose acknowledgement says accepted or refused


def size_text(n: int) -> str:
    return f"{n:,} B" if n < 10_240 else f"{n / 1024:,.0f} KiB"


class PublishVerdicts:
    """Publishes waiting for an acknowledgement, and the verdicts so far. Not thread-safe by itself."""

    def __init__(self, clock: Callable[[], float], add_event: AddEvent,
                 on_cleared: Callable[[str], None]) -> None:
        self._clock = clock
        self._add_event = add_event
        self._on_cleared = on_cleared  # a retained message the broker did not refuse to clear
        self.pending: OrderedDict[int, Pending] = OrderedDict()
        self._early: OrderedDict[int, tuple[float, Any]] = OrderedDict()  # PUBACKs that beat publish()
        self.verdicts: deque[Verdict] = deque(maxlen=50)

    def sent(self, mid: int, pending: Pending, qos: int, v5: bool) -> bool:
        """A publish went out as message `mid`: judge it now or wait for its PUBACK. True when its
        acknowledgement came already (before `publish` returned)."""
        early = self._early.pop(mid, None)
        pending = pending._replace(v5=v5)
        if qos == 0:
            self.verdict(pending, "unconfirmed", "QoS 0 gets no acknowledgement")
        elif early is not None:
            self._verdict_of(pending, early[1])
        else:
            if len(self.pending) >= 1000:  # acknowledgements lost with a connection
                self.pending.pop(next(iter(self.pending)))
            self.pending[mid] = pending
        return early is not None

    def acknowledged(self, mid: int, rc: Any) -> None:
        """The broker's PUBACK (or PUBCOMP) for message `mid`, possibly before `sent` knows of it."""
        pending = self.pending.pop(mid, None)
        if pending is not None:
            self._verdict_of(pending, rc)
            return
        now = self._clock()
        self._early[mid] = (now, rc)
        while self._early and (len(self._early) > 64 or next(iter(self._early.values()))[0] < now - 30):
            self._early.popitem(last=False)

    def forget(self, mid: int) -> None:
        """Stop waiting for message `mid`'s acknowledgement (given up: its verdict is said by the caller)."""
        self.pending.pop(mid, None)

    def _verdict_of(self, pending: Pending, rc: Any) -> None:
        if not pending.v5:  # acknowledged, but a 3.1.1 PUBACK says nothing of what became of it
            self.verdict(pending, "unconfirmed", "MQTT 3.1.1 has no reason codes: a broker drops a denied message "
                                                 "without a word")
        elif getattr(rc, "is_failure", False):
            self.verdict(pending, "refused", str(getattr(rc, "getName", lambda: rc)()).lower())
        else:
            self.verdict(pending, "accepted", None)

    def verdict(self, p: Pending, outcome: str, reason: str | None) -> None:
        """Record the broker's answer and say it."""
        self.verdicts.append(Verdict(self._clock(), p.tag, p.action, p.topic, outcome, reason))
        if p.action == "clear" and outcome != "refused":
            self._on_cleared(p.topic)
        if outcome == "refused":
            verb = "publish" if p.action in ("publish", "draw") else "send" if p.action == "command" else "clear"
            self._add_event("error", f"the broker refused to {verb} {p.what}: {reason}")
        elif p.action == "publish":
            if outcome == "accepted":
                self._add_event("information", f"published {p.what}")
            else:
                self._add_event("information", f"sent {p.what} (not confirmed: {reason})")
        elif p.action == "clear":
            if outcome == "accepted":
                self._add_event("information", f"cleared {p.what}")
            else:
                self._add_event("warning", f"asked the broker to clear {p.what} (not confirmed: {reason})")

    def expire(self, now: float) -> None:
        """Publishes without an acknowledgement for PUBACK_WAIT seconds: say so."""
        while self.pending:
            mid, p = next(iter(self.pending.items()))
            if p.t > now - PUBACK_WAIT:
                break
            del self.pending[mid]
            self.verdict(p, "unconfirmed", f"no acknowledgement within {PUBACK_WAIT:g} s")
