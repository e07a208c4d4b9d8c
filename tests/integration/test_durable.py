"""At-least-once end to end on a real mosquitto: result QoS, --durable through broker restarts, lost
sessions reported, a role whose thread dies shows state "error", and a dataset with a bad file.

Each restart test prints one `RELIABILITY ...` line (run with -s); docs/RELIABILITY.md records them.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
from pathlib import Path

import pytest
from fault_helpers import Engine, model, send, status, wait_answered, wait_status
from helpers import wait_for

from engine.cli import build_parser, main, settings_from_args
from engine.console.observer import Observer
from engine.digits.dataset import load_dataset
from engine.errors import DatasetError
from engine.mqtt.broker import EmbeddedBroker
from engine.protocol import extract_meta
from engine.roles.pipeline import LocalPipeline
from engine.roles.publisher import Publisher
from engine.roles.worker import Worker
from engine.settings import DEFAULT_DATASET, Settings

pytestmark = pytest.mark.needs_mosquitto

N = 2000


def durable_settings(*flags: str) -> Settings:
    """What `mnist-tui --durable FLAGS` gives the roles."""
    return settings_from_args(build_parser().parse_args(["--durable", *flags]))


def restart_through(pipeline: LocalPipeline, broker: EmbeddedBroker, name: str) -> None:
    """Stop and start `broker` once a quarter of the results are in; check every image is answered once."""
    publisher, collector = pipeline.role("input"), pipeline.role("output")
    assert publisher is not None and collector is not None
    expected = {f"{publisher.client_id}-{i}" for i in range(1, N + 1)}
    wait_for(lambda: collector.received >= N // 4, 60, message=lambda: f"{collector.received} results")
    broker.stop()
    wait_for(lambda: not any(r.connected.is_set() for r in pipeline.roles), message="roles still connected")
    broker.start()
    wait_for(lambda: collector.received >= N and publisher.finished, 120,
             message=lambda: f"{collector.received} of {N} answered, publisher sent {publisher.sent}, sessions "
                             f"lost {[r.sessions_lost for r in pipeline.roles]}, missing "
                             f"{sorted(expected - set(collector._seen))[:5]}")
    wait_for(lambda: publisher.status()["sent"] == N, message="publisher count")
    seen = set(collector._seen)
    assert seen == expected, f"missing {len(expected - seen)}, unexpected ids {sorted(seen - expected)[:5]}"
    assert collector.received == N and collector.errors == 0
    assert all(r.sessions_lost == 0 for r in pipeline.roles), "mosquitto kept every durable session"
    print(f"\nRELIABILITY {name}: sent={N}, answered={collector.received}, duplicates={collector.duplicates}, "
          f"lost={len(expected - seen)}")


def test_durable_qos1_stream_through_a_broker_restart_loses_nothing(tmp_path: Path) -> None:
    settings = durable_settings("--count", str(N), "--rate", "400")
    settings.autostart = True
    with EmbeddedBroker(kind="mosquitto", persistence_dir=tmp_path / "db") as broker, \
            LocalPipeline(settings, address=broker.address) as pipeline:
        host_ids = {r.role: r.client_id for r in pipeline.roles}
        assert all(cid.startswith(f"{role}-") and not cid.split("-")[-1].isdigit() for role, cid in host_ids.items())
        restart_through(pipeline, broker, "durable-external-restart")


def test_embedded_broker_restarted_under_durable_loses_nothing() -> None:
    """`run all --durable`: the embedded mosquitto runs with persistence on, in a directory of its own."""
    settings = durable_settings("--count", str(N), "--rate", "400")
    settings.autostart = True
    with LocalPipeline(settings, broker_kind="mosquitto") as pipeline:
        assert pipeline.broker is not None and pipeline.broker.persistence_dir is not None
        db = pipeline.broker.persistence_dir
        restart_through(pipeline, pipeline.broker, "durable-embedded-restart")
    assert not db.exists(), "the database directory is removed with the pipeline"


def test_the_publisher_starts_only_once_the_worker_and_the_collector_are_subscribed(
        mosquitto_broker, monkeypatch) -> None:
    """An image sent before the worker's subscription is acknowledged has no subscriber and is dropped (the
    first image of a fresh durable session was lost that way once in CI): the pipeline starts the
    publisher, which sends as soon as it connects, only after the consumers are ready."""
    settings = durable_settings("--count", "20", "--rate", "0")
    settings.autostart = True
    pipeline = LocalPipeline(settings, address=mosquitto_broker.address)
    seen: list[dict[str, bool]] = []  # at the publisher's start: which of the roles started before it are ready
    original = Publisher.start

    def start(self: Publisher) -> None:
        seen.append({r.role: r.ready.is_set() for r in pipeline.roles if r is not self})
        original(self)

    monkeypatch.setattr(Publisher, "start", start)
    with pipeline:
        collector = pipeline.role("output")
        assert collector is not None
        wait_for(lambda: collector.received >= 20, message=lambda: f"{collector.received} of 20 answered")
    assert seen == [{"output": True, "infer": True}]


def test_a_worker_says_subscribed_once_its_images_reach_it(mosquitto_broker, probe_factory) -> None:
    """What the pipeline waits for before it starts the publisher when the workers are processes of their own
    (the console's roles child): a status with `subscribed`, sent at the moment the worker's image
    subscription is acknowledged. An image sent right then is answered."""
    addr = mosquitto_broker.address
    probe = probe_factory(addr, ["result", "mnist/status/infer/#"])
    topic = "mnist/status/infer/w-subscribed"
    worker = Worker(addr, Settings(), "w-subscribed", model=model())
    worker.start()
    try:
        wait_status(probe, topic, lambda s: s.get("subscribed") is True, timeout=30, what="never subscribed")
        send(probe, ["first"], qos=0)
        wait_answered(probe, ["first"], timeout=30)
        statuses = [json.loads(m.payload) for m in probe.messages(topic)]
        assert statuses[0]["subscribed"] is False, "its first status (on connecting) comes before the SUBACK"
        assert worker.ready.is_set()
    finally:
        worker.stop()


def test_default_worker_answers_each_image_at_its_qos(mosquitto_broker, probe_factory) -> None:
    addr = mosquitto_broker.address
    answers = probe_factory(addr, "result", qos=2)
    worker = Worker(addr, Settings(), "w-qos")
    worker.start()
    try:
        assert worker.wait_ready()
        send(answers, ["q1"], qos=1)
        wait_for(lambda: answers.messages("result"), message="no answer")  # one batch each (see _result_qos)
        send(answers, ["q0"], qos=0)
        wait_for(lambda: len(answers.messages("result")) >= 2, message="no answers")
        qos = {json.loads(m.payload)["id"]: m.qos for m in answers.messages("result")}
        assert qos == {"q1": 1, "q0": 0}
    finally:
        worker.stop()


def test_a_worker_whose_broker_lost_its_session_says_so(mosquitto_broker, probe_factory) -> None:
    """mosquitto without persistence forgets the durable session over a restart: the worker reconnects with
    session present = 0, counts it, and the console hears about it."""
    addr = mosquitto_broker.address
    watcher = probe_factory(addr, "mnist/status/#")
    worker = Worker(addr, Settings(session_expiry=600), "w-forgotten")
    worker.start()
    observer = Observer(addr)
    observer.start()
    try:
        assert worker.wait_ready()
        wait_for(lambda: observer.snapshot().subscribed, message="observer not subscribed")
        mosquitto_broker.stop()
        wait_for(lambda: not worker.connected.is_set(), message="worker still connected")
        mosquitto_broker.start()
        topic = "mnist/status/infer/w-forgotten"
        wait_status(watcher, topic, lambda s: s.get("sessions_lost") == 1, what="no sessions_lost")
        assert worker.sessions_lost == 1
        wait_for(lambda: any("lost its broker session" in e.text and e.level == "warning"
                             for e in observer.snapshot().events), message="no notification in the console")
    finally:
        observer.stop()
        worker.stop()


def test_a_role_whose_thread_raises_shows_state_error(mosquitto_broker, probe_factory, monkeypatch,
                                                      capsys) -> None:
    """The publisher's thread dies (here: metadata cannot be spliced into an image): its retained status
    says state "error" with the reason, the console notifies, and a headless `run` exits 1 with that line."""
    addr = mosquitto_broker.address
    watcher = probe_factory(addr, "mnist/status/#")

    def broken(_self: object, _png: bytes, _seq: int, _label: object, _t: float) -> bytes:
        raise ValueError("not a PNG ending in IEND")

    monkeypatch.setattr("engine.roles.publisher.MetaStamp.stamp", broken)
    observer = Observer(addr)
    observer.start()
    try:
        code = main(["--broker", addr.url, "--id", "in-broken", "--count", "3", "run", "input", "--quiet"])
        assert code == 1
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last == ("mnist-tui: input in-broken: input-publish stopped: ValueError: not a PNG ending in IEND")
        found = status(watcher, "mnist/status/input/in-broken")
        assert found is not None and "input-publish stopped: ValueError" in found.get("reason", "")
        history = [json.loads(m.payload)["state"] for m in watcher.messages("mnist/status/input/in-broken")]
        assert "error" in history
        wait_for(lambda: any("in-broken failed: input-publish stopped" in e.text and e.level == "error"
                             for e in observer.snapshot().events), message="no error notification")
    finally:
        observer.stop()


def _dataset_with_a_truncated_png(folder: Path) -> Path:
    folder.mkdir()
    lines = []
    for i, line in enumerate(Path(DEFAULT_DATASET, "list.txt").read_text().splitlines()[:3]):
        name, label = line.split()
        shutil.copy(Path(DEFAULT_DATASET, name), folder / f"good{i}.png")
        lines.append(f"good{i}.png {label}")
    good = (folder / "good0.png").read_bytes()
    (folder / "cut.png").write_bytes(good[: len(good) // 2])
    lines.insert(1, "cut.png 5")
    (folder / "list.txt").write_text("\n".join(lines) + "\n")
    return folder


def test_a_truncated_png_is_skipped_and_named(tmp_path: Path, caplog) -> None:
    ds = _dataset_with_a_truncated_png(tmp_path / "ds")
    with caplog.at_level(logging.WARNING):
        samples = load_dataset(ds)
    assert [s.name for s in samples] == ["good0.png", "good1.png", "good2.png"]
    assert len(samples.skipped) == 1 and samples.skipped[0].startswith("cut.png: not a whole PNG")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped cut.png" in warnings[0]
    for name in ("good0.png", "good1.png", "good2.png"):
        (ds / name).write_bytes(b"nothing")
    with pytest.raises(DatasetError, match="none of the 4 listed images is usable"):
        load_dataset(ds)


def test_run_input_publishes_the_good_images_of_a_dataset_with_a_bad_one(tmp_path: Path, mosquitto_broker,
                                                                         probe_factory) -> None:
    ds = _dataset_with_a_truncated_png(tmp_path / "ds")
    addr = mosquitto_broker.address
    images = probe_factory(addr, ["mnist", "mnist/status/input/#"])
    engine = Engine("--broker", addr.url, "--dataset", str(ds), "--once", "--id", "in-ds", "run", "input")
    try:
        assert engine.wait(60) == 0, engine.stderr
        assert "skipped cut.png: not a whole PNG" in engine.stderr
        assert "Traceback" not in engine.stderr
        wait_for(lambda: len(images.messages("mnist")) == 3, message=lambda: f"{len(images.messages('mnist'))}")
        found = status(images, "mnist/status/input/in-ds")
        assert found is not None and found["skipped"] == 1 and found["sent"] == 3
    finally:
        engine.close()



def test_images_published_while_offline_at_qos1_keep_their_ids(tmp_path: Path, probe_factory) -> None:
    """A burst published while the connection is down: paho keeps each QoS 1 image and sends it after the
    reconnect. The publisher must not publish it again under a new id (the collector would count two)."""
    with EmbeddedBroker(kind="mosquitto", persistence_dir=tmp_path / "db") as broker:
        images = probe_factory(broker.address, "mnist", qos=1, client_id="p-burst", clean=False)
        pub = Publisher(broker.address, Settings(qos=1), "in-burst")
        pub.start()
        try:
            assert pub.wait_ready()
            broker.stop()
            wait_for(lambda: not pub.connected.is_set(), message="publisher still connected")
            wait_for(lambda: not pub.data_connected.is_set(), message="data connection still up")
            pub._running.set()  # a burst of the run (the run itself waits for the connection meanwhile)
            try:
                assert pub._send_burst(pub.samples[:5]) == 5
            finally:
                pub._running.clear()
            assert pub._seq == 5, "each image got exactly one id"
            broker.start()
            wait_for(lambda: len(images.messages("mnist")) >= 5, 30, message="kept images not sent on reconnect")
            ids = sorted(extract_meta(m.payload).id for m in images.messages("mnist"))
            assert ids == [f"in-burst-{i}" for i in range(1, 6)]
        finally:
            pub.stop()


def test_an_image_is_acknowledged_only_once_the_broker_has_its_result(mosquitto_broker, probe_factory) -> None:
    """The worker acknowledges a QoS 1 image after the broker acknowledged its result (on the worker's results
    connection): while that acknowledgement is not read, the image stays unacknowledged, so when the worker's
    data connection drops, its durable session sends the image again. Once the results connection reads its
    acknowledgements, the images are acknowledged: a second drop sends nothing again."""
    addr = mosquitto_broker.address
    answers = probe_factory(addr, "result", qos=1)
    worker = Worker(addr, Settings(session_expiry=600), "w-ack-after")
    worker.start()
    try:
        assert worker.wait_ready()
        results = worker.results_client
        # No network thread: paho writes the result from the publishing thread, but nobody reads the PUBACK.
        results.loop_stop()
        send(answers, ["held"], qos=1)
        wait_for(lambda: worker.processed == 1, message="the image was not answered")
        data = worker.data_client
        wait_for(lambda: not data._out_packet, message="the data connection did not write what it had")
        data.socket().shutdown(socket.SHUT_RDWR)  # connection lost, the session stays at the broker
        wait_for(lambda: worker.processed == 2, 30,
                 message=lambda: f"the broker did not send the image again (answered {worker.processed})")
        wait_for(lambda: len(answers.messages("result")) >= 2, message="the two answers did not both come")
        results.loop_start()  # the PUBACKs are read: the images are acknowledged
        wait_for(lambda: not results._waiting and not data._out_packet, message="the images were not acknowledged")
        data.socket().shutdown(socket.SHUT_RDWR)
        send(answers, ["after"], qos=1)  # a session resumed sends what it still holds before anything new
        wait_for(lambda: len(answers.messages("result")) >= 3, 30, message="no answer after the second drop")
        assert [json.loads(m.payload)["id"] for m in answers.messages("result")] == ["held", "held", "after"]
    finally:
        worker.stop()
