"""What a console snapshot holds: immutable records of the connection, roles, results, topics and events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from engine.console.message_props import MessageProps

STALE_AFTER = 5.0  # seconds without a status before a live role is shown as silent
HISTORY = 300  # status values kept per role for trends: about five minutes at one status a second


class Connection(NamedTuple):
    state: str  # "idle", "connecting", "connected", "reconnecting", "stopped"
    since: float
    next_try: float | None  # when the next reconnect attempt is due (Unix time)
    error: str | None
    protocol: int  # 5 or 4 (MQTT 3.1.1)
    url: str
    max_packet: int | None = None  # the largest packet the broker takes, as its CONNACK said (MQTT 5)
    # MQTT 3.1.1: the smallest packet of the console's own that the broker closed the connection on each time it
    # was sent (engine/console/oversize.py); one as large is refused before it is sent
    closed_on: int | None = None


class RoleStatus(NamedTuple):
    role: str
    id: str
    state: str  # running, stopped, offline (or whatever the role said)
    data: Mapping[str, Any]  # the whole status message, read-only
    received: float  # when the observer got it
    history: tuple[float, ...]  # recent `rate` values, oldest first, one per status (up to HISTORY)
    history_t: tuple[float, ...] = ()  # when each of those statuses arrived (same length as history)
    lat_history: tuple[float | None, ...] = ()  # the status's `lat_ms.p50` with each, None when absent

    @property
    def online(self) -> bool:
        return self.state != "offline"

    def silent(self, now: float) -> bool:
        """A live role whose status has not come for a while (hung, or its network is cut)."""
        return self.online and now - self.received > STALE_AFTER


class ResultRow(NamedTuple):
    seq: int  # 1, 2, 3, ... over the observer's life (not reset by clear_results)
    t: float  # arrival time at the observer
    id: str | None
    pred: int | None
    label: int | None
    conf: float | None
    latency_ms: float | None  # arrival here minus t_sent
    worker: str | None
    error: str | None
    probs: tuple[float, ...] | None
    model: str | None
    legacy: bool

    @property
    def correct(self) -> bool | None:
        if self.pred is None or self.label is None:
            return None
        return self.pred == self.label


class ResultStats(NamedTuple):
    received: int
    labelled: int
    correct: int
    errors: int
    malformed: int
    rate: float  # results per second, over the last second or so
    lat_p50: float | None  # ms, over recent results
    lat_p99: float | None
    confusion: tuple[tuple[int, ...], ...]  # rows = label, columns = prediction
    # of `received`, those only counted, not decoded (engine/console/sampling.py): the rest, `decoded`, are
    # the rows and what labelled, correct, errors, the latencies and the confusion matrix are taken over
    counted_only: int = 0
    # of `received`, results of images this console drew (`d`): no publisher sent them
    drawn: int = 0

    @property
    def decoded(self) -> int:
        return self.received - self.counted_only

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None


class Message(NamedTuple):
    seq: int
    t: float
    topic: str
    qos: int
    retain: bool
    size: int  # the payload's real size
    payload: bytes  # the first `max_payload` bytes
    props: MessageProps | None = None  # its MQTT 5 properties, cleaned (None: it had none to show)

    @property
    def truncated(self) -> bool:
        return len(self.payload) < self.size


class TopicInfo(NamedTuple):
    name: str
    count: int  # type: ignore[assignment]  # shadows tuple.count, a name the console has used from the start
    rate: float
    last_size: int
    last_t: float
    retained: bool  # the last message came as a retained one


class Reply(NamedTuple):
    t: float
    role: str
    id: str
    req: Any
    cmd: str
    ok: bool
    error: str | None
    ours: bool  # an answer to a command this observer sent


class Verdict(NamedTuple):
    """What the broker said to one of the console's own publishes (publish, clear, draw, command)."""

    t: float
    tag: str | None  # the caller's name for it (the draw dialog: the image id)
    action: str  # "publish", "clear", "draw", "command"
    topic: str
    outcome: str  # "accepted" (MQTT 5 PUBACK success), "refused" (a failure reason code), "unconfirmed"
    reason: str | None  # the broker's reason for a refusal; why it is unconfirmed otherwise

    @property
    def refused(self) -> bool:
        return self.outcome == "refused"


class Event(NamedTuple):
    seq: int
    t: float
    level: str  # "information", "warning", "error" (Textual's notify severities)
    text: str


class Snapshot(NamedTuple):
    time: float
    connection: Connection
    roles: tuple[RoleStatus, ...]  # sorted by role, then id
    results: tuple[ResultRow, ...]  # newest last
    stats: ResultStats
    topics: tuple[TopicInfo, ...]  # sorted by name; empty unless asked for
    topics_version: int  # changes whenever a topic appears or the tree is reset
    topic_count: int
    topics_dropped: int  # messages on topics past max_topics
    messages: tuple[Message, ...]  # recent messages of the topic asked for, newest last
    filter: str
    paused: bool
    missed_while_paused: int
    events: tuple[Event, ...]  # events after `events_after`
    replies: tuple[Reply, ...]  # recent replies, newest last
    inspected: int  # messages seen by the inspector in all
    subscribed: bool  # connected, and the broker acknowledged every subscription
    ignored: int = 0  # status fields and statuses dropped as malformed (engine/untrusted.py)
    verdicts: tuple[Verdict, ...] = ()  # the broker's answers to this console's recent publishes, newest last
    skipped: int = 0  # QoS 0 messages skipped to keep the view current (engine/console/keep_up.py)

    def roles_of(self, role: str) -> tuple[RoleStatus, ...]:
        return tuple(r for r in self.roles if r.role == role)


class SnapshotDelta(NamedTuple):
    """What the observer process sends about ten times a second: a snapshot whose results and events are
    the new ones, without its roles, topic list and messages; each of those comes only when it changed
    (None: unchanged, keep the last one). The topic list comes with its own version and count."""

    snapshot: Snapshot  # roles, topics and messages empty
    roles: tuple[RoleStatus, ...] | None
    topics: tuple[TopicInfo, ...] | None
    messages: tuple[Message, ...] | None
