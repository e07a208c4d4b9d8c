"""Hostile input, fuzzed: malformed image payloads through a real mosquitto to a real worker, garbage
control commands to every role, and property tests of the decoders themselves.

The image generator is seeded (reproducible): random bytes, truncated and corrupted PNGs, PNGs that
declare huge sizes, every PNG colour type and bit depth (also interlaced, also broken), hand-made
28x28 grey PNGs with bad filters and bad zlib streams (the worker's fast decoding path), empty
payloads, payloads over the size limit, and `mnist` tEXt chunks with garbage metadata.
"""

from __future__ import annotations

import io
import json
import random
import struct
import threading
import zlib
from collections import Counter
from collections.abc import Iterator
from functools import cache

import numpy as np
import psutil
import pytest
from fault_helpers import ASSETS, model, publish_raw, results, tagged, wait_answered
from helpers import wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from engine.digits.preprocess import ImageError, decode_png
from engine.protocol import extract_meta
from engine.roles.pipeline import LocalPipeline
from engine.roles.worker import Worker
from engine.settings import Settings

SIG = b"\x89PNG\r\n\x1a\n"
IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
MAX_PAYLOAD = 16_384  # the worker under test refuses bigger payloads (the default is 1 MiB)
N_IMAGES = 10_000



# --------------------------------------------------------------------------------------------------
# Building PNGs by hand
# --------------------------------------------------------------------------------------------------

def chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc & 0xFFFFFFFF)


def ihdr(width: int, height: int, depth: int = 8, colour: int = 0, interlace: int = 0) -> bytes:
    return chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace))


def meta_chunk(meta: object) -> bytes:
    text = meta if isinstance(meta, bytes) else json.dumps(meta).encode("latin-1", "replace")
    return chunk(b"tEXt", b"mnist\x00" + text)


def with_id(body: bytes, msg_id: str) -> bytes:
    """`body` (any bytes) followed by our metadata chunk and IEND: the worker can read the id even when
    everything before is broken, as a truncated stream that was re-terminated would be."""
    return body + meta_chunk({"id": msg_id}) + IEND


CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
VALID_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}


def raw_png(rng: random.Random, width: int, height: int, depth: int, colour: int, interlace: int = 0,
            filters: tuple[int, ...] = (0, 1, 2, 3, 4)) -> bytes:
    """A PNG of random pixels with the given header, scanlines filtered with random filter types."""
    bits = width * CHANNELS.get(colour, 1) * depth
    row = (bits + 7) // 8
    rows = height if not interlace else height * 2  # interlaced: about right, and often wrong: fine
    raw = b"".join(bytes([rng.choice(filters)]) + rng.randbytes(row) for _ in range(rows))
    plte = chunk(b"PLTE", rng.randbytes(3 * rng.randint(1, 256))) if colour == 3 and rng.random() < 0.9 else b""
    return SIG + ihdr(width, height, depth, colour, interlace) + plte + chunk(b"IDAT", zlib.compress(raw))


def pillow_png(rng: random.Random, mode: str) -> bytes:
    size = (rng.randint(1, 64), rng.randint(1, 64))
    img = Image.frombytes("L", size, rng.randbytes(size[0] * size[1])).convert(mode)
    extra = {}
    if mode in ("L", "RGB", "P") and rng.random() < 0.3:
        extra["transparency"] = 0 if mode != "RGB" else (0, 0, 0)
    buf = io.BytesIO()
    img.save(buf, "PNG", **extra)
    return buf.getvalue()


GARBAGE_META: list[bytes | object] = [
    b"{not json", b"\xff\xfe\x00", b"", b"null", b"[1, 2, 3]", b'"just a string"', b"1e999",
    b"[" * 5000 + b"]" * 5000, b'{"id": ' + b"[" * 3000 + b"]" * 3000 + b"}",
    {"id": ["a", "list"]}, {"id": {"nested": 1}}, {"id": None}, {"id": True}, {"id": 1.5},
    {"id": "x" * 5000}, {"id": "tab\tnewline\n"}, {"id": ""}, {"label": 10}, {"label": -1},
    {"label": "7"}, {"label": True}, {"t": "yesterday"}, {"t": -5}, {"t": 1e300}, {"src": ["x"]},
    b'{"t": NaN, "label": Infinity}', {"id": "\u2603 snowman"}, {"unknown": "field"},
]


