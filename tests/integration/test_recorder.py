"""record a stretch of traffic on mosquitto, replay it, and compare what arrives with what was recorded."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys

import psutil
import pytest
from helpers import wait_for
from secured import login

from engine.errors import BrokerError, ConfigError
from engine.mqtt.broker import EmbeddedBroker, default_config_path
from engine.recorder import Recorded, read_recording, replay

ENGINE = [sys.executable, "-m", "engine"]


def _record_traffic(broker, probe_factory, file, topic_filter: str, sent: list[tuple[str, bytes]]) -> None:
    """A real recording in `file`: `record` run as a process while `sent` is published at QoS 1."""
    sender = probe_factory(broker.address)
    rec = subprocess.Popen([*ENGINE, "--broker", broker.address.url, "record", str(file), "-t", topic_filter,
                            "--messages", str(len(sent))], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # the header is written once the recorder's subscription is acknowledged
        wait_for(lambda: file.exists() and file.stat().st_size > 0, timeout=60, message="recorder did not start")
        for topic, payload in sent:
            sender.publish(topic, payload, qos=1)
        _out, err = rec.communicate(timeout=60)
        assert rec.returncode == 0, err
    finally:
        rec.kill()


def test_record_then_replay(mosquitto_broker, probe_factory, tmp_path) -> None:
    url = mosquitto_broker.address.url
    file = tmp_path / "traffic.ndjson"
    sender = probe_factory(mosquitto_broker.address)
    sender.publish("result", b"retained before the recording", qos=1, retain=True)
    rec = subprocess.Popen([*ENGINE, "--broker", url, "record", str(file), "-t", "mnist", "-t", "result",
                            "--messages", "6"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        sent = [("mnist", b"\x89PNG fake 1"), ("result", b'{"id": "a", "pred": 1}'), ("mnist", bytes(range(256))),
                ("other", b"not recorded"), ("result", b"tensor([7])"), ("mnist", b""), ("result", b"{}")]
        # the header is written once the recorder's subscription is acknowledged
        wait_for(lambda: file.exists() and file.stat().st_size > 0, timeout=60, message="recorder did not start")
        sender.publish("mnist", b"warm-up", qos=1)
        for topic, payload in sent:
            sender.publish(topic, payload, qos=1)
        out, err = rec.communicate(timeout=60)
        assert rec.returncode == 0, err
        assert "recorded 6 messages" in out
    finally:
        rec.kill()
    header, messages = read_recording(file)
    recorded = list(messages)
    assert header["topics"] == ["mnist", "result"]
    expected = [("mnist", b"warm-up")] + [m for m in sent if m[0] != "other"][:5]
    assert [(r.topic, r.payload) for r in recorded] == expected, "retained and unsubscribed messages left out"
    assert all(a.t <= b.t for a, b in zip(recorded, recorded[1:], strict=False))

    replayed = probe_factory(mosquitto_broker.address, ["mnist", "copy/#"])
    argv = ["--broker", url, "replay", str(file), "--speed", "0", "--map", "result=copy/result"]
    done = subprocess.run([*ENGINE, *argv], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    got = replayed.wait_count(len(expected))
    mapped = [("result" if m.topic == "copy/result" else m.topic, m.payload) for m in got]
    assert mapped == expected


def test_replay_of_a_truncated_recording_says_so_after_the_whole_lines(mosquitto_broker, probe_factory,
                                                                        tmp_path) -> None:
    """A recording whose last line is cut off (the recorder killed mid-write, the file cut short) is said to be
    truncated, in one line and a non-zero exit like any other damaged line, once every whole message before the
    cut has been replayed: more QoS 1 messages than paho keeps in flight, which the damaged line used to cut off."""
    url = mosquitto_broker.address.url
    file = tmp_path / "cut.ndjson"
    sent = [(f"cut/{i}", f"message {i} ".encode() * 40) for i in range(30)]
    _record_traffic(mosquitto_broker, probe_factory, file, "cut/#", sent)
    whole = file.read_bytes()
    lines = whole.splitlines(keepends=True)
    assert len(lines) == 31  # the header and 30 messages
    file.write_bytes(whole[:-1])  # only the last newline missing: every line is whole
    assert [r.payload for r in read_recording(file)[1]] == [payload for _topic, payload in sent]
    file.write_bytes(whole[: len(whole) - len(lines[-1]) // 2])  # the last line cut in the middle

    replayed = probe_factory(mosquitto_broker.address, "cut/#")
    done = subprocess.run([*ENGINE, "--broker", url, "replay", str(file), "--speed", "0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"mnist-tui: recording {file} is truncated: line 31 is cut off; replayed the 29 whole messages before it"]
    got = replayed.wait_count(29)
    assert [(m.topic, m.payload) for m in got] == sent[:29]


def test_replay_of_a_recording_with_a_byte_that_is_not_utf8_names_its_line(mosquitto_broker, probe_factory,
                                                                           tmp_path) -> None:
    """A byte that is not UTF-8 past the first 8 KiB of a recording ended replay with a UnicodeDecodeError
    traceback, one within them called the file not a recording, and from stdin the message named a surrogate:
    each is one line naming the file (or stdin) and the line, exit status 1, after the whole messages before it."""
    url = mosquitto_broker.address.url
    file = tmp_path / "bytes.ndjson"
    sent = [(f"utf/{i}", f"message {i} ".encode() * 40) for i in range(30)]
    _record_traffic(mosquitto_broker, probe_factory, file, "utf/#", sent)
    lines = file.read_bytes().splitlines(keepends=True)
    assert len(lines) == 31 and sum(map(len, lines[:4])) < 8192 < sum(map(len, lines[:25]))

    def damaged(index: int, at: int) -> bytes:
        return b"".join(lines[:index] + [lines[index][:at] + b"\xff" + lines[index][at + 1:]] + lines[index + 1:])

    replayed = probe_factory(mosquitto_broker.address, "utf/#")
    for index, source in [(25, file), (3, file), (25, "-")]:  # line 26, past 8 KiB; line 4, within them; stdin
        at = lines[index].index(b'"payload":"') + 20
        file.write_bytes(damaged(index, at))
        done = subprocess.run([*ENGINE, "--broker", url, "replay", str(source), "--speed", "0"],
                              input=file.read_bytes() if source == "-" else None, capture_output=True, timeout=60)
        assert done.returncode == 1, done.stderr
        where = "stdin" if source == "-" else file
        assert done.stderr.decode().strip().splitlines() == [
            f"mnist-tui: {where} line {index + 1}: bad record (not UTF-8: byte 0xff at column {at + 1})"]
        got = replayed.wait_count(index - 1)
        assert [(m.topic, m.payload) for m in got] == sent[:index - 1]
        replayed.clear()

    at = lines[0].index(b"utf/#") + 3  # in the header's topic filter
    file.write_bytes(damaged(0, at))
    done = subprocess.run([*ENGINE, "--broker", url, "replay", str(file)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"mnist-tui: {file} line 1: bad header (not UTF-8: byte 0xff at column {at + 1})"]


def test_replay_of_a_recording_cut_inside_its_header_says_it_is_truncated(mosquitto_broker, probe_factory,
                                                                         tmp_path) -> None:
    """A recording cut off inside its header line (the recorder killed as it began, the file cut short) was
    called not a recording at all; an empty file and one that is clearly something else still are."""
    url = mosquitto_broker.address.url
    file = tmp_path / "head.ndjson"
    _record_traffic(mosquitto_broker, probe_factory, file, "head/#", [("head/a", b"one message")])
    header = file.read_bytes().splitlines(keepends=True)[0]
    truncated = "is a truncated mnist-tui recording: cut off inside its header line, before any message"
    for cut in (10, 2, len(header) // 2, len(header) - 2):  # len(header) - 1: the whole header, no newline
        file.write_bytes(header[:cut])
        with pytest.raises(ConfigError) as err:
            read_recording(file)
        assert str(err.value) == f"{file} {truncated}"

    file.write_bytes(header[:10])
    done = subprocess.run([*ENGINE, "--broker", url, "replay", str(file)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [f"mnist-tui: {file} {truncated}"]
    done = subprocess.run([*ENGINE, "--broker", url, "replay", "-"], input=header[:10], capture_output=True,
                          timeout=60)
    assert done.returncode == 1, done.stderr
    assert done.stderr.decode().strip().splitlines() == [f"mnist-tui: stdin {truncated}"]

    for other in (b"", b"{", b'{"hello": 1', b"\x89PNG\r\n\x1a\n\x00"):
        file.write_bytes(other)
        with pytest.raises(ConfigError) as err:
            read_recording(file)
        assert str(err.value) == f"{file} is not a mnist-tui recording (no header line)", other
    file.write_bytes(b"")
    done = subprocess.run([*ENGINE, "--broker", url, "replay", str(file)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [f"mnist-tui: {file} is not a mnist-tui recording (no header line)"]


def test_replay_of_a_file_that_is_not_a_recording(tmp_path) -> None:
    bad = tmp_path / "bad.ndjson"
    bad.write_text(json.dumps({"hello": 1}) + "\n")
    done = subprocess.run([*ENGINE, "--broker", "mqtt://127.0.0.1:1", "replay", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"mnist-tui: {bad} is not a mnist-tui recording (no header line)"]


def test_record_to_stdout_keeps_mqtt5_properties_and_replay_reads_stdin(mosquitto_broker, tmp_path) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    url = mosquitto_broker.address.url
    addr = mosquitto_broker.address
    rec = subprocess.Popen([*ENGINE, "--broker", url, "record", "-", "-t", "req/#", "--messages", "2"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    got: list[mqtt.MQTTMessage] = []
    client.on_message = lambda _c, _u, msg: got.append(msg)
    client.connect(addr.host, addr.port)
    client.loop_start()
    try:
        client.subscribe("copy/#", qos=1)
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = "answers/me"
        props.CorrelationData = b"\x00\xffcorr"
        props.UserProperty = [("label", "7"), ("id", "u-1")]
        props.ContentType = "image/png"
        props.MessageExpiryInterval = 600

        header = rec.stdout.readline()  # written once the recorder's subscription is acknowledged
        assert header, rec.stderr.read()
        client.publish("req/a", b"with props", qos=1, properties=props).wait_for_publish(10)
        client.publish("req/b", b"plain", qos=1).wait_for_publish(10)
        out, err = rec.communicate(timeout=60)
        assert rec.returncode == 0, err
        assert b"recorded 2 messages to stdout" in err
        out = header + out
        lines = [json.loads(line) for line in out.decode().splitlines()]
        assert lines[0]["format"] == "mnist-tui-record" and len(lines) == 3, lines
        kept = lines[1]["props"]
        assert kept["response_topic"] == "answers/me" and kept["user"] == [["label", "7"], ["id", "u-1"]]
        assert kept["content_type"] == "image/png" and 0 < kept["expiry"] <= 600
        assert "props" not in lines[2]

        done = subprocess.run([*ENGINE, "--broker", url, "replay", "-", "--speed", "0", "--map", "req/a=copy/a",
                               "--map", "req/b=copy/b"], input=out, capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr
        wait_for(lambda: len(got) >= 2, message=lambda: f"{len(got)} of 2 replayed")
        by_topic = {m.topic: m for m in got}
        again = by_topic["copy/a"].properties
        assert again.ResponseTopic == "answers/me" and again.CorrelationData == b"\x00\xffcorr"
        assert again.UserProperty == [("label", "7"), ("id", "u-1")] and again.ContentType == "image/png"
        assert by_topic["copy/b"].payload == b"plain"
    finally:
        rec.kill()
        client.disconnect()
        client.loop_stop()


def test_replay_loop_plays_until_stopped(mosquitto_broker, probe_factory, tmp_path) -> None:
    import signal

    file = tmp_path / "two.ndjson"
    file.write_text("\n".join([
        json.dumps({"format": "mnist-tui-record", "version": 1, "started": 0, "topics": ["loop/#"]}),
        json.dumps({"t": 0, "topic": "loop/a", "qos": 1, "retain": False, "payload": "YQ=="}),
        json.dumps({"t": 0.05, "topic": "loop/b", "qos": 1, "retain": False, "payload": "Yg=="}),
    ]) + "\n")
    probe = probe_factory(mosquitto_broker.address, "loop/#")
    player = subprocess.Popen([*ENGINE, "--broker", mosquitto_broker.address.url, "replay", str(file), "--loop"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        probe.wait_count(6, timeout=60)
        player.send_signal(signal.SIGINT)
        out, err = player.communicate(timeout=60)
        assert player.returncode == 0, err
        assert "passes" in out
        topics = [m.topic for m in probe.messages()]
        assert topics[:6] == ["loop/a", "loop/b"] * 3
    finally:
        player.kill()


def test_record_to_stdout_ends_quietly_when_its_reader_closes_the_pipe(mosquitto_broker, probe_factory) -> None:
    """`record - | head -1`: the writer thread died with a BrokenPipeError traceback and the recorder never
    ended."""
    sender = probe_factory(mosquitto_broker.address)
    rec = subprocess.Popen([*ENGINE, "--broker", mosquitto_broker.address.url, "record", "-", "-t", "pipe/#"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert rec.stdout is not None and rec.stdout.readline().startswith(b'{"format"')  # the header
        rec.stdout.close()  # as head does after its line
        for i in range(50):  # the recorder writes on: the pipe is broken
            sender.publish("pipe/x", b"%d" % i, qos=1)
            try:
                rec.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                pass
        assert rec.wait(timeout=30) == 0
        err = rec.stderr.read().decode() if rec.stderr else ""
        assert "Traceback" not in err and "Error" not in err, err
    finally:
        rec.kill()


def test_record_to_stdout_ends_when_its_reader_closes_the_pipe_before_any_message(mosquitto_broker) -> None:
    """With nothing to record, a closed pipe was noticed only at the next write: never, until a signal."""
    rec = subprocess.Popen([*ENGINE, "--broker", mosquitto_broker.address.url, "record", "-", "-t", "quiet/#"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert rec.stdout is not None and rec.stdout.readline().startswith(b'{"format"')
        rec.stdout.close()
        assert rec.wait(timeout=30) == 0
        assert rec.stderr is not None and not rec.stderr.read()
    finally:
        rec.kill()


def test_record_stopped_while_its_reader_does_not_read_ends_and_says_what_was_not_written(mosquitto_broker,
                                                                                      probe_factory) -> None:
    """`record - | sleep 600`, then Ctrl-C: the stop waited for the writer, which waited for the reader, for ever
    once the queue was full (and 30 s before), and then said every message was recorded."""
    sender = probe_factory(mosquitto_broker.address)
    rec = subprocess.Popen([*ENGINE, "--broker", mosquitto_broker.address.url, "record", "-", "-t", "stall/#"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert rec.stdout is not None and rec.stdout.readline().startswith(b'{"format"')  # then no more reads
        for i in range(300):  # 400 KB as base64 lines: more than a pipe holds
            sender.publish("stall/x", bytes([i % 256]) * 1000, qos=1)
        fd = rec.stdout.fileno()
        seen: list[int] = []

        def full() -> bool:  # the pipe holds a good deal, and no more came in the last half second
            seen.append(_unread(fd))
            return seen[-1] > 30_000 and len(seen) > 10 and seen[-10] == seen[-1]

        wait_for(full, timeout=60, interval=0.05, message=lambda: f"bytes in the pipe: {seen[-12:]}")
        os.kill(rec.pid, signal.SIGINT)
        assert rec.wait(timeout=60) == 1
        err = rec.stderr.read().decode() if rec.stderr else ""
        (line,) = err.strip().splitlines()
        assert "stdout was not read" in line and "were not written" in line, line
    finally:
        rec.kill()


def _unread(fd: int) -> int:
    """Bytes waiting in a pipe (FIONREAD)."""
    import array
    import fcntl
    import termios

    count = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, count)
    return count[0]


def _header_and(*records: dict) -> bytes:
    lines = [{"format": "mnist-tui-record", "version": 1, "started": 0}, *records]
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def test_replay_loop_plays_every_pass_on_one_connection(mosquitto_broker, probe_factory, tmp_path) -> None:
    """A recording of one message at t=0 looped: each pass connected anew, hundreds of connections a second."""
    file = tmp_path / "one.ndjson"
    file.write_bytes(_header_and({"t": 0, "topic": "once/a", "qos": 1, "retain": False, "payload": "YQ=="}))
    probe = probe_factory(mosquitto_broker.address, "once/#")
    player = subprocess.Popen([*ENGINE, "--broker", mosquitto_broker.address.url, "replay", str(file), "--loop"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    port = mosquitto_broker.address.port
    ports: set[int] = set()  # the replay's own ends of its connections to the broker, as seen now and then

    def played(count: int) -> bool:
        seen = len(probe.messages())
        if seen:  # the replay's connection is up, and the broker probe before it (a connection of its own) closed
            proc = psutil.Process(player.pid)
            conns = getattr(proc, "net_connections", proc.connections)("tcp")  # psutil before 6.0: connections
            ports.update(c.laddr.port for c in conns
                         if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED)
        return seen >= count

    try:
        wait_for(lambda: played(50), timeout=60, message="the loop did not play 50 passes")
        for more in (100, 150, 200):
            wait_for(lambda more=more: played(more), timeout=60, message=f"the loop did not play {more} passes")
        player.send_signal(signal.SIGINT)
        out, err = player.communicate(timeout=60)
        assert player.returncode == 0, err
        passes = int(re.search(r"in ([\d,]+) passes", out).group(1).replace(",", ""))
        assert passes >= 200, out
        assert len(ports) == 1, ports
    finally:
        player.kill()


@pytest.mark.parametrize("change", ["truncated", "removed"])
def test_replay_loop_errors_count_every_pass(mosquitto_broker, probe_factory, tmp_path, change) -> None:
    """The file of a --loop changed between two passes: the error counted the messages of its last pass only
    (a cut-off line), or none at all (a file gone)."""
    file = tmp_path / "loop.ndjson"
    record = {"t": 0, "topic": "passes/a", "qos": 1, "retain": False, "payload": "YQ=="}
    file.write_bytes(_header_and(record, record | {"t": 0.2}))
    probe = probe_factory(mosquitto_broker.address, "passes/#")
    player = subprocess.Popen([*ENGINE, "--broker", mosquitto_broker.address.url, "replay", str(file), "--loop"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        probe.wait_count(6, timeout=60)  # three passes
        if change == "truncated":
            new = tmp_path / "new.ndjson"
            new.write_bytes(_header_and(record) + b'{"t": 0.1, "topic": "passes/b"')
            new.replace(file)  # whole at once: the next pass reads the new file
        else:
            file.unlink()
        out, err = player.communicate(timeout=60)
        assert player.returncode == 1 and not out, (out, err)
        (line,) = err.strip().splitlines()
        count = re.search(r"([\d,]+) (?:whole )?messages", line)
        assert count is not None and int(count.group(1).replace(",", "")) >= 6, line
        assert ("is cut off" in line) if change == "truncated" else ("cannot read" in line and "passes)" in line)
    finally:
        player.kill()


@pytest.mark.parametrize("loop", [False, True])
def test_replay_from_stdin_stops_on_a_signal_while_waiting_for_a_line(mosquitto_broker, probe_factory,
                                                                     loop) -> None:
    """`replay -` waiting for the next line of stdin ignored Ctrl-C: Python read on after the handler."""
    probe = probe_factory(mosquitto_broker.address, "stdin/#")
    player = subprocess.Popen([*ENGINE, "--broker", mosquitto_broker.address.url, "replay", "-",
                               *(["--loop"] if loop else [])],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert player.stdin is not None
        player.stdin.write(_header_and(*({"t": 0, "topic": f"stdin/{i}", "qos": 1, "retain": False,
                                          "payload": "YQ=="} for i in range(2))))
        player.stdin.flush()  # and kept open: replay waits for more
        if loop:  # --loop reads stdin to its end before it plays: nothing arrives
            wait_for(lambda: _catches_sigterm(player.pid), timeout=60, message="replay did not start reading")
        else:
            probe.wait_count(2, timeout=60)
        player.send_signal(signal.SIGINT)
        assert player.wait(timeout=30) == 0, player.stderr.read() if player.stderr else ""
        out = player.stdout.read().decode() if player.stdout else ""
        assert out.startswith(f"replayed {0 if loop else 2} messages from stdin"), out
        assert len(probe.messages()) == (0 if loop else 2)
    finally:
        player.kill()


def _catches_sigterm(pid: int) -> bool:
    """replay has its stop handlers (it sets them after reading the header and probing the broker)."""
    with open(f"/proc/{pid}/status") as status:
        caught = next(line for line in status if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & 1 << (signal.SIGTERM - 1))


@pytest.mark.parametrize("qos", [0, 1])
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_replay_of_a_message_the_broker_refuses_says_so_at_once(mosquitto_broker, probe_factory, tmp_path, qos,
                                                                 protocol) -> None:
    """A message over the broker's maximum packet size (4 MiB here): replay hung for 30 s a message at QoS 1
    (paho sent it again at each reconnect) and said "replayed 3 messages" at QoS 0, which the broker had
    dropped with the connection. MQTT 5 tells the maximum, so it is refused before it is sent; on 3.1.1 the
    closed connection is noticed."""
    path = tmp_path / "big.ndjson"
    lines = [{"format": "mnist-tui-record", "version": 1, "started": 0},
             {"t": 0, "topic": "replay/ok", "payload": base64.b64encode(b"small").decode(), "qos": qos},
             {"t": 0, "topic": "replay/big", "payload": base64.b64encode(bytes(4_300_000)).decode(), "qos": qos},
             {"t": 0, "topic": "replay/after", "payload": "", "qos": qos}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    seen = probe_factory(mosquitto_broker.address, ["replay/#"])
    done = subprocess.run([*ENGINE, "--broker", mosquitto_broker.address.url, "--mqtt", protocol, "replay", str(path),
                           "--speed", "0"], capture_output=True, text=True, timeout=100)
    assert done.returncode == 1, (done.stdout, done.stderr)
    (line,) = done.stderr.strip().splitlines()
    expected = "the broker takes at most 4,194,304" if protocol == "5" else "the connection to the broker was lost"
    assert expected in line and "replayed" not in done.stdout, line
    assert [(m.topic, m.payload) for m in seen.wait_count(1)] == [("replay/ok", b"small")]


def test_replay_stopped_while_the_broker_does_not_answer_ends_soon_and_says_so(mosquitto_broker, probe_factory,
                                                                               tmp_path) -> None:
    """SIGTERM to a replay whose broker had stopped answering (SIGSTOP) took about a minute (30 s a message
    for its confirmation, until the keep-alive gave up), then blamed the messages. It waits a short grace."""
    path = tmp_path / "slow.ndjson"
    lines = [{"format": "mnist-tui-record", "version": 1, "started": 0}] + [
        {"t": i * 0.002, "topic": "slow/x", "payload": base64.b64encode(b"x" * 100).decode(), "qos": 1}
        for i in range(5000)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    seen = probe_factory(mosquitto_broker.address, ["slow/#"])
    player = subprocess.Popen([*ENGINE, "--broker", mosquitto_broker.address.url, "replay", str(path)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen.wait_count(50)  # replaying
        os.kill(mosquitto_broker.pid, signal.SIGSTOP)
        try:
            player.send_signal(signal.SIGTERM)
            out, err = player.communicate(timeout=25)  # a minute before
        finally:
            os.kill(mosquitto_broker.pid, signal.SIGCONT)
    finally:
        player.kill()
    assert player.returncode == 1, (out, err)
    (line,) = err.strip().splitlines()
    # the publishes sent since the broker stopped, or (none yet) the round trip that ends every replay
    assert ("the broker had not confirmed the last" in line and "when replay was stopped" in line
            or "the broker did not answer after" in line), line


def _recording(tmp_path, record: dict, version: int = 1):
    path = tmp_path / "edited.ndjson"
    header = {"format": "mnist-tui-record", "version": version, "started": 0}
    path.write_text(json.dumps(header) + "\n" + json.dumps(record) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(("record", "version", "why"), [
    ({"t": 0, "topic": "x", "payload": "", "props": {"expiry": -1}}, 1, "line 2: bad record (expiry -1 out of range"),
    ({"t": 1e308, "topic": "x", "payload": ""}, 1, "line 2: bad record (t is not a number of seconds from 0 to"),
    ({"t": 10**400, "topic": "x", "payload": ""}, 1, "line 2: bad record (t is not a number of seconds"),
    ({"t": "0", "topic": "x", "payload": ""}, 1, "line 2: bad record (t is not a number of seconds"),
    ({"t": 0, "topic": "x", "payload": "", "qos": 7}, 1, "line 2: bad record (qos is not 0, 1 or 2)"),
    # each of these gave Python's own words ("'list' object has no attribute 'get'", "invalid literal for int()")
    # or was taken as something else (retain "no" as true, a payload with stray characters cut down)
    ([1, 2], 1, "line 2: bad record (a JSON array, not an object)"),
    ({"topic": "x", "payload": ""}, 1, "line 2: bad record (no 't')"),
    ({"t": 0, "topic": "x", "payload": "", "qos": "x"}, 1, "line 2: bad record (qos is not 0, 1 or 2)"),
    ({"t": 0, "topic": "x", "payload": "", "retain": "no"}, 1, "line 2: bad record (retain is not true or false)"),
    ({"t": 0, "topic": 5, "payload": ""}, 1, "line 2: bad record (topic is a JSON number, not a topic)"),
    ({"t": 0, "topic": "x", "payload": "a b!"}, 1, "line 2: bad record (payload is not base64)"),
    ({"t": 0, "topic": "x", "payload": None}, 1, "line 2: bad record (payload is a JSON null, not a base64 string)"),
    ({"t": 0, "topic": "x", "payload": "", "props": {"expiry": "x"}}, 1, "(expiry is not a whole number from 0 to"),
    ({"t": 0, "topic": "x", "payload": "", "props": {"user": [["a"]]}}, 1, "(user is not a list of [name, value]"),
    ({"t": 0, "topic": "x", "payload": "", "props": {"correlation": "%%"}}, 1, "(correlation is not base64)"),
    ({"t": 0, "topic": "x", "payload": "", "props": [1]}, 1, "(props is a JSON array, not an object)"),
    ({"t": 0, "topic": "x", "payload": ""}, 99, "version 99"),
])
def test_an_edited_recording_is_refused_with_its_line_not_a_traceback(tmp_path, record, version, why) -> None:
    """A wildcard topic, an expiry out of range or a time past what the clock holds reached paho or the clock
    and ended replay with a traceback; a newer version replayed nothing and said it had."""
    path = _recording(tmp_path, record, version)
    with pytest.raises(ConfigError) as err:
        _header, messages = read_recording(path)
        list(messages)
    assert why in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_replay_of_dev_zero_is_one_line(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "engine", "--broker", "mqtt://127.0.0.1:1", "replay", "/dev/zero"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "not a mnist-tui recording" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("argv", [["replay", "x", "--speed", "nan"], ["record", "x", "--duration", "nan"],
                                  ["bench", "--duration", "nan"], ["health", "--timeout", "1e309"],
                                  ["bench", "--generators", "0"]])
def test_a_nan_or_endless_number_is_refused_in_one_line(argv) -> None:
    """They were taken, and a recording or a bench ran until interrupted, or health ended in a traceback."""
    proc = subprocess.run([sys.executable, "-m", "engine", "--broker", "mqtt://127.0.0.1:1", *argv],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and ("nan" in proc.stderr or "1e309" in proc.stderr
                                                            or "must be" in proc.stderr), proc.stderr


@pytest.mark.parametrize("qos", [1, 2])
def test_replay_says_when_the_broker_refuses_messages_by_reason_code(secured_broker, probe_factory, qos) -> None:
    """An MQTT 5 broker answers a publish it does not take (here: not authorized by its ACL) with a reason code,
    and keeps the connection: replay said "replayed 3 messages" all the same."""
    _broker, secure = secured_broker
    player = login(secure, "input")  # may write mnist, not result
    seen = probe_factory(login(secure, "console"), "#")
    messages = iter([Recorded(0, "mnist", b"allowed 1", qos), Recorded(0, "result", b"denied", qos),
                     Recorded(0, "mnist", b"allowed 2", qos)])
    with pytest.raises(BrokerError) as err:
        replay(player, messages, speed=0, protocol=5)
    assert str(err.value).startswith("the broker refused 1 of the 3 messages sent"), str(err.value)
    assert "Not authorized" in str(err.value)
    got = seen.wait_count(2)
    assert [(m.topic, m.payload) for m in got] == [("mnist", b"allowed 1"), ("mnist", b"allowed 2")]


@pytest.mark.needs_mosquitto
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_replay_at_qos_2_keeps_to_what_the_broker_takes_in_flight(probe_factory, tmp_path, protocol) -> None:
    """mosquitto takes 20 QoS 2 messages in flight from a client by default (its Receive Maximum) and drops
    the rest (a reason code on MQTT 5, nothing on 3.1.1); paho sent up to 1,000: 62 of 100 arrived, and
    replay said all. (The repository's mosquitto.conf takes 1,000.)"""
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(re.sub(r"^max_inflight_messages .*$", "max_inflight_messages 20", default_config_path().read_text(),
                           flags=re.MULTILINE))
    assert "max_inflight_messages 20" in conf.read_text()
    path = tmp_path / "q2.ndjson"
    lines = [{"format": "mnist-tui-record", "version": 1, "started": 0}] + [
        {"t": 0, "topic": "q2/x", "payload": base64.b64encode(b"m%d" % i).decode(), "qos": 2} for i in range(3000)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    with EmbeddedBroker(kind="mosquitto", config=conf) as broker:
        seen = probe_factory(broker.address, ["q2/#"], qos=2)
        done = subprocess.run([*ENGINE, "--broker", broker.address.url, "--mqtt", protocol, "replay", str(path),
                               "--speed", "0"], capture_output=True, text=True, timeout=100)
        assert done.returncode == 0, done.stderr
        assert "replayed 3,000 messages" in done.stdout
        assert [m.payload for m in seen.wait_count(3000, timeout=60)] == [b"m%d" % i for i in range(3000)]


def test_replay_loop_of_a_recording_without_messages_ends(mosquitto_broker, tmp_path) -> None:
    """It reconnected in a busy loop (819 passes in 3 s) until stopped."""
    path = tmp_path / "empty.ndjson"
    path.write_text(json.dumps({"format": "mnist-tui-record", "version": 1, "started": 0}) + "\n", encoding="utf-8")
    done = subprocess.run([*ENGINE, "--broker", mosquitto_broker.address.url, "replay", str(path), "--loop"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"replayed 0 messages from {path} in 1 pass"


def test_record_checks_its_filters_as_the_console_does(mosquitto_broker) -> None:
    """A filter with a control character waited 15 s for a subscription the broker never acknowledged."""
    done = subprocess.run([*ENGINE, "--broker", mosquitto_broker.address.url, "record", "-", "-t", "a\x7f/#",
                           "--duration", "30"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert "bad filter 'a\\x7f/#': a filter cannot contain U+007F" in line, line


def test_record_refuses_a_shared_filter(mosquitto_broker) -> None:
    """`-t '$share/g/#'` made the recorder a member of group g: it took its share of the images from the group's
    workers, which never answered them, and recorded a part of the traffic as all of it."""
    done = subprocess.run([*ENGINE, "--broker", mosquitto_broker.address.url, "record", "-", "-t", "$share/g/mnist",
                           "--duration", "30"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert "bad filter '$share/g/mnist': a shared subscription" in line and "watch 'mnist' instead" in line, line


def test_a_topic_no_broker_takes_is_refused_with_its_line_and_can_be_mapped(mosquitto_broker, probe_factory,
                                                                           tmp_path) -> None:
    """A wildcard or a control character in a recorded topic (a broker that took it once): refused with its line
    before it reaches the broker, which would drop the connection; --map gives it a topic it takes."""
    path = tmp_path / "odd.ndjson"
    lines = [{"format": "mnist-tui-record", "version": 1, "started": 0},
             {"t": 0, "topic": "odd/ok", "payload": base64.b64encode(b"first").decode()},
             {"t": 0, "topic": "odd/\x1b[2J", "payload": base64.b64encode(b"second").decode()},
             {"t": 0, "topic": "odd/#", "payload": base64.b64encode(b"third").decode()}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    seen = probe_factory(mosquitto_broker.address, ["odd/#"])
    url = mosquitto_broker.address.url
    done = subprocess.run([*ENGINE, "--broker", url, "replay", str(path), "--speed", "0"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("mnist-tui: line 3: a topic cannot contain U+001B") and "replayed the 1 before it" in line
    assert "\x1b" not in line, line
    mapped = subprocess.run([*ENGINE, "--broker", url, "replay", str(path), "--speed", "0", "--map",
                             "odd/\x1b[2J=odd/two", "--map", "odd/#=odd/three"], capture_output=True, text=True,
                            timeout=60)
    assert mapped.returncode == 0, mapped.stderr
    got = seen.wait_count(4)
    assert [(m.topic, m.payload) for m in got] == [("odd/ok", b"first"), ("odd/ok", b"first"),
                                                   ("odd/two", b"second"), ("odd/three", b"third")]
