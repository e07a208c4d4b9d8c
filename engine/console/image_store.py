"""Images kept for a result's detail view: the newest `max_images` within `max_bytes` (MNIST PNGs are
about 300 bytes: 5,000 take 1.5 MB).

Kept as they came: at a publisher's full speed images arrive by the thousand a second and only the odd
one is ever looked at, so adding one is an append with no parsing, and an image's id is read from its
metadata only when somebody asks for it (`find`). Not thread-safe by itself: the observer adds and copies
under its lock and searches the copy outside it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from engine.protocol import extract_meta, has_meta

MAX_IMAGE_PAYLOAD = 65_536  # larger image payloads are not kept for the detail view (MNIST PNGs: ~300 B)


class ImageStore:
    def __init__(self, max_images: int, max_bytes: int) -> None:
        self.max_images = max_images
        self.max_bytes = max_bytes
        self._images: deque[bytes] = deque()
        self._bytes = 0

    def add(self, payload: bytes) -> None:
        """Keep an image, the oldest going first past either bound: one append, no parsing."""
        if len(payload) > MAX_IMAGE_PAYLOAD or not has_meta(payload):  # no id: no result can match it
            return
        images = self._images
        images.append(payload)
        self._bytes += len(payload)
        while len(images) > self.max_images or self._bytes > self.max_bytes:
            self._bytes -= len(images.popleft())

    def copy(self) -> list[bytes]:
        """The images kept now, oldest first (to search with `find` outside the owner's lock)."""
        return list(self._images)


def find(kept: list[bytes], ids: Iterable[str]) -> dict[str, bytes]:
    """Those of `ids` found in `kept` (the newest image of an id given twice), newest first."""
    wanted = set(ids)
    found: dict[str, bytes] = {}
    for payload in reversed(kept):
        if not wanted:
            break
        image_id = extract_meta(payload).id
        if image_id in wanted:
            found[image_id] = payload
            wanted.discard(image_id)
    return found
