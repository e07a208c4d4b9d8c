"""OversizeGuard (engine/console/oversize.py): which of the console's own publishes on MQTT 3.1.1 are given up
when the broker closes the connection, and what the dialog then refuses; without a broker."""

from __future__ import annotations

import pytest

from engine.console.observer_common import HeldBack, check_publish
from engine.console.oversize import FLOOR, OversizeGuard, given_up_text
from engine.console.publish_verdicts import Pending
from engine.console.snapshot import Connection
from engine.errors import ConfigError
from engine.mqtt.client import publish_packet_size


def pending(topic: str) -> Pending:
    return Pending("publish", None, f"a message on {topic}", 0, topic)


def test_a_publish_is_given_up_at_the_second_loss_it_is_unacknowledged_at() -> None:
    guard = OversizeGuard()
    guard.sent(1, pending("big"), 70_000, guard.losses)
    assert guard.lost() == [], "one loss proves nothing: a network drops"
    (given,) = guard.lost()
    assert (given.mid, given.packet, given.pending.topic) == (1, 70_000, "big")
    assert guard.closed_on == 70_000 and not guard.outgoing
    assert guard.lost() == []


def test_a_loss_before_the_publish_is_noted_counts_when_it_came_after_the_mark() -> None:
    """The broker may close the connection before `sent` runs: the mark is read before the client's publish."""
    guard = OversizeGuard()
    mark = guard.losses
    assert guard.lost() == []
    guard.sent(1, pending("big"), 70_000, mark)
    assert [g.mid for g in guard.lost()] == [1]


def test_an_acknowledged_publish_is_never_given_up_and_what_the_broker_took_is_no_suspect() -> None:
    guard = OversizeGuard()
    guard.sent(1, pending("a"), 50_000, guard.losses)
    guard.acknowledged(1)
    guard.sent(2, pending("b"), 40_000, guard.losses)  # smaller than one the broker took: not its size
    assert guard.lost() == [] and guard.lost() == []
    assert guard.closed_on is None and 2 in guard.outgoing


def test_the_largest_is_given_up_with_those_as_large_and_a_smaller_one_behind_it_is_sent_again() -> None:
    """The broker closes on the first packet over its maximum; what was queued behind it was never read."""
    guard = OversizeGuard()
    for mid, size in ((1, 90_000), (2, 300), (3, 95_000)):
        guard.sent(mid, pending(f"t{mid}"), size, guard.losses)
    guard.lost()
    guard.sent(4, pending("t4"), 92_000, guard.losses)  # after the first loss: at least as large as the culprit
    given = guard.lost()
    assert guard.closed_on == 95_000 and [g.mid for g in given] == [3]
    assert set(guard.outgoing) == {1, 2, 4}
    given = guard.lost()  # lost again with 4 and 1 unacknowledged: the largest of them goes, one at a time
    assert guard.closed_on == 92_000 and [g.mid for g in given] == [4]
    assert set(guard.outgoing) == {1, 2}


def test_the_dialog_refuses_a_message_as_large_as_one_the_broker_closed_the_connection_on() -> None:
    size = publish_packet_size("t/x", 70_000, 1, protocol=4)
    assert size == publish_packet_size("t/x", 70_000, 1) - 1  # no properties on 3.1.1
    conn = Connection("connected", 0.0, None, None, 4, "mqtt://x", closed_on=size)
    with pytest.raises(HeldBack, match=f"closed the connection on a packet of {size:,} bytes, too large for it or "
                                       "refused by it"):
        check_publish("t/x", b"x" * 70_000, 1, conn)
    assert issubclass(HeldBack, ConfigError)
    assert check_publish("t/x", b"x" * 69_999, 1, conn) == b"x" * 69_999
    assert check_publish("t/x", b"x" * 70_001, 1, conn._replace(closed_on=None))  # nothing learned: not refused


def test_under_the_floor_a_publish_is_given_up_but_no_size_is_learned() -> None:
    """A broker that closes the connection on a forbidden publish, or a network that drops twice while a small
    message waits: the message is given up (not sent at every reconnect), and the next one as large goes out."""
    guard = OversizeGuard()
    guard.sent(1, pending("acl/denied"), 300, guard.losses)
    guard.sent(2, pending("queued"), 200, guard.losses)
    guard.lost()
    (given,) = guard.lost()
    assert (given.mid, given.learned) == (1, False) and guard.closed_on is None
    assert set(guard.outgoing) == {2}  # a smaller one behind it is sent again, as before
    assert "held back" not in given_up_text(given)
    guard.acknowledged(2)
    guard.sent(3, pending("big"), FLOOR, guard.losses)
    guard.lost()
    (given,) = guard.lost()
    assert (given.mid, given.learned, guard.closed_on) == (3, True, FLOOR)
    assert "held back from now on" in given_up_text(given)


def test_the_words_say_too_large_or_refused_never_only_the_size() -> None:
    guard = OversizeGuard()
    guard.sent(1, pending("big"), 70_000, guard.losses)
    guard.lost()
    (given,) = guard.lost()
    text = given_up_text(given)
    assert "too large for it" in text and "or refused by it" in text and "70,000 bytes" in text, text


def test_what_was_learned_is_forgotten_when_a_packet_as_large_is_taken_or_the_user_sends_one_anyway() -> None:
    guard = OversizeGuard()
    guard.sent(1, pending("big"), 90_000, guard.losses)
    guard.sent(2, pending("slow"), 95_000, guard.losses)  # in flight as long, over a slow network, say
    guard.lost()
    guard.lost()
    assert guard.closed_on == 95_000 and set(guard.outgoing) == {1}
    guard.sent(3, pending("big"), 80_000, guard.losses)
    guard.acknowledged(3)  # smaller: says nothing of the limit
    assert guard.closed_on == 95_000
    guard.acknowledged(1)  # not this large either
    assert guard.closed_on == 95_000
    guard.sent(4, pending("again"), 96_000, guard.losses)  # sent anyway, and this time the broker took it
    guard.acknowledged(4)
    assert guard.closed_on is None and guard.largest_taken == 96_000
    guard.sent(5, pending("huge"), 200_000, guard.losses)
    guard.lost()
    guard.lost()
    assert guard.closed_on == 200_000
    guard.forget_limit()
    assert guard.closed_on is None
