"""Images in the terminal: two pixels per cell, the upper half block with foreground and background colours."""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
from PIL import Image
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip

UPPER_HALF = "▀"
MAX_DECODE_PIXELS = 4_000_000


class ImageDecodeError(ValueError):
    """Payload that is not a decodable image."""


def open_png(payload: bytes) -> Image.Image:
    """Decode an image payload with Pillow (bounded: no decompression bombs); ImageDecodeError if it fails."""
    try:
        img = Image.open(io.BytesIO(payload))
        if img.width * img.height > MAX_DECODE_PIXELS:
            raise ImageDecodeError(f"image too large to show ({img.width}x{img.height})")
        img.load()
    except ImageDecodeError:
        raise
    except Exception as exc:  # Pillow raises many kinds for broken data
        raise ImageDecodeError(f"not a decodable image: {exc}") from None
    return img


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("L", "RGB"):
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = float(arr.max()) or 1.0
        return Image.fromarray((arr * (255.0 / top)).astype(np.uint8), mode="L")
    if img.mode in ("LA", "RGBA", "PA", "P"):
        rgba = img.convert("RGBA")
        back = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(back, rgba).convert("RGB")
    return img.convert("RGB")


def fit(width: int, height: int, max_cols: int, max_rows: int, upscale: bool = True) -> tuple[int, int]:
    """Pixel size (w, h) that fits in max_cols x (2 * max_rows) pixels, keeping the aspect ratio."""
    if width <= 0 or height <= 0 or max_cols <= 0 or max_rows <= 0:
        return 0, 0
    scale = min(max_cols / width, (2 * max_rows) / height)
    if scale >= 1:
        scale = int(scale) if upscale else 1  # whole multiples keep pixels square and even
    w = max(1, int(width * scale))
    h = max(1, int(height * scale))
    return w, h


@lru_cache(maxsize=4096)
def _style(top: tuple[int, int, int] | int, bottom: tuple[int, int, int] | int) -> Style:
    def colour(v: tuple[int, int, int] | int) -> str:
        if isinstance(v, int):
            return f"rgb({v},{v},{v})"
        return f"rgb({v[0]},{v[1]},{v[2]})"

    return Style(color=colour(top), bgcolor=colour(bottom))


def image_strips(img: Image.Image, max_cols: int, max_rows: int, upscale: bool = True) -> list[Strip]:
    """The image scaled to fit max_cols x max_rows cells, one Strip per cell row."""
    img = _to_rgb(img)
    w, h = fit(img.width, img.height, max_cols, max_rows, upscale)
    if not w:
        return []
    if (w, h) != img.size:
        resample = Image.Resampling.NEAREST if w >= img.width else Image.Resampling.BOX
        img = img.resize((w, h), resample)
    flat = getattr(img, "get_flattened_data", None)  # Pillow >= 12; getdata() is going away
    pixels = list(flat() if flat is not None else img.getdata())
    strips: list[Strip] = []
    black = 0 if img.mode == "L" else (0, 0, 0)
    for row in range(0, h, 2):
        top = pixels[row * w : (row + 1) * w]
        bottom = pixels[(row + 1) * w : (row + 2) * w] if row + 1 < h else [black] * w
        segments = [Segment(UPPER_HALF, _style(t, b)) for t, b in zip(top, bottom, strict=True)]
        strips.append(Strip(Segment.simplify(segments), w))
    return strips
