"""Images kept by the id in their metadata, for a result's detail view: the newest `max_images` within
`max_bytes` (MNIST PNGs are about 300 bytes: 5,000 take 1.5 MB). O(1) per image; not thread-safe by itself."""

from __future__ import annotations

from collections import OrderedDict

from engine.protocol import PNG_SIGNATURE, extract_meta

MAX_IMAGE_PAYLOAD = 65_536  # larger image payloads are not kept for the detail view (MNIST PNGs: ~300 B)


class ImageStore:
    def __init__(self, max_images: int, max_bytes: int) -> None:
        self.max_images = max_images
        self.max_bytes = max_bytes
        self._images: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0

    def add(self, payload: bytes) -> None:
        """Keep an image by the id in its metadata (O(1); the oldest go first past either bound)."""
        if len(payload) > MAX_IMAGE_PAYLOAD or not payload.startswith(PNG_SIGNATURE):
            return
        image_id = extract_meta(payload).id
        if image_id is None:  # no id: no result can be matched to it
            return
        images = self._images
        old = images.pop(image_id, None)
        if old is not None:
            self._bytes -= len(old)
        images[image_id] = payload
        self._bytes += len(payload)
        while images and (len(images) > self.max_images or self._bytes > self.max_bytes):
            _id, dropped = images.popitem(last=False)
            self._bytes -= len(dropped)

    def get(self, image_id: str) -> bytes | None:
        return self._images.get(image_id)

    def some(self, ids: list[str]) -> dict[str, bytes]:
        return {i: self._images[i] for i in ids if i in self._images}
