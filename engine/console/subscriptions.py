"""The observer's subscriptions: the inspector's filter, the core filters beside it, and which copy is which.

Part of the observer (engine/console/observer.py), used under its one lock. The core topics (statuses,
results, replies and, when images are kept, images) are followed whatever the inspector's filter: each
core filter that the inspector's does not cover is subscribed on its own.

Subscription identifiers (MQTT 5) tell an inspector copy of a message from a core copy when the broker
delivers one copy per matching subscription (mosquitto does). Each (re)subscription is a generation g:
the inspector filter gets id 2g+1, the core filters 2g+2, so copies still in flight from a replaced
filter are recognised too. Without identifiers (MQTT 3.1.1) the topic alone decides.
"""

from __future__ import annotations

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from engine.console.topic_filters import filter_covers, topic_matches
from engine.mqtt.client import reason_text
from engine.topics import Topics

SUB_INSPECT = 1
SUB_CORE = 2


class Subscriptions:
    def __init__(self, topics: Topics, keep_images: bool) -> None:
        self._core_filters = {
            "status": topics.status_filter(),
            "results": topics.results,
            "reply": f"{topics.reply_prefix}/+/+",
        }
        if keep_images:  # images are kept (bounded) for a result's detail view, whatever the filter
            self._core_filters["images"] = topics.images
        self._separate: dict[str, str] = {}  # core filters subscribed on their own
        self._gen = 0
        self._separate_by_gen: dict[int, set[str]] = {}
        self.pending: dict[int, list[str]] = {}  # subscriptions the broker has not acknowledged yet
        self.status_prefix = topics.status_prefix + "/"
        self.reply_prefix = topics.reply_prefix + "/"
        self._results_topic = topics.results
        self._images_topic = topics.images if keep_images else None

    def subscribe_all(self, client: mqtt.Client, inspect: str, v5: bool) -> None:
        """Subscribe the inspector's filter `inspect`, then each core filter it does not cover."""
        self._gen += 1
        self._separate = {kind: f for kind, f in self._core_filters.items() if not filter_covers(inspect, f)}
        self._separate_by_gen[self._gen] = set(self._separate)
        self._separate_by_gen.pop(self._gen - 3, None)
        self._subscribe(client, [inspect], self._gen * 2 + SUB_INSPECT, v5)
        if self._separate:
            self._subscribe(client, list(self._separate.values()), self._gen * 2 + SUB_CORE, v5)

    def _subscribe(self, client: mqtt.Client, filters: list[str], sub_id: int, v5: bool) -> None:
        if v5:
            props = Properties(PacketTypes.SUBSCRIBE)
            props.SubscriptionIdentifier = sub_id
            _rc, mid = client.subscribe([(f, SubscribeOptions(qos=2)) for f in filters], properties=props)
        else:
            _rc, mid = client.subscribe([(f, 2) for f in filters])
        if mid is not None:
            self.pending[mid] = filters

    def acknowledged(self, mid: int, reason_codes: list[mqtt.ReasonCode]) -> list[str]:
        """The broker's SUBACK: one line for each filter it refused."""
        filters = self.pending.pop(mid, None)
        if filters is None:
            return []
        return [f"the broker refused the subscription to {f}: {reason_text(rc)}"
                for f, rc in zip(filters, reason_codes, strict=False) if rc.is_failure]

    def replace(self, old: str, new: str, client: mqtt.Client | None, v5: bool) -> None:
        """The inspector's filter `old` becomes `new`; `client`: connected (resubscribe now) or None (on connect)."""
        if client is None:
            self._separate = {}
            return
        client.unsubscribe([old, *self._separate.values()])
        self.subscribe_all(client, new, v5)

    def route(self, topic: str, sub_ids: list[int] | None, inspect_filter: str) -> tuple[bool, str | None]:
        """Whether this copy of a message goes to the inspector, and which core kind (if any) takes it.

        `sub_ids`: the subscription identifiers that came with it. A core message is taken from exactly
        one copy: the current inspector one, a core one, or one of a filter just replaced (still in flight).
        """
        kind = self._core_kind(topic)
        if sub_ids:
            inspect = self._gen * 2 + SUB_INSPECT in sub_ids
            core = False
            if kind is not None:  # a loop, not any() over a generator: this runs for every message
                for sub_id in sub_ids:
                    if self._is_core_copy(sub_id, kind):
                        core = True
                        break
        else:
            inspect = not self._separate or topic_matches(inspect_filter, topic)
            core = kind is not None
        return inspect, kind if core else None

    def _core_kind(self, topic: str) -> str | None:
        if topic == self._results_topic:
            return "results"
        if topic == self._images_topic:
            return "images"
        if topic.startswith(self.status_prefix):
            return "status"
        if topic.startswith(self.reply_prefix):
            return "reply"
        return None

    def _is_core_copy(self, sub_id: int, kind: str) -> bool:
        gen, which = divmod(sub_id, 2)
        if which == 0:  # a core subscription (ids 2g+2 are stored as gen g+1, remainder 0)
            return True
        separate = self._separate_by_gen.get(gen)
        return separate is not None and kind not in separate
