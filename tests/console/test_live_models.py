"""Live models on a real mosquitto: the `load` command swaps a running worker's model between batches
without losing an image, a bad file changes nothing, a warm-up pass runs before the worker reports
running, an MQTT 5 image whose expiry passed while it was queued is counted, not inferred, and so is an
image published longer ago than --max-wait."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import torch
from fault_helpers import command, digit, model, send, status, tagged, wait_status
from helpers import wait_for
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from secured import login

from engine.digits.model import LeNet5, load_model
from engine.mqtt.client import make_client as engine_client
from engine.protocol import embed_meta
from engine.roles.worker import Worker
from engine.settings import Settings


def other_weights(tmp_path: Path) -> Path:
    """A second LeNet-5 state_dict (untrained, so another digest and another model name)."""
    torch.manual_seed(7)
    path = tmp_path / "other.pt"
    torch.save(LeNet5().state_dict(), path)
    return path


def test_load_swaps_the_model_between_batches_without_losing_an_image(mosquitto_broker, probe_factory,
                                                                       tmp_path) -> None:
    addr = mosquitto_broker.address
    probe = probe_factory(addr, ["result", "mnist/reply/#", "mnist/status/#"], qos=1)
    worker = Worker(addr, Settings(max_batch=8, max_delay_ms=2), "w-live", model=model())
    worker.start()
    path = other_weights(tmp_path)
    new_name = load_model(path).name
    old_name = model().name
    assert new_name != old_name
    try:
        assert worker.wait_ready()
        first = wait_status(probe, "mnist/status/infer/w-live", lambda s: s.get("state") == "running")
        assert first["warmup_ms"] is not None and first["warmup_ms"] >= 0, "no warm-up pass before running"

        bad = command(probe, "infer", "w-live", json.dumps({"cmd": "load", "path": str(tmp_path / "nope.pt"),
                                                            "req": "bad"}), "bad")
        assert not bad["ok"] and "file not found" in bad["error"] and old_name in bad["error"], bad
        junk = tmp_path / "junk.pt"
        junk.write_bytes(b"not a model")
        bad2 = command(probe, "infer", "w-live", json.dumps({"cmd": "load", "path": str(junk), "req": "j"}), "j")
        assert not bad2["ok"] and "\n" not in bad2["error"], bad2
        assert worker.model.name == old_name, "a bad file replaced the model"

        stop = threading.Event()
        sent: list[str] = []
        sending = threading.Lock()  # held while a chunk is published: no chunk straddles the count below

        def stream() -> None:  # images keep coming while the model is swapped
            n = 0
            while not stop.is_set() and n < 3000:
                with sending:
                    sent.extend(send(probe, [f"s{n + i}" for i in range(20)], qos=1))
                n += 20

        feeder = threading.Thread(target=stream)
        feeder.start()
        wait_for(lambda: len(probe.messages("result")) >= 40, message="no results before the swap")
        answer = command(probe, "infer", "w-live", json.dumps({"cmd": "load", "path": str(path), "req": "ok"}), "ok")
        with sending:
            after = len(sent)  # every image sent from here on was published after the swap's reply
        assert answer["ok"], answer
        wait_for(lambda: len(sent) >= after + 40, message="no images sent after the swap")
        stop.set()
        feeder.join()

        def answered() -> dict[str, dict]:
            return {r["id"]: r for r in (json.loads(m.payload) for m in probe.messages("result"))}

        wait_for(lambda: set(sent) <= set(answered()),
                 message=lambda: f"{len(set(sent) - set(answered()))} of {len(sent)} images unanswered")
        results = [json.loads(m.payload) for m in probe.messages("result")]
        assert len(results) == len(sent), "an image was answered twice or lost"
        names = [r["model"] for r in results]
        switch = names.index(new_name)
        assert set(names[:switch]) == {old_name} and set(names[switch:]) == {new_name}, "models interleaved"
        by_id = answered()
        assert {by_id[i]["model"] for i in sent[after:]} == {new_name}
        wait_status(probe, "mnist/status/infer/w-live", lambda s: s.get("model") == new_name and s["loads"] == 1)
    finally:
        worker.stop()


def test_an_image_expired_while_queued_is_counted_not_inferred(mosquitto_broker, probe_factory) -> None:
    addr = mosquitto_broker.address
    probe = probe_factory(addr, ["result", "mnist/reply/#", "mnist/status/#"], qos=1)
    worker = Worker(addr, Settings(), "w-expiry", model=model())
    worker.start()
    sender = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sender.connect(addr.host, addr.port)
    sender.loop_start()
    try:
        assert worker.wait_ready()
        assert command(probe, "infer", "w-expiry", '{"cmd":"stop","req":"p"}', "p")["ok"]  # images wait queued
        props = Properties(PacketTypes.PUBLISH)
        props.MessageExpiryInterval = 1
        for i in range(3):
            sender.publish("mnist", tagged(f"x{i}"), qos=1, properties=props).wait_for_publish(10)
        long = Properties(PacketTypes.PUBLISH)
        long.MessageExpiryInterval = 3600
        sender.publish("mnist", tagged("keep"), qos=1, properties=long).wait_for_publish(10)
        sender.publish("mnist", tagged("plain"), qos=1).wait_for_publish(10)
        wait_status(probe, "mnist/status/infer/w-expiry", lambda s: s["received"] == 5)
        time.sleep(1.2)  # past the 1 s expiry while queued (a deadline to pass, not a wait for an event)
        assert command(probe, "infer", "w-expiry", '{"cmd":"start","req":"s"}', "s")["ok"]
        wait_for(lambda: len(probe.messages("result")) >= 2, message="the live images were not answered")
        final = wait_status(probe, "mnist/status/infer/w-expiry", lambda s: s["expired"] == 3 and s["queue"] == 0)
        assert final["processed"] + final["errors"] + final["expired"] == final["received"] - final["dropped"]
        ids = sorted(json.loads(m.payload)["id"] for m in probe.messages("result"))
        assert ids == ["keep", "plain"]
        assert status(probe, "mnist/status/infer/w-expiry")["expired"] == 3
    finally:
        sender.disconnect()
        sender.loop_stop()
        worker.stop()



async def test_the_console_loads_a_model_on_the_selected_worker(mosquitto_broker, tmp_path) -> None:
    from helpers import pilot_until
    from textual.widgets import Input

    from engine.console.observer import Observer
    from tui.app import MnistApp
    from tui.chrome.header_bar import BrokerInfo
    from tui.workers.load_dialog import LoadModelDialog
    from tui.workers.workers_pane import WorkersPane

    addr = mosquitto_broker.address
    worker = Worker(addr, Settings(), "w-console", model=model())
    worker.start()
    observer = Observer(addr)
    observer.start()
    path = other_weights(tmp_path)
    new_name = load_model(path).name
    app = MnistApp(observer, BrokerInfo(addr.url, "mosquitto", "mosquitto (test)"))
    notes: list[str] = []
    notify = app.notify
    app.notify = lambda message, *a, **k: (notes.append(str(message)), notify(message, *a, **k))[1]  # type: ignore[method-assign]

    def model_shown() -> str | None:
        rows = app.snap.roles_of("infer") if app.snap else []
        return rows[0].data.get("model") if rows else None

    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot_until(pilot, lambda: model_shown() == model().name, "worker never showed up")
            pane = app.screen.query_one(WorkersPane)
            pane.table.focus()
            await pilot.press("l")
            await pilot_until(pilot, lambda: isinstance(app.screen, LoadModelDialog), "no load dialog")
            app.screen.query_one(Input).value = str(tmp_path / "missing.pt")
            await pilot.press("enter")
            await pilot_until(pilot, lambda: any("file not found" in n for n in notes), lambda: f"notes {notes}")
            assert worker.model.name == model().name
            await pilot.press("l")
            await pilot_until(pilot, lambda: isinstance(app.screen, LoadModelDialog), "no load dialog")
            app.screen.query_one(Input).value = str(path)
            await pilot.press("enter")
            await pilot_until(pilot, lambda: model_shown() == new_name, lambda: f"model shown {model_shown()}")
    finally:
        observer.stop()
        worker.stop()


def test_max_wait_skips_images_published_too_long_ago_and_is_steerable(mosquitto_broker, probe_factory) -> None:
    """--max-wait: an image whose embedded publication time is older than the bound (the wait of a backlog
    at the broker) is counted as expired and not answered, where the data client decodes it, where paho
    decodes it (MQTT 5 properties) and when it aged in the worker's queue; fresh and untimed images are
    answered; the bound is changed, and turned off, by the `set` command."""
    addr = mosquitto_broker.address
    probe = probe_factory(addr, ["result", "mnist/reply/#", "mnist/status/#"], qos=1)
    worker = Worker(addr, Settings(max_wait=5.0), "w-wait", model=model())
    worker.start()
    topic = "mnist/status/infer/w-wait"
    sender = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sender.connect(addr.host, addr.port)
    sender.loop_start()
    try:
        assert worker.wait_ready()
        assert wait_status(probe, topic, lambda s: s.get("state") == "running")["max_wait"] == 5.0
        now = time.time()
        for i in range(3):  # published a minute ago: waited far past the bound
            probe.client.publish("mnist", tagged(f"old{i}", t=now - 60), qos=1)
        probe.client.publish("mnist", tagged("fresh"), qos=1)
        probe.client.publish("mnist", embed_meta(digit(), {"id": "untimed"}), qos=1)
        probe.client.publish("mnist", tagged("ahead", t=now + 60), qos=1)  # a clock ahead of ours: not old
        wait_for(lambda: len(probe.messages("result")) >= 3, message="the fresh images were not answered")
        final = wait_status(probe, topic, lambda s: s["expired"] == 3 and s["queue"] == 0 and s["processed"] == 3)
        assert final["processed"] + final["errors"] + final["expired"] == final["received"] - final["dropped"]
        assert sorted(json.loads(m.payload)["id"] for m in probe.messages("result")) == ["ahead", "fresh", "untimed"]
        assert worker.skipped == 3, "not skipped as the data client decoded them (FastClient.skip_when)"

        # An image with MQTT 5 properties goes through paho's decoder: skipped in the worker's callback.
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = [("note", "old")]
        sender.publish("mnist", tagged("old-with-props", t=time.time() - 60), qos=1,
                       properties=props).wait_for_publish(10)
        wait_status(probe, topic, lambda s: s["expired"] == 4)
        # An image that ages past the bound in the worker's own queue (paused meanwhile): skipped there.
        assert command(probe, "infer", "w-wait", '{"cmd":"set","max_wait":0.5,"req":"short"}', "short")["ok"]
        assert command(probe, "infer", "w-wait", '{"cmd":"stop","req":"p"}', "p")["ok"]
        probe.client.publish("mnist", tagged("aged-in-queue"), qos=1)
        wait_status(probe, topic, lambda s: s["received"] == 8 and s["queue"] == 1)
        time.sleep(0.7)  # past the 0.5 s bound while queued (a deadline to pass, not a wait for an event)
        assert command(probe, "infer", "w-wait", '{"cmd":"start","req":"s"}', "s")["ok"]
        final = wait_status(probe, topic, lambda s: s["expired"] == 5 and s["queue"] == 0)
        assert final["processed"] + final["errors"] + final["expired"] == final["received"] - final["dropped"]
        assert worker.skipped == 3 and worker._stale == 1, "skipped elsewhere than expected"
        assert len(probe.messages("result")) == 3, "an expired image was answered"

        bad = command(probe, "infer", "w-wait", '{"cmd":"set","max_wait":-1,"req":"b"}', "b")
        assert not bad["ok"] and worker.max_wait == 0.5, bad
        assert command(probe, "infer", "w-wait", '{"cmd":"set","max_wait":0,"req":"off"}', "off")["ok"]
        wait_status(probe, topic, lambda s: s["max_wait"] is None)
        probe.client.publish("mnist", tagged("old-but-wanted", t=time.time() - 60), qos=1)
        wait_for(lambda: any(json.loads(m.payload)["id"] == "old-but-wanted" for m in probe.messages("result")),
                 message="with the bound off, an old image was not answered")
        assert status(probe, topic)["expired"] == 5
    finally:
        sender.disconnect()
        sender.loop_stop()
        worker.stop()


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_a_stale_backlog_at_the_broker_is_dropped_with_the_session_not_read(request, transport: str) -> None:
    """--max-wait: 10,000 QoS 1 images wait at the broker for a stopped worker (it holds the 64 its receive
    maximum lets in) until they are older than the bound. Started, it finds STALE_RUN of them in a row too old,
    ends its image connection so that the broker drops the rest with the session, connects again and answers
    what comes next. It reads a fraction of the backlog, not all of it, counts the drop, reports no error.
    Over TLS too (the secured broker: its ACL's accounts for the worker, the console and the publisher)."""
    if transport == "tls":
        _, secure = request.getfixturevalue("secured_broker")
        wid, worker_addr, probe_addr = "worker-1", login(secure, "worker-1"), login(secure, "console")
        pub_addr, pub_id = login(secure, "player-1"), "player-1"
    else:
        addr = request.getfixturevalue("mosquitto_broker").address
        wid, worker_addr, probe_addr, pub_addr, pub_id = "w-stale", addr, addr, addr, "stale-flood"
    probe = request.getfixturevalue("probe_factory")(probe_addr, ["result", "mnist/reply/#", "mnist/status/#"], qos=1)
    worker = Worker(worker_addr, Settings(max_wait=1.0, queue_size=64), wid, model=model())
    worker.start()
    topic = f"mnist/status/infer/{wid}"
    flood = 10_000
    pub = engine_client(pub_addr, pub_id, protocol=5)
    pub.connect(pub_addr.host, pub_addr.port)
    pub.loop_start()
    try:
        assert worker.wait_ready()
        wait_status(probe, topic, lambda s: s.get("state") == "running")
        assert command(probe, "infer", wid, '{"cmd":"stop","req":"p"}', "p")["ok"]
        published = time.time()
        infos = pub.publish_many("mnist", [tagged("old", t=published)] * flood, qos=1)
        wait_for(lambda: all(i.is_published() for i in infos), timeout=60, message="the backlog was not published")
        held = wait_status(probe, topic, lambda s: s["queue"] == 64)
        assert held["received"] == 64 and held["expired"] == 0, held  # fresh when read; the rest at the broker
        wait_for(lambda: time.time() > published + 1.5, message="")  # the backlog ages past the bound
        assert command(probe, "infer", wid, '{"cmd":"start","req":"s"}', "s")["ok"]
        dropped = wait_status(probe, topic, lambda s: s.get("backlogs_dropped", 0) >= 1 and s.get("subscribed"))
        pub.publish("mnist", tagged("fresh"), qos=1)
        wait_for(lambda: any(json.loads(m.payload)["id"] == "fresh" for m in probe.messages("result")),
                 message="no answer after the backlog was dropped")
        final = wait_status(probe, topic, lambda s: s["processed"] == 1 and s["queue"] == 0)
    finally:
        pub.disconnect()
        pub.loop_stop()
        worker.shutdown()
    assert final["backlogs_dropped"] == dropped["backlogs_dropped"] == 1, final
    # read and skipped: the 64 held and the run that showed the backlog stale, not the 10,000
    assert final["expired"] == final["received"] - final["processed"] - final["dropped"]
    assert final["received"] < 2_000, final
    assert final["state"] == "running" and worker.last_error is None, (final, worker.last_error)
    assert [json.loads(m.payload)["id"] for m in probe.messages("result")] == ["fresh"]


def test_qos0_results_made_while_a_stale_backlog_is_dropped_all_go_out(mosquitto_broker, probe_factory) -> None:
    """QoS 0 results go out on the image connection, which a drop ends: 64 fresh images held by a stopped worker
    (answered one by one, --result-qos 0) with 3,000 stale ones behind them at the broker. Started, the worker
    drops the backlog while it is still answering; the results it makes meanwhile go out on its results
    connection, and every one of the 64 arrives (on the image connection, 19 to 49 of them did)."""
    addr = mosquitto_broker.address
    probe = probe_factory(addr, ["result", "mnist/reply/#", "mnist/status/#"], qos=1)
    settings = Settings(max_wait=1.0, queue_size=64, max_batch=1, max_delay_ms=0, result_qos=0)
    worker = Worker(addr, settings, "w-q0", model=model())
    worker.start()
    topic = "mnist/status/infer/w-q0"
    pub = engine_client(addr, "q0-flood", protocol=5)
    pub.connect(addr.host, addr.port)
    pub.loop_start()
    try:
        assert worker.wait_ready()
        wait_status(probe, topic, lambda s: s.get("state") == "running")
        assert command(probe, "infer", "w-q0", '{"cmd":"stop","req":"p"}', "p")["ok"]
        fresh = [tagged(f"f{i}", t=time.time() + 600) for i in range(64)]  # never too old
        infos = pub.publish_many("mnist", fresh, qos=1)
        infos += pub.publish_many("mnist", [tagged("stale", t=time.time() - 60)] * 3_000, qos=1)
        wait_for(lambda: all(i.is_published() for i in infos), timeout=60, message="the images were not published")
        wait_status(probe, topic, lambda s: s["queue"] == 64)
        assert command(probe, "infer", "w-q0", '{"cmd":"start","req":"s"}', "s")["ok"]
        final = wait_status(probe, topic, lambda s: s["processed"] == 64 and s.get("backlogs_dropped", 0) >= 1
                            and s.get("subscribed"))
        wait_for(lambda: len(probe.messages("result")) >= 64,
                 message=lambda: f"{len(probe.messages('result'))} of 64 results arrived")
    finally:
        pub.disconnect()
        pub.loop_stop()
        worker.shutdown()
    assert sorted(json.loads(m.payload)["id"] for m in probe.messages("result")) == sorted(f"f{i}" for i in range(64))
    assert final["errors"] == 0 and worker.last_error is None
