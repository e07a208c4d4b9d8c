"""engine.digits.preprocess: every PNG mode and size to a 28x28 white-on-black digit; bad payloads refused fast."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.digits.model import load_model
from engine.digits.preprocess import ImageError, decode_png, encode_png, mnist_normalize, to_white_on_black
from engine.errors import MnistError

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "mnist_images"
COUNT = 20  # digits per variant: enough to see a systematic failure, few enough to stay fast


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def make_png(pixels: np.ndarray, bit_depth: int, colour_type: int) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit colour or grey+alpha)."""
    h, w = pixels.shape[:2]
    dtype = ">u2" if bit_depth == 16 else "u1"
    raw = b"".join(b"\x00" + np.ascontiguousarray(row).astype(dtype).tobytes() for row in pixels)
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


def pillow_png(img: Image.Image, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **params)
    return buf.getvalue()


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """The first COUNT bundled digits (white on black, 28x28) and their labels."""
    lines = (ASSETS / "list.txt").read_text().splitlines()[:COUNT]
    images, labels = [], []
    for line in lines:
        name, label = line.split()
        images.append(np.asarray(Image.open(ASSETS / name)))
        labels.append(int(label))
    return np.stack(images), np.array(labels)


@pytest.fixture(scope="module")
def model():
    return load_model()


def accuracy(model, images: list[np.ndarray], labels: np.ndarray) -> float:
    return float((model.predict(np.stack(images)).argmax(1) == labels).mean())


def test_dataset_png_fast_path_is_pillows_pixels(digits):
    images, _ = digits
    for image in images:
        out = decode_png(encode_png(image))
        assert out.dtype == np.uint8 and out.shape == (28, 28)
        assert np.array_equal(out, image)


def _variants(image: np.ndarray) -> dict[str, bytes]:
    """The same white-on-black 28x28 digit in every PNG mode."""
    img = Image.fromarray(image)
    wide = image.astype(np.uint16) * 257
    return {
        "1": pillow_png(img.point(lambda v: 255 if v >= 128 else 0).convert("1")),
        "L": pillow_png(img),
        "LA": pillow_png(Image.merge("LA", [img, Image.new("L", img.size, 255)])),
        "RGB": pillow_png(img.convert("RGB")),
        "RGBA": pillow_png(img.convert("RGBA")),
        "P": pillow_png(img.convert("P", palette=Image.Palette.ADAPTIVE, colors=256)),
        "P+tRNS": pillow_png(img.convert("P", palette=Image.Palette.ADAPTIVE, colors=256), transparency=0),
        "L+tRNS": pillow_png(img, transparency=0),
        "I;16": make_png(wide, 16, 0),
        "LA 16-bit": make_png(np.stack([wide, np.full_like(wide, 65535)], -1), 16, 4),
        "RGB 16-bit": make_png(np.stack([wide] * 3, -1), 16, 2),
        "RGBA 16-bit": make_png(np.stack([wide] * 3 + [np.full_like(wide, 65535)], -1), 16, 6),
        "optimized": pillow_png(img, optimize=True),
        "P 4-bit": pillow_png(img.convert("P", palette=Image.Palette.ADAPTIVE, colors=16), bits=4),
    }


def test_every_mode_at_28x28_gives_the_same_digit(digits):
    images, _ = digits
    for image in images[:5]:
        for mode, payload in _variants(image).items():
            out = decode_png(payload)
            assert out.dtype == np.uint8 and out.shape == (28, 28), mode
            if mode == "1":  # thresholded: compare with the thresholded digit
                assert np.array_equal(out, np.where(image >= 128, 255, 0).astype(np.uint8)), mode
            elif mode == "P 4-bit":  # 16 grey levels
                assert np.abs(out.astype(int) - image).max() <= 24, mode
            else:
                assert np.array_equal(out, image), mode


def test_transparent_canvas_strokes_survive_in_either_colour(digits, model):
    images, labels = digits
    for ink in (0, 255):  # black strokes or white strokes on a fully transparent background
        decoded = []
        for image in images:
            grey = np.full(image.shape, ink, np.uint8)
            rgba = np.stack([grey, grey, grey, image], -1)  # the digit lives in the alpha channel
            decoded.append(decode_png(pillow_png(Image.fromarray(rgba, "RGBA"))))
        assert accuracy(model, decoded, labels) >= 0.9, ink
        assert np.abs(decoded[0].astype(int) - images[0]).max() <= 1


def test_dark_on_light_digit_is_inverted_and_recognized(digits, model):
    images, labels = digits
    decoded = [decode_png(pillow_png(Image.fromarray(255 - image))) for image in images]
    for out, image in zip(decoded, images, strict=True):
        assert np.array_equal(out, image)
    assert accuracy(model, decoded, labels) >= 0.9


def test_grey_paper_photo_is_inverted():
    # Dim grey paper (120) with a darker stroke (40): the border is above the midrange, so it is inverted.
    paper = np.full((28, 28), 120, np.uint8)
    paper[6:22, 13:15] = 40
    out = decode_png(encode_png(paper))
    assert out[0, 0] < out[10, 13]


def test_to_white_on_black_leaves_black_borders_and_uniform_images_alone():
    blank_white = np.full((28, 28), 255, np.uint8)
    assert to_white_on_black(blank_white) is blank_white
    digit = np.zeros((28, 28), np.uint8)
    digit[0, 5] = 255  # a stroke touching the border is not a bright background
    digit[5:20, 10:13] = 255
    assert to_white_on_black(digit) is digit


