"""The MQTT 5 properties of a received message that a person inspecting it cares about, cleaned.

Another client chose every one of them: text is cleaned like all broker text (engine/untrusted.py), the
correlation data (any bytes) is kept as text when it is printable UTF-8 and as hex otherwise, and the
number and size of user properties are bounded.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from engine.untrusted import clean_text

MAX_USER_PROPERTIES = 32
MAX_CORRELATION = 256  # bytes shown of the correlation data


class MessageProps(NamedTuple):
    content_type: str | None = None
    response_topic: str | None = None
    correlation_data: str | None = None  # printable text as is, else "hex: 0a 1b ..."
    message_expiry: int | None = None  # seconds
    user_properties: tuple[tuple[str, str], ...] = ()

    def lines(self) -> list[tuple[str, str]]:
        """(name, value) pairs of the properties present, in the order they are shown."""
        out = []
        if self.content_type is not None:
            out.append(("content type", self.content_type))
        if self.response_topic is not None:
            out.append(("response topic", self.response_topic))
        if self.correlation_data is not None:
            out.append(("correlation data", self.correlation_data))
        if self.message_expiry is not None:
            out.append(("message expiry", f"{self.message_expiry} s"))
        out.extend((f"user {k}", v) for k, v in self.user_properties)
        return out


def _text(value: Any, limit: int = 200) -> str | None:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", errors="replace")
    return clean_text(value, limit)


def correlation_text(data: Any) -> str | None:
    if data is None:
        return None
    if isinstance(data, str):
        return clean_text(data, MAX_CORRELATION)
    raw = bytes(data)
    head = raw[:MAX_CORRELATION]
    more = "…" if len(raw) > MAX_CORRELATION else ""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and text.isprintable():
        return clean_text(text, MAX_CORRELATION) + more
    return "hex: " + head.hex(" ") + more


_NONE = MessageProps()
_CACHE_SIZE = 256
_CACHED_VALUE = 1024  # characters or bytes: a set of properties with a longer value is cleaned, not kept
# Most messages of a topic carry the same properties (a content type), so each set is cleaned once. The
# key is the raw values with their types (True == 1, but a bool is not a number of seconds).
_cache: dict[tuple[Any, ...], MessageProps | None] = {}


def message_props(props: Any) -> MessageProps | None:
    """The properties of a paho `Properties` (or None when the message has none worth showing)."""
    if props is None:
        return None
    raw = (getattr(props, "ContentType", None), getattr(props, "ResponseTopic", None),
           getattr(props, "CorrelationData", None), getattr(props, "MessageExpiryInterval", None),
           getattr(props, "UserProperty", None))
    key = _cache_key(raw)
    if key is None:
        return _clean(raw)
    found = _cache.get(key, _NONE)
    if found is _NONE:
        if len(_cache) >= _CACHE_SIZE:
            _cache.clear()
        found = _cache[key] = _clean(raw)
    return found


def _cache_key(raw: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """`raw` with each value's type, or None when it should not be kept: a value over `_CACHED_VALUE`,
    more user properties than are shown, or anything but text, bytes, whole numbers and pairs of text."""
    key: list[Any] = []
    for value in raw[:4]:
        if isinstance(value, (str, bytes)) and len(value) > _CACHED_VALUE:
            return None
        if value is not None and type(value) not in (str, bytes, int):
            return None
        key += (type(value), value)
    users = raw[4]
    if users:
        if not isinstance(users, list) or len(users) > MAX_USER_PROPERTIES:
            return None
        for pair in users:
            if type(pair) is not tuple or len(pair) != 2 or any(
                    type(v) is not str or len(v) > _CACHED_VALUE for v in pair):
                return None
        key.append(tuple(users))
    return tuple(key)


def _clean(raw: tuple[Any, ...]) -> MessageProps | None:
    content_type, response_topic, correlation, expiry, raw_users = raw
    users: list[tuple[str, str]] = []
    for pair in list(raw_users or [])[:MAX_USER_PROPERTIES]:
        try:
            key, value = pair
        except (TypeError, ValueError):
            continue
        users.append((_text(key, 80) or "", _text(value) or ""))
    found = MessageProps(
        content_type=_text(content_type),
        response_topic=_text(response_topic),
        correlation_data=correlation_text(correlation),
        message_expiry=expiry if isinstance(expiry, int) and not isinstance(expiry, bool) else None,
        user_properties=tuple(users),
    )
    return found if found != _NONE else None
