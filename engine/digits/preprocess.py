"""PNG payload -> the 28x28 white-on-black uint8 image the digit model expects.

The wire format is PNG (see docs/PROTOCOL.md). `decode_png` accepts any PNG the network may carry
and either returns a 28x28 uint8 array or raises `ImageError` with a one-line reason; it never lets a
hostile payload (decompression bomb, truncated file, other format) cost much time or memory.

`mnist_normalize` is the MNIST-style size normalization used for images that are not already 28x28
(a drawing canvas calls it directly). `encode_png` is the inverse direction, for publishers.
"""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
from PIL import Image

from engine.errors import MnistError

__all__ = ["ImageError", "decode_png", "encode_png", "mnist_normalize", "png_size", "to_white_on_black"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SIDE = 28  # the model's input is SIDE x SIDE
BOX = 20  # MNIST fits each digit into a BOX x BOX box...
CENTRE = 14.0  # ...and puts its centre of mass here (row and column index; measured on MNIST itself)

_OTHER_FORMATS = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"{", "JSON or text"),
)


class ImageError(MnistError):
    """A payload that is not a usable PNG image (the message says why, in one line)."""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _describe_start(payload: bytes) -> str:
    if payload[:4] == b"RIFF" and payload[8:12] == b"WEBP":
        return "looks like WebP"
    for magic, name in _OTHER_FORMATS:
        if payload.startswith(magic):
            return f"looks like {name}"
    return "starts with " + " ".join(f"0x{b:02x}" for b in payload[:4])


def png_size(payload: bytes) -> tuple[int, int]:
    """(width, height) declared in the PNG's IHDR chunk, read without decoding anything.

    Raises ImageError when the payload is not a PNG or its header is cut short or malformed.
    """
    if payload[:8] != PNG_SIGNATURE:
        if PNG_SIGNATURE.startswith(bytes(payload[:8])):
            raise ImageError(f"truncated PNG: {len(payload)} bytes, not even a header")
        raise ImageError(f"not a PNG image ({_describe_start(payload)})")
    if len(payload) < 33:  # signature + IHDR length, type, 13 data bytes, CRC
        raise ImageError(f"truncated PNG: {len(payload)} bytes, no complete IHDR header")
    length, kind, width, height = struct.unpack(">I4sII", payload[8:24])
    if kind != b"IHDR" or length != 13:
        raise ImageError("corrupt PNG: the first chunk is not a valid IHDR header")
    if not (0 < width < 2**31 and 0 < height < 2**31):
        raise ImageError(f"corrupt PNG: invalid size {width}x{height}")
    return width, height


def _open(payload: bytes, pixels: int) -> Image.Image:
    """Decode with Pillow; every failure becomes an ImageError. Pixel count is already checked."""
    try:
        if pixels > (Image.MAX_IMAGE_PIXELS or pixels):
            # Only when the caller allows more pixels than Pillow's own bomb limit (never by default):
            # Pillow then warns, and a warning must not let a bomb through.
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(payload), formats=("PNG",))
                img.load()
        else:
            img = Image.open(io.BytesIO(payload), formats=("PNG",))
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"image too large to decode safely: {_one_line(exc)}") from None
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, EOFError, zlib.error...
        raise ImageError(f"corrupt or truncated PNG: {_one_line(exc)}") from None
    if img.mode in ("P", "PA") and img.palette is None:
        raise ImageError("corrupt PNG: a palette image without a PLTE chunk")
    return img


