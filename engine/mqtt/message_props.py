"""MQTT 5 properties of an image, read as untrusted data, and the properties put on results.

An MQTT 5 client may send an image with:
- a message expiry interval: the broker forwards the time left; an image still queued past it is not
  inferred (nobody waits for its answer any more) and is counted as `expired`;
- a response topic and correlation data (MQTT 5 request/response): the result goes there too, with the
  correlation data echoed, as well as to the result topic;
- user properties `id` and `label`, used where the PNG has no `mnist` chunk saying them.

Results carry the content type `application/json`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, NamedTuple

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from engine.protocol import ImageMeta, clean_meta_label, clean_meta_text
from engine.topics import Topics

CONTENT_TYPE = "application/json"
MAX_TOPIC_BYTES = 512  # a response topic longer than this is ignored
MAX_CORRELATION = 256  # correlation data longer than this is ignored (bytes)


class ImageProps(NamedTuple):
    """What an image's MQTT 5 properties ask for (None: not given, or not usable)."""

    deadline: float | None = None  # time.time() past which the image is not inferred
    response_topic: str | None = None
    correlation: bytes | None = None
    id: str | None = None
    label: int | None = None


def read_image_props(props: Any, t_recv: float, topics: Topics) -> ImageProps | None:
    """The usable MQTT 5 properties of a received image, or None when it has none (the common case).

    Never raises: a property that does not fit is ignored, never trusted. A response topic must be a
    plain topic name (no wildcard, not a `$` topic) outside this pipeline's control, status and reply
    topics, so an image cannot turn a worker into a sender of commands or statuses.
    """
    if props is None:
        return None
    names = props.__dict__
    expiry = names.get("MessageExpiryInterval")
    response = names.get("ResponseTopic")
    user = names.get("UserProperty")
    if expiry is None and response is None and not user:
        return None
    deadline = t_recv + expiry if isinstance(expiry, int) and expiry >= 0 else None
    topic = response if isinstance(response, str) and _response_topic_ok(response, topics) else None
    correlation = names.get("CorrelationData") if topic is not None else None
    if not isinstance(correlation, bytes) or len(correlation) > MAX_CORRELATION:
        correlation = None
    msg_id: str | None = None
    label: int | None = None
    if isinstance(user, list):
        for pair in user[:32]:
            if not (isinstance(pair, tuple) and len(pair) == 2):
                continue
            key, value = pair
            if key == "id" and msg_id is None:
                msg_id = clean_meta_text(value)
            elif key == "label" and label is None and isinstance(value, str) and value.strip().isdigit():
                label = clean_meta_label(int(value.strip()[:2]))
    return ImageProps(deadline, topic, correlation, msg_id, label)


def _response_topic_ok(topic: str, topics: Topics) -> bool:
    if not topic or len(topic.encode("utf-8", "replace")) > MAX_TOPIC_BYTES:
        return False
    if topic.startswith("$") or "+" in topic or "#" in topic or "\x00" in topic:
        return False
    for prefix in (topics.control_prefix, topics.status_prefix, topics.reply_prefix):
        if topic == prefix or topic.startswith(prefix + "/"):
            return False
    return True


def merge_meta(meta: ImageMeta, props: ImageProps | None) -> ImageMeta:
    """The PNG's own id and label first; the user properties where the PNG says nothing."""
    if props is None or (props.id is None and props.label is None):
        return meta
    return meta._replace(
        id=meta.id if meta.id is not None else props.id,
        label=meta.label if meta.label is not None else props.label,
    )


class PackedProperties(Properties):
    """Properties packed once: paho packs a message's properties for every publish (about 40 us each,
    measured here), which for results at QoS 1 would cost more than their inference. Not to be changed
    after the first pack."""

    def pack(self) -> bytes:
        packed = self.__dict__.get("_packed")
        if packed is None:
            packed = super().pack()
            object.__setattr__(self, "_packed", packed)
        return packed


def result_properties(correlation: bytes | None = None) -> Properties:
    """PUBLISH properties of a result: its content type, and the correlation data of a response."""
    props = PackedProperties(PacketTypes.PUBLISH)
    props.ContentType = CONTENT_TYPE
    if correlation is not None:
        props.CorrelationData = correlation
    return props


@lru_cache(maxsize=16)  # one object per expiry: its packed bytes are made once (PackedProperties)
def image_properties(expiry: int) -> Properties | None:
    """PUBLISH properties of an image: its MQTT 5 message expiry in seconds (None when 0: no expiry).

    A broker drops an image it holds for an absent subscriber's session once it expires, and a worker skips
    (and counts) one that expired in its own queue. mosquitto 2.0.11 expires only what is still in a session's
    queue, and sends a connected subscriber far more than its receive maximum once it acknowledges in order
    (fixed in 2.0.13), so behind a busy worker the expiry bounds little there (docs/PERFORMANCE.md).
    """
    if expiry <= 0:
        return None
    props = PackedProperties(PacketTypes.PUBLISH)
    props.MessageExpiryInterval = expiry
    return props
