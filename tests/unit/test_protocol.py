"""Wire format: PNG metadata chunks, results (ours and the original demo's), commands, topic names."""

import io
import json

import pytest
from PIL import Image

from engine.errors import ConfigError
from engine.mqtt.address import BrokerAddress
from engine.protocol import (
    CommandError,
    MetaStamp,
    embed_meta,
    extract_meta,
    parse_command,
    parse_result,
    published_at,
)
from engine.topics import Topics, sanitize_id


def _png(size: int = 28) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (size, size), 0).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize(("src", "label", "t"), [
    ("input-host-12", 7, 1764108000.123456),
    ("input-host-12", None, 1e-7),
    ("înput \"quoted\" ☃", 0, 1764108000.0),  # escaped as json.dumps escapes it
    ("input-1", True, 5.0),  # a bool label: json.dumps writes true
    ("input-1", 3, float("inf")),  # json.dumps writes Infinity
    ("input-1", 3, 17),  # an int time
])
def test_a_stamp_is_the_same_bytes_as_embed_meta(src: str, label: object, t: object) -> None:
    png = _png()
    stamp = MetaStamp(f"{src}-", src)
    for seq in (0, 1, 123456789):
        made = stamp.stamp(png, seq, label, t)  # type: ignore[arg-type]
        assert made == embed_meta(png, {"id": f"{src}-{seq}", "label": label, "t": t, "src": src})
    Image.open(io.BytesIO(stamp.stamp(png, 5, 1, 1.5))).load()  # a valid PNG: its CRCs check
    with pytest.raises(ValueError, match="IEND"):
        stamp.stamp(png[:-1], 1, 1, 1.5)


def test_metadata_round_trip_keeps_a_valid_png() -> None:
    png = _png()
    tagged = embed_meta(png, {"id": "input-1-42", "label": 7, "t": 1764108000.5, "src": "input-1"})
    meta = extract_meta(tagged)
    assert (meta.id, meta.label, meta.t, meta.src) == ("input-1-42", 7, 1764108000.5, "input-1")
    image = Image.open(io.BytesIO(tagged))
    image.load()  # CRCs and chunk order are valid: Pillow decodes it
    assert image.size == (28, 28)
    assert image.text.get("mnist") is not None


@pytest.mark.parametrize(
    "payload",
    [b"", b"hello", _png(), b"\x89PNG\r\n\x1a\n" + b"\x00" * 30,
     embed_meta(_png(), {"id": "x"})[:-20]],
)
def test_missing_or_broken_metadata_gives_empty_meta(payload: bytes) -> None:
    meta = extract_meta(payload)
    assert meta.label is None and meta.t is None


def test_garbage_metadata_values_are_dropped_and_hidden_characters_escaped() -> None:
    tagged = embed_meta(_png(), {"id": "\x00bad", "label": 12, "t": "soon", "src": ["x"]})
    meta = extract_meta(tagged)
    assert meta == type(meta)(id="\\x00bad")


def test_results_ours_legacy_and_errors() -> None:
    ours = parse_result(json.dumps({"id": "a", "pred": 3, "label": 3, "conf": 0.9, "probs": [0.1] * 10}).encode())
    assert ours.pred == 3 and ours.correct is True
    legacy = parse_result(b"tensor([7])")
    assert legacy.pred == 7 and legacy.legacy and legacy.id is None
    error = parse_result(json.dumps({"id": "b", "error": "not a PNG"}).encode())
    assert error.error == "not a PNG" and error.pred is None and error.correct is None
    for bad in (b"\xff\xfe", b"tensor([12])", b"[1,2]", b'{"id": "c", "pred": 11}'):
        with pytest.raises(ValueError):
            parse_result(bad)


def test_commands() -> None:
    assert parse_command(b'{"cmd": "rate", "value": 5, "req": "r1"}') == ("rate", {"value": 5}, "r1")
    for bad in (b"", b"{", b"[]", b'{"value": 1}', b'{"cmd": 3}'):
        with pytest.raises(CommandError):
            parse_command(bad)


