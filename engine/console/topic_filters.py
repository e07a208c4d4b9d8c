"""MQTT topic names and subscription filters: validation, matching, and whether one filter covers another."""

from __future__ import annotations

import paho.mqtt.client as mqtt

from engine.errors import ConfigError

_MAX_TOPIC_BYTES = 65_535
# mosquitto refuses a topic or filter of more than 201 levels: it drops the connection as malformed, and the
# console reconnected and subscribed (or resent a QoS 1 publish) again for ever. A round 200 for any broker.
MAX_LEVELS = 200


def _refused_character(text: str) -> str | None:
    """The first character a broker refuses in a topic or filter, as U+XXXX with what it is, or None.

    mosquitto drops the connection as malformed for a control character (U+0001-001F, U+007F-009F) or a
    noncharacter (U+FDD0-FDEF and U+xFFFE/xFFFF), as MQTT allows it to, and paho then sent a QoS 1
    publish again at every reconnect. A lone surrogate is not UTF-8 at all."""
    for char in text:
        code = ord(char)
        if 0xD800 <= code <= 0xDFFF:
            return f"U+{code:04X}, a lone surrogate (not UTF-8)"
        if 0x01 <= code <= 0x1F or 0x7F <= code <= 0x9F:
            return f"U+{code:04X}, a control character"
        if 0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE:
            return f"U+{code:04X}, a noncharacter"
    return None


def validate_filter(text: str) -> str:
    """Return `text` if it is a valid MQTT subscription filter, else raise ConfigError with one line."""
    if not text:
        raise ConfigError("empty filter: use # for every topic")
    if "\0" in text:
        raise ConfigError("a filter cannot contain a NUL character")
    if (refused := _refused_character(text)) is not None:
        raise ConfigError(f"a filter cannot contain {refused}: brokers refuse it")
    if len(text.encode("utf-8")) > _MAX_TOPIC_BYTES:
        raise ConfigError("filter longer than 65,535 bytes")
    body = text
    if text.startswith("$share/"):
        parts = text.split("/", 2)
        if len(parts) < 3 or not parts[1] or not parts[2]:
            raise ConfigError(f"bad shared filter {text!r}: use $share/<group>/<filter>")
        if any(c in parts[1] for c in "+#"):
            raise ConfigError(f"bad shared filter {text!r}: the group name cannot hold + or #")
        body = parts[2]
    _check_depth(text, "filter")  # a shared filter's $share/<group>/ counts too (mosquitto counts them)
    levels = body.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ConfigError(f"bad filter {text!r}: # must be a whole level and the last one (like a/#)")
        if "+" in level and level != "+":
            raise ConfigError(f"bad filter {text!r}: + must be a whole level (like a/+/b)")
    return text


def validate_watch_filter(text: str) -> str:
    """`validate_filter` for a client that only watches (the console's inspector, `record`): a shared
    subscription (`$share/<group>/...`, or EMQX's `$queue/...`) is refused too. The broker hands each message
    of a shared subscription to one member of the group, so a watcher that joins a group takes its share of the
    messages from the others (a group of workers loses those images), and shows a part of the traffic as if it
    were all of it."""
    validate_filter(text)
    if text.startswith(("$share/", "$queue/")):  # $queue/<filter>: EMQX's shared subscription without a group
        body = text.split("/", 2)[2] if text.startswith("$share/") else text.removeprefix("$queue/")
        raise ConfigError(f"bad filter {text!r}: a shared subscription would take messages from the group's "
                          f"members; watch {body!r} instead")
    return text


def validate_topic(text: str) -> str:
    """Return `text` if it is a topic one can publish on, else raise ConfigError with one line."""
    if not text:
        raise ConfigError("empty topic")
    if "+" in text or "#" in text:
        raise ConfigError(f"bad topic {text!r}: no wildcards (+ or #) in a topic to publish on")
    if "\0" in text:
        raise ConfigError("a topic cannot contain a NUL character")
    if (refused := _refused_character(text)) is not None:
        raise ConfigError(f"a topic cannot contain {refused}: brokers refuse it")
    if len(text.encode("utf-8")) > _MAX_TOPIC_BYTES:
        raise ConfigError("topic longer than 65,535 bytes")
    _check_depth(text, "topic")
    return text


def _check_depth(text: str, kind: str) -> None:
    levels = text.count("/") + 1
    if levels > MAX_LEVELS:
        raise ConfigError(f"{kind} of {levels:,} levels: at most {MAX_LEVELS} (brokers refuse deeper ones)")


def _filter_body(text: str) -> str:
    return text.split("/", 2)[2] if text.startswith("$share/") else text


def filter_covers(general: str, specific: str) -> bool:
    """True when every topic matched by filter `specific` is also matched by filter `general`."""
    g = _filter_body(general).split("/")
    s = _filter_body(specific).split("/")
    dollar = s[0].startswith("$")
    for i, level in enumerate(g):
        if level == "#":
            return not (i == 0 and dollar)  # '#' alone does not match $SYS/... topics
        if i >= len(s):
            return False
        if s[i] == "#":
            return False
        if level == "+":
            if i == 0 and dollar:
                return False
            continue
        if level != s[i]:
            return False
    return len(g) == len(s)


def topic_matches(filter_text: str, topic: str) -> bool:
    return mqtt.topic_matches_sub(_filter_body(filter_text), topic)