@pytest.mark.parametrize(("scale", "canvas"), [(2.0, (56, 56)), (3.0, (140, 100)), (0.6, (17, 23)), (10.0, (300, 290))])
def test_other_sizes_become_mnist_form(digits, model, scale, canvas):
    """The digit scaled (aspect kept) onto a canvas of another size and shape, as an RGB PNG."""
    images, labels = digits
    decoded = []
    for image in images:
        side = round(28 * scale)
        big = Image.fromarray(image).resize((side, side), Image.Resampling.BILINEAR)
        page = Image.new("L", (max(side, canvas[0]), max(side, canvas[1])))
        page.paste(big, ((page.width - side) // 3, (page.height - side) // 2))
        out = decode_png(pillow_png(page.crop((0, 0, *canvas)).convert("RGB")))
        assert out.dtype == np.uint8 and out.shape == (28, 28)
        decoded.append(out)
    if scale >= 1:  # a 17-pixel thumbnail loses too much to expect a right answer
        assert accuracy(model, decoded, labels) >= 0.9


def test_small_dark_digit_in_a_corner_of_a_big_white_image(digits, model):
    images, labels = digits
    decoded, normalized = [], []
    for image in images:
        small = np.asarray(Image.fromarray(image).resize((14, 14), Image.Resampling.LANCZOS))
        canvas = np.full((480, 640), 255, np.uint8)
        canvas[10:24, 600:614] = 255 - small  # dark ink on white paper, top right corner
        decoded.append(decode_png(pillow_png(Image.fromarray(canvas).convert("RGB"))))
        white_on_black = 255 - canvas
        normalized.append(mnist_normalize(white_on_black))
    assert accuracy(model, decoded, labels) >= 0.9
    assert accuracy(model, normalized, labels) >= 0.9
    assert np.array_equal(decoded[0], normalized[0])


def test_mnist_normalize_frames_like_mnist(digits):
    images, _ = digits
    for image in images:
        out = mnist_normalize(np.pad(image, 40))  # lots of empty space around the digit
        rows, cols = np.flatnonzero(out.any(1)), np.flatnonzero(out.any(0))
        assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 == 20  # fitted into 20x20
        mass = out.sum(dtype=float)
        cy = (out.sum(1) * np.arange(28)).sum() / mass
        cx = (out.sum(0) * np.arange(28)).sum() / mass
        assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1  # centre of mass at the centre


def test_mnist_normalize_edge_cases():
    assert not mnist_normalize(np.zeros((50, 70), np.uint8)).any()
    assert not mnist_normalize(np.full((9, 9), 200, np.uint8)).any()
    assert not mnist_normalize(np.zeros((0, 0), np.uint8)).any()
    dot = np.zeros((1, 1), np.uint8) + 255
    assert mnist_normalize(dot).max() == 255
    line = np.zeros((5, 200), np.uint8)
    line[2, 10:190] = 255
    assert mnist_normalize(line).shape == (28, 28)
    with pytest.raises(ValueError):
        mnist_normalize(np.zeros((28, 28), np.float32))
    with pytest.raises(ValueError):
        mnist_normalize(np.zeros((2, 28, 28), np.uint8))


def test_encode_png_round_trip():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (31, 17), dtype=np.uint8)
    payload = encode_png(image)
    assert payload.startswith(b"\x89PNG\r\n\x1a\n")
    assert encode_png(image) == payload
    with Image.open(io.BytesIO(payload)) as img:
        assert img.mode == "L" and np.array_equal(np.asarray(img), image)
    with pytest.raises(ValueError):
        encode_png(np.zeros((28, 28, 3), np.uint8))


def _bomb_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height grey pixels; its one IDAT holds a few rows of zeros."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1) * 4)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _bad_payloads() -> dict[str, bytes]:
    good = encode_png(np.eye(28, dtype=np.uint8) * 255)
    flipped = bytearray(good)
    flipped[45] ^= 0xFF  # inside IDAT: the CRC no longer matches
    return {
        "empty": b"",
        "random bytes": os.urandom(500),
        "text": b"hello world",
        "jpeg": b"\xff\xd8\xff\xe0" + os.urandom(100),
        "signature only": good[:8],
        "half a signature": good[:4],
        "truncated header": good[:20],
        "truncated PNG": good[: len(good) // 2],
        "corrupt data": bytes(flipped),
        "2 MB": good + b"\0" * 2_000_000,
        "100000x100000": _bomb_header(100_000, 100_000),
        "zero size": _bomb_header(0, 28),
        "not IHDR first": good[:12] + b"IHDX" + good[16:],
    }


@pytest.mark.parametrize("name", list(_bad_payloads()))
def test_bad_payloads_give_one_line_image_errors(name):
    payload = _bad_payloads()[name]
    with pytest.raises(ImageError) as info:
        decode_png(payload)
    message = str(info.value)
    assert message and "\n" not in message and len(message) < 200
    assert isinstance(info.value, MnistError)
    assert "Traceback" not in message


def test_limits_are_honoured():
    payload = encode_png(np.zeros((100, 100), np.uint8))
    with pytest.raises(ImageError, match="too big"):
        decode_png(payload, max_bytes=len(payload) - 1)
    with pytest.raises(ImageError, match="100x100"):
        decode_png(payload, max_pixels=9_999)
    assert decode_png(payload, max_bytes=len(payload), max_pixels=10_000).shape == (28, 28)


def test_pillows_own_bomb_guard_becomes_an_image_error():
    # With our pixel limit lifted beyond Pillow's, Pillow's decompression bomb check still refuses it.
    with pytest.raises(ImageError, match="too large"):
        decode_png(_bomb_header(100_000, 100_000), max_pixels=10**12)


def test_palette_png_without_plte_is_an_image_error() -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 28, 28, 8, 3, 0, 0, 0)  # colour type 3 = palette, but no PLTE follows
    idat = chunk(b"IDAT", zlib.compress(b"\x00" * 29 * 28))
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")
    with pytest.raises(ImageError, match="PLTE"):
        decode_png(png)
