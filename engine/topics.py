"""Topic names and client-id sanitizing."""

from __future__ import annotations

import re
from dataclasses import dataclass

ROLES = ("input", "infer", "output")

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def sanitize_id(name: str, max_len: int = 64) -> str:
    """Make a name safe to use as one topic level: no '/', '+', '#', spaces or control characters."""
    cleaned = _UNSAFE.sub("_", name)[:max_len]
    return cleaned or "_"


@dataclass(frozen=True)
class Topics:
    """Every topic the pipeline uses; defaults follow the original demo and docs/PROTOCOL.md."""

    images: str = "mnist"
    results: str = "result"
    status_prefix: str = "mnist/status"
    control_prefix: str = "mnist/control"
    reply_prefix: str = "mnist/reply"

    def status(self, role: str, client_id: str) -> str:
        return f"{self.status_prefix}/{role}/{sanitize_id(client_id)}"

    def status_filter(self, role: str = "+") -> str:
        return f"{self.status_prefix}/{role}/+"

    def control(self, role: str, client_id: str | None = None) -> str:
        if client_id is None:
            return f"{self.control_prefix}/{role}"
        return f"{self.control_prefix}/{role}/{sanitize_id(client_id)}"

    def reply(self, role: str, client_id: str) -> str:
        return f"{self.reply_prefix}/{role}/{sanitize_id(client_id)}"

    def parse_status(self, topic: str) -> tuple[str, str] | None:
        """(role, client_id) of a status topic, or None if the topic is not one."""
        prefix = self.status_prefix + "/"
        if not topic.startswith(prefix):
            return None
        rest = topic[len(prefix):].split("/")
        if len(rest) != 2 or rest[0] not in ROLES:
            return None
        return rest[0], rest[1]