@cache
def zeros_idat(side: int) -> bytes:
    """An IDAT of all-zero scanlines for a side x side grey image (at most 4 MB of them, compressed)."""
    return chunk(b"IDAT", zlib.compress(b"\x00" * min(side * (side + 1), 4_000_000), 9))


def digits() -> list[bytes]:
    return [(ASSETS / f"{i}.png").read_bytes() for i in range(20)]


def malformed(seed: int, n: int) -> Iterator[tuple[str, bytes, str | None]]:
    """(kind, payload, id the worker must report or None) for n hostile payloads."""
    rng = random.Random(seed)
    good = digits()
    for i in range(n):
        mid = f"fz{i}"
        kind = rng.choice(KINDS)
        base = rng.choice(good)
        body = base[: -len(IEND)]
        if kind == "random":
            payload = rng.randbytes(rng.randint(1, 600))
            if rng.random() < 0.3:
                payload = SIG + payload
            yield kind, payload, None
        elif kind == "empty":
            yield kind, b"", None
        elif kind == "truncated":
            if rng.random() < 0.5:
                yield kind, base[: rng.randint(0, len(base) - 1)], None
            else:  # metadata is read from PNGs only: keep the signature
                yield kind, with_id(base[: rng.randint(8, len(base) - 1)], mid), mid
        elif kind == "corrupted":
            data = bytearray(body)
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(8, len(data))] = rng.randrange(256)
            yield kind, with_id(bytes(data), mid), mid
        elif kind == "corrupted-idat-crc-ok":  # gets past every CRC check, into zlib and the filters
            at = base.index(b"IDAT") - 4
            length = struct.unpack(">I", base[at : at + 4])[0]
            data = bytearray(base[at + 8 : at + 8 + length])
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            yield kind, with_id(base[:at] + chunk(b"IDAT", bytes(data)), mid), mid
        elif kind == "huge":
            w = rng.choice([0, 2**31 - 1, 2**32 - 1, 100_000, rng.randint(2_001, 70_000)])  # > 4M pixels or 0
            h = rng.choice([0, 2**31 - 1, 100_000, rng.randint(2_001, 70_000)])
            idat = chunk(b"IDAT", zlib.compress(b"\x00" * rng.randint(0, 5000)))
            yield kind, with_id(SIG + ihdr(w, h, rng.choice([1, 8, 16]), rng.choice([0, 2, 6])) + idat, mid), mid
        elif kind == "bomb":  # a few KB that inflate a thousandfold, declaring a size within the limit or not
            side = rng.choice([28, 300, 5_000, 20_000, 65_000])
            yield kind, with_id(SIG + ihdr(side, side) + zeros_idat(side), mid), mid
        elif kind == "modes":
            colour = rng.choice(list(VALID_DEPTHS) + [1, 5, 7])  # 1, 5, 7: no such colour type
            depth = rng.choice(VALID_DEPTHS.get(colour, (8,)) + (rng.choice([0, 3, 5, 32]),) * (rng.random() < 0.1))
            png = raw_png(rng, rng.randint(1, 40), rng.randint(1, 40), depth, colour, interlace=int(rng.random() < 0.3))
            yield kind, with_id(png, mid), mid
        elif kind == "pillow-modes":
            png = pillow_png(rng, rng.choice(["1", "L", "LA", "P", "RGB", "RGBA", "I;16"]))
            yield kind, with_id(png[: -len(IEND)], mid), mid
        elif kind == "grey28":  # the fast path: good, bad filter bytes, short, long or trailing streams
            png = raw_png(rng, 28, 28, 8, 0, filters=(0, 1, 2, 3, 4) if rng.random() < 0.7 else (0, 5, 255))
            if rng.random() < 0.3:
                at = png.index(b"IDAT") - 4
                raw = zlib.decompress(png[at + 8 : -4])
                variant = rng.choice([raw[:-1], raw + b"\x00", raw[: rng.randrange(len(raw))]])
                stream = zlib.compress(variant)
                if rng.random() < 0.3:
                    stream += b"trailing"
                png = png[:at] + chunk(b"IDAT", stream)
            yield kind, with_id(png, mid), mid
        elif kind == "oversize":
            pad = rng.randint(MAX_PAYLOAD, MAX_PAYLOAD * 3)
            yield kind, body + chunk(b"tEXt", b"pad\x00" + b"x" * pad) + meta_chunk({"id": mid}) + IEND, mid
        elif kind == "garbage-meta":  # the id, when one survives, starts with the case's own
            meta = rng.choice(GARBAGE_META)
            if isinstance(meta, dict) and isinstance(meta.get("id"), str):
                meta = meta | {"id": f"{mid}-{meta['id']}"}
            extra = meta_chunk(meta)
            if rng.random() < 0.2:  # a chunk whose length field lies
                extra = struct.pack(">I", rng.randint(0, 2**32 - 1)) + extra[4:]
            yield kind, body + extra + IEND, None
        else:  # pragma: no cover
            raise AssertionError(kind)


