"""The topic inspector's state: every topic seen under the filter, its rate, and its recent messages.

Bounded three ways: `max_topics` topics (messages on more are counted as dropped), `max_messages` per topic,
and `max_bytes` of kept payload over all topics (the oldest go first). O(1) per message. Used under the
observer's lock.
"""

from __future__ import annotations

import itertools
from collections import deque

from engine.console.message_props import MessageProps
from engine.console.snapshot import Message, TopicInfo


class _TopicState:
    __slots__ = ("name", "count", "rate", "mark", "last_size", "last_t", "retained", "messages")

    def __init__(self, name: str, max_messages: int) -> None:
        self.name = name
        self.count = 0
        self.rate = 0.0
        self.mark = 0
        self.last_size = 0
        self.last_t = 0.0
        self.retained = False
        self.messages: deque[Message] = deque(maxlen=max_messages)


class TopicTable:
    """Topics and recent messages seen by the inspector. Not thread-safe by itself."""

    def __init__(self, max_topics: int, max_messages: int, max_payload: int, max_bytes: int) -> None:
        self.max_topics = max_topics
        self.max_messages = max_messages
        self.max_payload = max_payload
        self.max_bytes = max_bytes
        self._states: dict[str, _TopicState] = {}
        self.version = 0  # changes whenever a topic appears or the table is reset
        self.dropped = 0  # messages on topics past max_topics
        self._all_messages: deque[tuple[_TopicState, Message]] = deque(maxlen=max_topics * max_messages)
        self._bytes = 0
        self.inspected = 0
        self.paused = False
        self.missed = 0  # messages while paused
        self._seq = itertools.count(1)

    def __len__(self) -> int:
        return len(self._states)

    def _counted(self, topic: str, size: int, now: float, retain: bool) -> _TopicState | None:
        """Count a message on `topic`; its state, or None when it is not kept (paused, too many topics)."""
        self.inspected += 1
        if self.paused:
            self.missed += 1
            return None
        state = self._states.get(topic)
        if state is None:
            if len(self._states) >= self.max_topics:
                self.dropped += 1
                return None
            state = self._states[topic] = _TopicState(topic, self.max_messages)
            self.version += 1
        state.count += 1
        state.last_size = size
        state.last_t = now
        state.retained = retain
        return state

    def count(self, topic: str, size: int, now: float) -> None:
        """A message (not retained) that is counted but not kept: sampling.py decoded only a sample of its topic."""
        self._counted(topic, size, now, False)

    def add(self, topic: str, payload: bytes, qos: int, retain: bool, now: float,
            props: MessageProps | None = None) -> None:
        size = len(payload)
        state = self._counted(topic, size, now, retain)
        if state is None:
            return
        kept = payload if size <= self.max_payload else payload[: self.max_payload]
        msgs = state.messages
        if len(msgs) == msgs.maxlen:
            self._bytes -= len(msgs[0].payload)
        message = Message(next(self._seq), now, topic, qos, retain, size, kept, props)
        msgs.append(message)
        self._bytes += len(kept)
        self._all_messages.append((state, message))
        while self._bytes > self.max_bytes and self._all_messages:
            old_state, old = self._all_messages.popleft()
            if old_state.messages and old_state.messages[0] is old:
                old_state.messages.popleft()
                self._bytes -= len(old.payload)

    def clear(self) -> None:
        self._states.clear()
        self._all_messages.clear()
        self._bytes = 0
        self.dropped = 0
        self.missed = 0
        self.version += 1

    def pause(self) -> None:
        self.paused = True
        self.missed = 0

    def update_rates(self, dt: float) -> None:
        if self.paused:
            return
        for s in self._states.values():
            s.rate = (s.count - s.mark) / dt
            s.mark = s.count

    def has_retained(self, topic: str) -> bool:
        """The last message of `topic` came retained (the broker's copy at subscribe time): the broker holds
        one. False says nothing: a message retained after the subscription comes without the flag."""
        state = self._states.get(topic)
        return state is not None and state.retained

    def retained_cleared(self, topic: str) -> None:
        state = self._states.get(topic)
        if state is not None:
            state.retained = False

    def topics(self) -> tuple[TopicInfo, ...]:
        """An immutable copy of the topic list, sorted by name (O(topics))."""
        return tuple(
            TopicInfo(s.name, s.count, s.rate, s.last_size, s.last_t, s.retained)
            for s in sorted(self._states.values(), key=lambda s: s.name)
        )

    def messages(self, topic: str) -> tuple[Message, ...]:
        state = self._states.get(topic)
        return tuple(state.messages) if state is not None else ()