def _composite(grey: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Flatten grey + alpha onto a background that contrasts with what is visible.

    Transparent pixels become black when the visible (alpha-weighted) pixels are bright on average and
    white when they are dark, so a stroke on a transparent canvas survives whichever colour it was
    drawn in; the border rule in `to_white_on_black` then decides about inversion as for any image.
    """
    a = alpha.astype(np.uint32)
    total = int(a.sum())
    if total == 0:
        return np.zeros(grey.shape, np.uint8)  # fully transparent: nothing drawn
    g = grey.astype(np.uint32)
    ink_mean = int((g * a).sum()) / total
    background = 0 if ink_mean > 127.5 else 255
    return ((g * a + background * (255 - a) + 127) // 255).astype(np.uint8)


def _to_grey(img: Image.Image) -> np.ndarray:
    """Any PNG mode -> 2-D uint8 grey array (alpha composited)."""
    mode = img.mode
    if mode == "L" and not img.has_transparency_data:
        return np.asarray(img)
    if mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey; values 0..65535
        wide = np.asarray(img).astype(np.uint32)
        return (np.clip(wide, 0, 65535) >> 8).astype(np.uint8)
    if img.has_transparency_data:
        la = np.asarray(img.convert("LA"))
        return _composite(la[..., 0], la[..., 1])
    return np.asarray(img.convert("L"))


def _border_sum(a: np.ndarray) -> int:
    if a.shape[0] < 3 or a.shape[1] < 3:
        return int(a.sum())
    return int(a.sum()) - int(a[1:-1, 1:-1].sum())


def _border_is_black(a: np.ndarray) -> bool:
    """True when every pixel of the outermost ring is 0 (cheap: the common MNIST case)."""
    if a.size <= 16384:  # slicing a bytes copy beats four numpy calls on small images
        b, w = a.tobytes(), a.shape[1]
        return not (b[:w].strip(b"\0") or b[-w:].strip(b"\0") or b[::w].strip(b"\0") or b[w - 1 :: w].strip(b"\0"))
    return not (a[0].any() or a[-1].any() or a[:, 0].any() or a[:, -1].any())


def to_white_on_black(grey: np.ndarray) -> np.ndarray:
    """Invert a dark-on-light image so the digit is bright on a dark background, as in MNIST.

    Rule: invert when the mean of the outermost ring of pixels (the border, which is background for
    any reasonably framed digit) lies above the midpoint between the image's darkest and brightest
    pixel. An all-black border (every MNIST digit, every white-on-black canvas) is decided without
    looking further; a uniform image is left alone. Returns the input itself when nothing changes.
    """
    if grey.size == 0 or _border_is_black(grey):
        return grey
    h, w = grey.shape
    count = h * w if h < 3 or w < 3 else 2 * (h + w) - 4
    lo, hi = int(grey.min()), int(grey.max())
    if hi > lo and _border_sum(grey) / count > (lo + hi) / 2:
        return 255 - grey
    return grey


def decode_png(payload: bytes, max_bytes: int = 1_048_576, max_pixels: int = 4_000_000) -> np.ndarray:
    """Decode a PNG payload into a 28x28 uint8 image, white digit on black.

    Any PNG mode (1, L, LA, RGB, RGBA, P, 16-bit) becomes 8-bit grey, alpha composited (see
    `_composite`); a dark-on-light digit is inverted (see `to_white_on_black`); an image that is not
    28x28 goes through `mnist_normalize`. A 28x28 image is taken as already MNIST-framed.

    The declared size is read from the IHDR header and checked against `max_pixels` before any pixel
    is decompressed, so a decompression bomb costs microseconds. Raises ImageError (one line) for an
    empty, oversized, non-PNG, truncated or corrupt payload. The returned array may be read-only.
    """
    if not payload:
        raise ImageError("empty payload: no image")
    if len(payload) > max_bytes:
        raise ImageError(f"image too big: {len(payload):,} bytes (limit {max_bytes:,})")
    width, height = png_size(payload)
    if width * height > max_pixels:
        raise ImageError(f"image too large: {width}x{height} pixels (limit {max_pixels:,})")
    grey = to_white_on_black(_to_grey(_open(payload, width * height)))
    if grey.shape != (SIDE, SIDE):
        grey = mnist_normalize(grey)
    return grey


def _ring(a: np.ndarray) -> np.ndarray:
    if a.shape[0] < 3 or a.shape[1] < 3:
        return a.ravel()
    return np.concatenate([a[0], a[-1], a[1:-1, 0], a[1:-1, -1]])


def mnist_normalize(gray: np.ndarray) -> np.ndarray:
    """Bring a white-on-black digit image of any size into MNIST form: uint8 28x28.

    First the image is cleaned: the background level (median of the border pixels; 0 for an image
    under 3 pixels on a side) is taken off, the contrast stretched so the brightest pixel is 255,
    and faint specks (under 10% of that range) cleared. Then, as MNIST itself was made, the ink's
    bounding box is scaled to fit a 20x20 box keeping the aspect ratio and pasted into 28x28 so
    its centre of mass lies at the centre. An image without ink (blank, uniform) gives all zeros.
    """
    a = np.asarray(gray)
    if a.ndim != 2 or a.dtype != np.uint8:
        raise ValueError(f"expected a 2-D uint8 array, got {a.ndim}-D {a.dtype}")
    out = np.zeros((SIDE, SIDE), np.uint8)
    if a.size == 0:
        return out
    lo = float(np.median(_ring(a))) if min(a.shape) >= 3 else 0.0
    hi = float(a.max())
    if hi - lo < 16:  # nothing stands out from the background
        return out
    s = (a.astype(np.float32) - lo) * (255.0 / (hi - lo))
    s[s < 25.5] = 0
    rows = np.flatnonzero(s.any(axis=1))
    cols = np.flatnonzero(s.any(axis=0))
    crop = np.clip(s[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], 0, 255)
    h, w = crop.shape
    scale = BOX / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    box = Image.fromarray(crop.astype(np.uint8)).resize((new_w, new_h), Image.Resampling.LANCZOS)
    b = np.asarray(box)
    mass = b.sum(dtype=np.float64)
    if mass == 0:
        return out
    cy = float((b.sum(axis=1) * np.arange(new_h)).sum() / mass)
    cx = float((b.sum(axis=0) * np.arange(new_w)).sum() / mass)
    top = min(max(round(CENTRE - cy), 0), SIDE - new_h)
    left = min(max(round(CENTRE - cx), 0), SIDE - new_w)
    out[top : top + new_h, left : left + new_w] = b
    return out


def encode_png(image: np.ndarray) -> bytes:
    """A 2-D uint8 array as 8-bit greyscale PNG bytes (deterministic for a given Pillow and zlib)."""
    a = np.asarray(image)
    if a.ndim != 2 or a.dtype != np.uint8:
        raise ValueError(f"expected a 2-D uint8 array, got {a.ndim}-D {a.dtype}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a)).save(buf, format="PNG", compress_level=9)
    return buf.getvalue()
