"""The worker's fast paths give exactly what the plain paths give: batched PNG decode and result JSON."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest

from engine.digits.dataset import load_dataset
from engine.digits.fastpng import decode_batch, inflate_grey28
from engine.digits.preprocess import decode_png, encode_png
from engine.protocol import embed_meta
from engine.result_json import encode_results
from engine.settings import DEFAULT_DATASET


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _filter_row(kind: int, row: np.ndarray, prev: np.ndarray) -> bytes:
    """PNG filter `kind` applied to one row (the encoder side, written out plainly)."""
    out = []
    for i in range(len(row)):
        x, a, b = int(row[i]), int(row[i - 1]) if i else 0, int(prev[i])
        c = int(prev[i - 1]) if i else 0
        if kind == 0:
            pred = 0
        elif kind == 1:
            pred = a
        elif kind == 2:
            pred = b
        elif kind == 3:
            pred = (a + b) // 2
        else:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        out.append((x - pred) & 0xFF)
    return bytes([kind, *out])


def png_with_filters(image: np.ndarray, filters: list[int], extra_chunks: bytes = b"") -> bytes:
    rows, prev = [], np.zeros(image.shape[1], np.uint8)
    for r, kind in enumerate(filters):
        rows.append(_filter_row(kind, image[r], prev))
        prev = image[r]
    ihdr = struct.pack(">IIBBBBB", image.shape[1], image.shape[0], 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + extra_chunks
            + _chunk(b"IDAT", zlib.compress(b"".join(rows))) + _chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def digits() -> list[bytes]:
    return [s.png for s in load_dataset(DEFAULT_DATASET)[:300]]


def test_shipped_digits_decode_as_decode_png_does(digits: list[bytes]) -> None:
    payloads = [embed_meta(p, {"id": f"x-{i}", "label": 1, "t": 1.5, "src": "x"}) for i, p in enumerate(digits)]
    raws = [inflate_grey28(p) for p in payloads]
    assert all(r is not None for r in raws)
    fast = np.concatenate([decode_batch(raws[i : i + 64]) for i in range(0, len(raws), 64)])
    assert np.array_equal(fast, np.stack([decode_png(p) for p in payloads]))


@pytest.mark.parametrize("kind", [0, 1, 2, 3, 4])
def test_every_png_filter_type(kind: int) -> None:
    rng = np.random.default_rng(kind)
    images = [rng.integers(0, 256, (28, 28), dtype=np.uint8) for _ in range(5)]
    mixed = [png_with_filters(img, [kind if r % 2 else (r // 2) % 5 for r in range(28)]) for img in images]
    plain = [png_with_filters(img, [kind] * 28) for img in images]
    payloads = mixed + plain
    got = decode_batch([inflate_grey28(p) for p in payloads])
    assert np.array_equal(got, np.stack([decode_png(p) for p in payloads]))


def test_dark_digits_on_light_ground_are_inverted_like_decode_png(digits: list[bytes]) -> None:
    light = [encode_png(255 - decode_png(p)) for p in digits[:20]]
    got = decode_batch([inflate_grey28(p) for p in light] + [inflate_grey28(digits[0])])
    assert np.array_equal(got, np.stack([decode_png(p) for p in [*light, digits[0]]]))


def test_anything_unusual_is_left_to_decode_png(digits: list[bytes]) -> None:
    good = digits[0]
    image = decode_png(good)
    bad_crc = bytearray(good)
    bad_crc[-20] ^= 0xFF  # inside the IDAT data or its CRC
    trns = png_with_filters(image, [0] * 28, _chunk(b"tRNS", b"\x00\x00"))
    cases = [
        b"", b"not a png", good[:40], bytes(bad_crc), trns,
        encode_png(np.zeros((20, 20), np.uint8)),  # another size
        png_with_filters(image, [0] * 27),  # a row short
        good.replace(b"IEND", b"IENX"),  # no IEND
    ]
    assert all(inflate_grey28(p) is None for p in cases)
    assert inflate_grey28(png_with_filters(image, [0] * 28, _chunk(b"tEXt", b"Comment\x00hi"))) is not None


def _plain_json(head: dict, probs: np.ndarray, i: int, model: str, worker: str, t_recv: float, t_done: float,
                n: int) -> bytes:
    p = probs[i]
    pred = int(p.argmax())
    obj = {"id": head["id"], "label": head["label"], "worker": worker, "src": head["src"], "t_sent": head["t_sent"],
           "pred": pred, "conf": round(float(p[pred]), 4), "probs": [round(float(x), 4) for x in p],
           "model": model, "t_recv": t_recv, "t_done": t_done, "batch": n}
    return json.dumps(obj, separators=(",", ":")).encode()


def test_result_json_is_byte_for_byte_json_dumps() -> None:
    rng = np.random.default_rng(7)
    probs = rng.dirichlet(np.full(10, 0.1), size=300).astype(np.float32)
    probs[0] = 0.0
    probs[0, 4] = 1.0
    heads = [{"id": f"in-\u00e9\"{i}\\", "label": i % 10 if i % 3 else None, "src": None if i % 5 == 0 else "src-1",
              "t_sent": None if i % 7 == 0 else 1764108000.123456 + i} for i in range(300)]
    t_recvs = [1764108000.5 + i / 1000 for i in range(300)]
    got = encode_results(heads, probs, "lenet5@0123abcd", "infer-1", t_recvs, 1764108001.25)
    want = [_plain_json(h, probs, i, "lenet5@0123abcd", "infer-1", t_recvs[i], 1764108001.25, 300)
            for i, h in enumerate(heads)]
    assert got == want