def test_client_ids_cannot_inject_topic_levels() -> None:
    assert sanitize_id("a/b+c#d e") == "a_b_c_d_e"
    topics = Topics()
    assert topics.status("infer", "evil/#") == "mnist/status/infer/evil__"
    assert topics.parse_status("mnist/status/infer/w1") == ("infer", "w1")
    assert topics.parse_status("mnist/status/other/w1") is None


def test_broker_urls() -> None:
    a = BrokerAddress.parse("mqtts://bob:s3cret@example.org")
    assert (a.host, a.port, a.tls, a.username, a.password) == ("example.org", 8883, True, "bob", "s3cret")
    assert "s3cret" not in a.url
    assert BrokerAddress.parse("localhost:1884").port == 1884
    for bad in ("http://x", "mqtt://", "mqtt://host:99999", "mqtt://host/path"):
        with pytest.raises(ConfigError):
            BrokerAddress.parse(bad)
    # an empty label or one over 63 characters: the resolver's UnicodeError was a traceback in every command
    for bad in ("mqtt://a..b:1883", "mqtt://.x", "mqtt://" + "a" * 64):
        with pytest.raises(ConfigError, match="empty name between dots or one over 63"):
            BrokerAddress.parse(bad)
    for good in ("mqtt://[::1]:1883", "mqtt://bücher.example", "mqtt://a.b.", "mqtt://" + "a" * 63):
        assert BrokerAddress.parse(good).host


def test_password_from_file_and_environment(tmp_path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n")
    env = {"MNIST_BROKER_USER": "u"}
    a = BrokerAddress.parse("mqtt://host").with_credentials_from(env=env, password_file=str(secret))
    assert (a.username, a.password) == ("u", "hunter2")
    with pytest.raises(ConfigError):
        BrokerAddress.parse("mqtt://host").with_credentials_from(env={}, password_file=str(tmp_path / "missing"))


def _with_meta_text(png: bytes, text: bytes) -> bytes:
    """`png` with an `mnist` chunk of exactly `text` (embed_meta writes only valid, compact JSON)."""
    import struct
    import zlib
    body = b"tEXtmnist\x00" + text
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
    return png[:-12] + chunk + png[-12:]


@pytest.mark.parametrize("text", [
    b'{"id":"input-a-1","label":7,"t":1764108000.123456,"src":"input-a"}',  # what the input role writes
    b'{"t":17}', b'{"t":-0}', b'{"t":0}', b'{"t":1e3}', b'{"t":1E3}', b'{"t":2e11}', b'{"t":1.5e-3}',
    b'{"t":"1764108000"}', b'{"t":true}', b'{"t":null}', b'{"t":[1]}', b'{"t":{"t":5}}', b'{}', b'{"id":"t"}',
    b'{"t":1,"t":2}', b'{"t":2,"t":"x"}', b'{"x":{"t":5},"t":6}', b'{"id":"a\\"t\\":5"}', b'{"\\u0074":9}',
    b'{"t" : 5}', b'{"t":5 }', b'{"t":05}', b'{"t":5.}', b'{"t":.5}', b'{"t":5', b'[{"t":5}]', b'',
    b'{"t":5,"id":"\x01"}', b'{"t":5,"id":"\xe9\x7f"}', b'{"tt":5,"t ":6}', b'{"":"t","t":7}',
    b'{"t":' + b"1" * 5000 + b"}", b'{"t":' + b"1" * 900 + b"}", b'{"t":8,"n":' + b"1" * 5000 + b"}",
])
def test_published_at_reads_the_time_as_extract_meta_does(text: bytes) -> None:
    """The worker's fast reading of an image's time (flat, plain metadata without a parse) gives what the
    full parse gives, for the metadata our roles write and for every other kind: nested, repeated keys,
    escapes, whitespace, invalid JSON, numbers json.loads refuses."""
    payload = _with_meta_text(_png(), text)
    assert published_at(payload) == extract_meta(payload).t
    if text.startswith(b'{"id":"input'):
        assert published_at(payload) == 1764108000.123456