KINDS = ["random", "empty", "truncated", "corrupted", "corrupted-idat-crc-ok", "huge", "bomb", "modes",
         "pillow-modes", "grey28", "oversize", "garbage-meta"]


class PeakRss:
    """Samples this process's resident memory in a thread; `.peak` is the highest seen."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.start = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak - self.start


# --------------------------------------------------------------------------------------------------
# 10,000 hostile images through mosquitto to a worker
# --------------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.needs_mosquitto
def test_worker_answers_every_malformed_payload_once(mosquitto_broker, probe_factory) -> None:
    cases = list(malformed(seed=20240611, n=N_IMAGES))
    kinds = Counter(kind for kind, _, _ in cases)
    assert set(kinds) == set(KINDS), kinds
    addr = mosquitto_broker.address
    answers = probe_factory(addr, "result")
    sender = probe_factory(addr)
    worker = Worker(addr, Settings(qos=1, max_payload=MAX_PAYLOAD), "fuzz", model=model())
    worker.start()
    try:
        assert worker.wait_ready(30)
        publish_raw(sender.client, "mnist", [tagged("warm-up")])  # model and decoders warm
        wait_answered(answers, ["warm-up"])
        memory = PeakRss()
        try:
            publish_raw(sender.client, "mnist", (payload for _, payload, _ in cases))
            wait_for(lambda: len(answers.messages()) >= N_IMAGES + 1, 120,
                     message=lambda: f"{len(answers.messages()) - 1} of {N_IMAGES} answered")
        finally:
            growth = memory.stop()
        publish_raw(sender.client, "mnist", [tagged("after", label=0)])
        wait_answered(answers, ["after"])
    finally:
        worker.stop()

    found = results(answers)
    by_id = Counter(r["id"] for r in found)
    assert len(found) == N_IMAGES + 2 and len(by_id) == N_IMAGES + 2, "one result per payload, ids unique"
    expected = {mid for _, _, mid in cases if mid is not None}
    assert expected <= set(by_id), f"lost ids: {sorted(expected - set(by_id))[:10]}"
    garbage = {f"fz{i}" for i, (kind, _, _) in enumerate(cases) if kind == "garbage-meta"}
    assert all(i in expected or i.startswith("fuzz:") or i.split("-", 1)[0] in garbage
               for i in by_id if i not in ("warm-up", "after")), "the others got the worker's own ids"
    for r in found:
        assert ("error" in r) != ("pred" in r), r
        if "error" in r:
            assert r["error"] and "\n" not in r["error"] and len(r["error"]) < 300, r
        else:
            assert 0 <= r["pred"] <= 9 and len(r["probs"]) == 10
    outcome = {r["id"]: "error" if "error" in r else "pred" for r in found}
    by_kind = Counter((kind, outcome[mid]) for kind, _, mid in cases if mid is not None)
    assert all(outcome[mid] == "error" for kind, _, mid in cases if kind in ("oversize", "huge") and mid)
    assert "pred" in next(r for r in found if r["id"] == "after"), "a good image is still classified"
    assert worker.errors == sum(1 for r in found if "error" in r)
    assert growth < 150 * 2**20, f"memory grew by {growth / 2**20:.0f} MiB"
    internal = sum(1 for r in found if r.get("error", "").startswith("internal error"))
    print(f"\nRELIABILITY fuzz-images: payloads={N_IMAGES}, results={len(found) - 2}, "
          f"errors={worker.errors}, predictions={N_IMAGES - worker.errors}, internal_errors={internal}, "
          f"peak_rss_growth_mib={growth / 2**20:.1f}, by_kind={dict(sorted(by_kind.items()))}")


# --------------------------------------------------------------------------------------------------
# Garbage control commands to every role
# --------------------------------------------------------------------------------------------------

BAD_ANY = [
    b"", b"{not json", b"\xff\xfe\xfd", b"null", b"[]", b'"start"', b"42", b"{}", b'{"cmd": 5}',
    b'{"cmd": ""}', b'{"cmd": null}', b'{"cmd": ["start"]}', b'{"req": "x"}', b"x" * 300_000,
    b'{"cmd": "set", "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
]
BAD_ARGS = {
    "input": [
        {"cmd": "rate", "value": v} for v in (-1, 100_001, "fast", None, True, 1e400, [1])
    ] + [{"cmd": "rate"}, {"cmd": "step", "n": 0}, {"cmd": "step", "n": -3}, {"cmd": "step", "n": 10**7},
         {"cmd": "step", "n": "2"}, {"cmd": "start", "count": 0}, {"cmd": "start", "count": "many"},
         {"cmd": "start", "count": 10**13}, {"cmd": "set"}, {"cmd": "set", "speed": 3},
         {"cmd": "set", "qos": 3}, {"cmd": "set", "qos": -1}, {"cmd": "set", "qos": 1.5},
         {"cmd": "set", "qos": "1"}, {"cmd": "set", "order": "random"}, {"cmd": "set", "order": 5},
         {"cmd": "set", "loop": "yes"}, {"cmd": "set", "loop": 1}, {"cmd": "set", "rate": -2},
         {"cmd": "set", "qos": 1, "order": "bad"}],
    "infer": [{"cmd": "set"}, {"cmd": "set", "threads": 2}, {"cmd": "set", "max_batch": 0},
              {"cmd": "set", "max_batch": 1025}, {"cmd": "set", "max_batch": "8"},
              {"cmd": "set", "max_batch": None}, {"cmd": "set", "max_delay_ms": -1},
              {"cmd": "set", "max_delay_ms": 1001}, {"cmd": "set", "max_delay_ms": "2"},
              {"cmd": "set", "max_batch": 8, "max_delay_ms": 5000}],
    "output": [],
}
RAW_NON_FINITE = {"input": [b'{"cmd": "rate", "value": NaN}', b'{"cmd": "rate", "value": Infinity}'],
                  "infer": [b'{"cmd": "set", "max_delay_ms": NaN}'], "output": []}


def bad_commands(role: str, rng: random.Random, known: set[str]) -> list[bytes]:
    found = list(BAD_ANY) + RAW_NON_FINITE[role]
    found += [json.dumps(c).encode() for c in BAD_ARGS[role]]
    while len(found) < 150:
        name = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz_-/#+ \u00e9") for _ in range(rng.randint(1, 12)))
        if name not in known:
            found.append(json.dumps({"cmd": name, "req": rng.random(), "value": rng.random()}).encode())
        found.append(rng.randbytes(rng.randint(1, 80)))
    return found


@pytest.mark.needs_mosquitto
def test_every_role_answers_garbage_commands_and_keeps_going(mosquitto_broker, probe_factory) -> None:
    addr = mosquitto_broker.address
    rng = random.Random(7)
    with LocalPipeline(Settings(rate=7), address=addr) as pipeline:
        replies = probe_factory(addr, "mnist/reply/#")
        ctl = probe_factory(addr)
        sent: Counter[str] = Counter()
        for role in pipeline.roles:
            for i, payload in enumerate(bad_commands(role.role, rng, set(role.commands))):
                # alternately to the role itself and to every role of its kind
                topic = f"mnist/control/{role.role}" + (f"/{role.client_id}" if i % 2 else "")
                ctl.client.publish(topic, payload, qos=1)
                sent[role.role] += 1

        def answered() -> Counter[str]:
            return Counter(m.topic.split("/")[2] for m in replies.messages())

        wait_for(lambda: answered() == sent, 60, message=lambda: f"answers {dict(answered())} for {dict(sent)}")
        answers = [json.loads(m.payload) for m in replies.messages()]
        assert all(a["ok"] is False and a["error"] and "\n" not in a["error"] for a in answers), \
            [a for a in answers if a["ok"] or "\n" in a.get("error", "")][:3]
        assert max(len(m.payload) for m in replies.messages()) < 400, "answers stay short whatever was sent"
        # nothing changed, and every role still works
        publisher, worker = pipeline.role("input"), pipeline.role("infer")
        assert publisher.rate == 7 and publisher.qos == 0 and publisher.state == "stopped"
        assert worker.max_batch == 64 and worker.max_delay == 0.002
        for role in pipeline.roles:
            ctl.publish(f"mnist/control/{role.role}/{role.client_id}", b'{"cmd": "ping", "req": "alive"}', qos=1)
        wait_for(lambda: sum(1 for m in replies.messages() if b'"alive"' in m.payload) == 3,
                 message="a role stopped answering")
        assert all(json.loads(m.payload)["ok"] for m in replies.messages() if b'"alive"' in m.payload)
        ctl.publish(f"mnist/control/input/{publisher.client_id}", b'{"cmd": "step", "n": 3}', qos=1)
        collector = pipeline.role("output")
        wait_for(lambda: collector.received == 3, message="the pipeline no longer classifies")
        print(f"\nRELIABILITY fuzz-commands: {dict(sent)} garbage commands, all answered ok:false")


# --------------------------------------------------------------------------------------------------
# The decoders alone, property-tested
# --------------------------------------------------------------------------------------------------

def _check_decode(payload: bytes) -> None:
    try:
        image = decode_png(payload, max_bytes=MAX_PAYLOAD)
    except ImageError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert image.shape == (28, 28) and image.dtype == np.uint8
    extract_meta(payload)  # never raises


FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.binary(max_size=2000))
def test_decode_png_takes_any_bytes(payload: bytes) -> None:
    _check_decode(payload)
    _check_decode(SIG + payload)


@FAST
@given(st.sampled_from(range(20)), st.lists(st.tuples(st.integers(8, 10_000), st.integers(0, 255)), max_size=6),
       st.integers(0, 400))
def test_decode_png_takes_any_damaged_digit(which: int, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray((ASSETS / f"{which}.png").read_bytes())
    for pos, value in flips:
        data[pos % len(data)] = value
    _check_decode(bytes(data[: len(data) - cut]))


@FAST
@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.sampled_from([1, 2, 4, 8, 16, 3]),
       st.sampled_from([0, 2, 3, 4, 6, 5]), st.integers(0, 1), st.binary(max_size=300))
def test_decode_png_takes_any_header(width: int, height: int, depth: int, colour: int, interlace: int,
                                     idat: bytes) -> None:
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace))
    _check_decode(SIG + header + chunk(b"IDAT", zlib.compress(idat)) + IEND)


@FAST
@given(st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=30),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=20))
def test_extract_meta_takes_any_json(value: object) -> None:
    png = (ASSETS / "0.png").read_bytes()[: -len(IEND)]
    meta = extract_meta(png + chunk(b"tEXt", b"mnist\x00" + json.dumps(value).encode("utf-8")) + IEND)
    assert meta.id is None or (isinstance(meta.id, str) and meta.id.isprintable() and len(meta.id) <= 128)
    assert meta.label is None or 0 <= meta.label <= 9
