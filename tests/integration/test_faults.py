"""Faults on a real mosquitto: a broker restart, a killed worker, a stuck worker, and SIGTERM / Ctrl-C.

Each test prints one `RELIABILITY ...` line with what it measured (run with -s to see them);
docs/RELIABILITY.md records them.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from fault_helpers import (
    Engine,
    command,
    id_counts,
    model,
    results,
    send,
    status,
    tagged,
    wait_answered,
    wait_status,
)
from helpers import MqttProbe, port_free, process_alive, wait_for

from engine.mqtt.address import BrokerAddress
from engine.mqtt.broker import EmbeddedBroker
from engine.roles.pipeline import LocalPipeline
from engine.roles.worker import Worker
from engine.settings import Settings

pytestmark = pytest.mark.needs_mosquitto

MODEL = os.environ.get("MNIST_MODEL") or None


def report(name: str, **numbers: object) -> None:
    print(f"\nRELIABILITY {name}: " + ", ".join(f"{k}={v}" for k, v in numbers.items()))


def test_broker_restart_mid_run_loses_nothing(tmp_path: Path) -> None:
    """mosquitto (persistence on) stops and starts on the same port while images flow at QoS 1: every role
    reconnects by itself, every image sent is answered, and duplicates are counted once by id."""
    n = 600
    settings = Settings(rate=200, qos=1, count=n, autostart=True, session_expiry=600, model_path=MODEL)
    with EmbeddedBroker(kind="mosquitto", persistence_dir=tmp_path / "db") as broker, \
            LocalPipeline(settings, address=broker.address) as pipeline:
        publisher, collector = pipeline.role("input"), pipeline.role("output")
        wait_for(lambda: collector.received >= n // 4, 60, message=lambda: f"{collector.received} results")
        t0 = time.monotonic()
        broker.stop()
        wait_for(lambda: not any(r.connected.is_set() for r in pipeline.roles), message="roles still connected")
        down_for = time.monotonic() - t0
        broker.start()
        t1 = time.monotonic()
        wait_for(lambda: all(r.connected.is_set() and r.reconnects == 1 for r in pipeline.roles), 60,
                 message=lambda: str({r.role: (r.connected.is_set(), r.reconnects) for r in pipeline.roles}))
        back_after = time.monotonic() - t1
        wait_for(lambda: collector.received >= n and publisher.finished, 90,
                 message=lambda: f"{collector.received} of {n} answered, publisher sent {publisher.sent}")
        assert publisher.sent == n
        assert collector.received == n, "each image answered once, counted by id"
        assert collector.errors == 0 and collector.malformed == 0
        assert collector.labelled == n
        report("broker-restart", sent=n, answered=collector.received, duplicates=collector.duplicates,
               broker_down_s=round(down_for, 2), all_roles_back_s=round(back_after, 2),
               outages_s={r.role: round(r.last_outage or 0, 2) for r in pipeline.roles})


def test_killed_worker_gets_its_images_back_from_its_session(mosquitto_broker, probe_factory) -> None:
    """SIGKILL a worker (`run infer --id w-durable --session-expiry 600`) holding unanswered images, publish
    more while it is dead, start it again with the same id: the broker hands it everything (its images
    were unacknowledged, its session was kept). The restart runs in this process, to save a torch import."""
    addr = mosquitto_broker.address
    wid = "w-durable"
    topic = f"mnist/status/infer/{wid}"
    answers = probe_factory(addr, ["result", "mnist/reply/#"])
    statuses = probe_factory(addr, "mnist/status/#")
    sender = probe_factory(addr)
    argv = ("--broker", addr.url, "--qos", "1", "run", "infer", "--id", wid, "--session-expiry", "600", "--quiet")
    worker = Engine(*argv)
    try:
        wait_status(statuses, topic, lambda s: s["state"] == "running", what="never running",
                    engine=worker)
        first = send(sender, (f"a{i}" for i in range(100)))
        wait_answered(answers, first)
        assert command(answers, "infer", wid, '{"cmd": "stop", "req": "pause"}', "pause")["ok"]
        in_hand = send(sender, (f"b{i}" for i in range(200)))
        wait_status(statuses, topic, lambda s: s["queue"] == 200, what="did not hold 200 images")
        worker.signal(signal.SIGKILL)
        worker.wait()
        wait_status(statuses, topic, lambda s: s["state"] == "offline" and not s["connected"], what="no last will")
        while_dead = send(sender, (f"c{i}" for i in range(200)))
        assert len(results(answers)) == 100, "nothing answered while paused or dead"
    finally:
        worker.close()
    again = Worker(addr, Settings(qos=1, session_expiry=600), wid, model=model())
    again.start()
    try:
        counts = wait_answered(answers, first + in_hand + while_dead)
        assert set(counts) == set(first + in_hand + while_dead)
        report("worker-sigkill", sent=500, in_hand_at_kill=200, sent_while_dead=200,
               answered=len(counts), duplicates=sum(counts.values()) - len(counts))
    finally:
        again.stop()


@pytest.mark.parametrize("protocol", [4], ids=["mqtt311"])
def test_durable_session_over_mqtt311_and_a_clean_stop(mosquitto_broker, probe_factory, protocol: int) -> None:
    """3.1.1 has no session expiry: clean session off keeps the worker's subscription; a clean stop of a
    durable worker keeps it too, so images published until it is back are answered then."""
    addr = mosquitto_broker.address
    answers = probe_factory(addr, "result")
    sender = probe_factory(addr)
    settings = Settings(qos=1, session_expiry=600, protocol=protocol)
    worker = Worker(addr, settings, "w-311", model=model())
    worker.start()
    try:
        assert worker.wait_ready(30)
        wait_answered(answers, send(sender, (f"a{i}" for i in range(50))))
    finally:
        worker.stop()
    queued = send(sender, (f"b{i}" for i in range(50)))
    again = Worker(addr, settings, "w-311", model=model())
    again.start()
    try:
        counts = wait_answered(answers, queued)
        assert sum(counts.values()) == 100, "each image once: the first 50 were acknowledged"
    finally:
        again.stop()


def test_worker_killed_for_good_others_carry_the_load(mosquitto_broker, probe_factory) -> None:
    """Two workers share the stream (--group); one is SIGKILLed: the last will marks it offline and the
    other answers everything after."""
    addr = mosquitto_broker.address
    statuses = probe_factory(addr, "mnist/status/#")
    answers = probe_factory(addr, "result")
    sender = probe_factory(addr)
    doomed = Engine("--broker", addr.url, "--qos", "1", "run", "infer", "--group", "g", "--id", "wa", "--quiet")
    survivor = Worker(addr, Settings(qos=1, share_group="g"), "wb", model=model())
    survivor.start()
    try:
        assert survivor.wait_ready(30)
        wait_status(statuses, "mnist/status/infer/wa", lambda s: s["state"] == "running", what="never running",
                    engine=doomed)
        before = send(sender, (f"a{i}" for i in range(200)))
        wait_answered(answers, before)
        shares = {w: len(results(answers, w)) for w in ("wa", "wb")}
        assert shares["wa"] > 0 and shares["wb"] > 0 and sum(shares.values()) == 200, shares
        doomed.signal(signal.SIGKILL)
        doomed.wait()
        gone = wait_status(statuses, "mnist/status/infer/wa", lambda s: s["state"] == "offline", what="not offline")
        assert gone["connected"] is False and gone["reason"] == "connection lost", "the last will, not a goodbye"
        after = send(sender, (f"b{i}" for i in range(200)))
        counts = wait_answered(answers, after)
        assert {r["worker"] for r in results(answers) if r["id"] in set(after)} == {"wb"}
        assert all(counts[i] == 1 for i in after)
        assert status(statuses, "mnist/status/infer/wb")["state"] == "running"
        report("worker-killed-for-good", shares_before=shares, answered_after_by_survivor=len(after))
    finally:
        doomed.close()
        survivor.stop()


@pytest.mark.slow
def test_stuck_worker_stays_bounded_then_sigterm_finishes_its_batch(mosquitto_broker, probe_factory) -> None:
    """A paused (stuck) worker with a 100-image queue under a QoS 0 flood of 4 KB images: the queue stays
    at 100, every image past it is counted in `dropped` (status), memory stays flat; told its images are QoS 1
    (`--qos 1`), it stays subscribed and reads them all (tests/integration/test_intake_pause.py: a worker at
    QoS 0 leaves its subscription instead). At QoS 1 nothing is
    dropped: the broker holds the backlog (receive maximum = queue size) and all is answered later.
    Then SIGTERM while thousands stream in: every image it received is answered, the goodbye status
    (connected: true, not the last will) carries the final counters, exit code 0. (One process for
    both, to save a torch import.)"""
    addr = mosquitto_broker.address
    wid = "stuck"
    topic = f"mnist/status/infer/{wid}"
    statuses = probe_factory(addr, "mnist/status/#")
    answers = probe_factory(addr, ["result", "mnist/reply/#"])
    sender = probe_factory(addr)
    worker = Engine("--broker", addr.url, "--qos", "1", "--queue-size", "100", "run", "infer", "--id", wid, "--quiet")
    flood = [tagged(f"t{i}") for i in range(3000)]
    pad = "x" * 4000
    try:
        wait_status(statuses, topic, lambda s: s["state"] == "running", what="never running",
                    engine=worker)
        assert command(answers, "infer", wid, '{"cmd": "stop", "req": "p1"}', "p1")["ok"]
        send(sender, (f"warm{i}" for i in range(2000)), qos=0, pad=pad)
        wait_status(statuses, topic, lambda s: s["received"] == 2000, what="did not receive the warm-up")
        rss0 = worker.rss()
        send(sender, (f"flood{i}" for i in range(20000)), qos=0, pad=pad)
        flooded = wait_status(statuses, topic, lambda s: s["received"] == 22000, what="did not receive the flood")
        rss1 = worker.rss()
        # queued: the 100 the queue holds, plus at most one batch the paused worker had in hand
        queued, dropped = flooded["queue"], flooded["dropped"]
        assert flooded["queue_max"] == 100 and 100 <= queued <= 100 + 64, flooded
        assert flooded["processed"] == 0 and dropped == 22000 - queued, "every image past the queue is counted"
        assert flooded["intake_pauses"] == 0, "told its images are QoS 1 (--qos 1), it left its subscription"
        assert rss1 - rss0 < 20 * 2**20, f"memory grew by {(rss1 - rss0) / 2**20:.1f} MiB under the flood"
        assert command(answers, "infer", wid, '{"cmd": "start", "req": "r1"}', "r1")["ok"]
        wait_for(lambda: len(results(answers, wid)) == queued, message="the queued images were not answered")

        assert command(answers, "infer", wid, '{"cmd": "stop", "req": "p2"}', "p2")["ok"]
        backlog = send(sender, (f"q{i}" for i in range(1000)), qos=1)
        # receive maximum 100: the broker sends no more unacknowledged images than that, keeps the rest
        held = wait_status(statuses, topic, lambda s: s["queue"] == 100, what="did not fill its queue at QoS 1")
        assert held["dropped"] == dropped and held["received"] == 22100, "nothing dropped at QoS 1"
        assert command(answers, "infer", wid, '{"cmd": "start", "req": "r2"}', "r2")["ok"]
        counts = wait_answered(answers, backlog)
        assert all(counts[i] == 1 for i in backlog)
        final = wait_status(statuses, topic, lambda s: s["processed"] == queued + 1000, what="not all processed")
        assert final["dropped"] == dropped and final["received"] == 23000
        report("stuck-worker", flood_qos0=22000, queue_max=100, answered_after=queued, dropped=dropped,
               rss_growth_mib=round((rss1 - rss0) / 2**20, 2), qos1_backlog=1000, qos1_answered=len(backlog),
               qos1_dropped=final["dropped"] - dropped)

        answered_before = len(results(answers, wid))
        for payload in flood:
            sender.client.publish("mnist", payload, qos=1)
        wait_for(lambda: len(results(answers, wid)) >= answered_before + 300, 60, message="no load")
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0
        assert "Traceback" not in worker.stderr, worker.stderr
        bye = wait_status(statuses, topic, lambda s: s["state"] == "offline", what="no goodbye")
        assert bye["connected"] is True, "a goodbye, not the last will"
        answered = bye["processed"] + bye["errors"]
        assert answered == bye["received"] - bye["dropped"] and bye["dropped"] == dropped, bye
        # The answers were at the broker before the goodbye (Role.stop flushes the data connection first);
        # on a loaded machine the probe may still be reading them: a generous deadline, not a timing check.
        wait_for(lambda: len(results(answers, wid)) == answered, 60,
                 message=lambda: f"{len(results(answers, wid))} results seen, goodbye says {answered}")
        assert len(id_counts(answers, wid)) == answered, "each answered once"
        report("sigterm-under-load", received_from_flood=bye["received"] - 23000,
               answered_from_flood=answered - (queued + 1000), published_by_test=3000)
    finally:
        worker.close()


def _mosquitto_children(engine: Engine) -> list:
    return [p for p in engine.children() if "mosquitto" in p.name()]


def test_ctrl_c_on_run_all_stops_everything(probe_factory) -> None:
    """`run all` on its embedded mosquitto, Ctrl-C to the process group under load: all three roles say
    goodbye, the worker answered everything it received, exit 0, and no mosquitto is left."""
    engine = Engine("--embedded", "mosquitto", "--rate", "500", "--qos", "1", "run", "all", new_session=True)
    try:
        port = int(engine.wait_line(r"broker: mqtt://127\.0\.0\.1:(\d+)").group(1))
        broker_pids = [p.pid for p in _mosquitto_children(engine)]
        assert len(broker_pids) == 1
        statuses = MqttProbe(BrokerAddress(port=port), "mnist/status/#")
        try:
            wait_for(lambda: any((status(statuses, m.topic) or {}).get("received", 0) >= 100
                                 for m in statuses.messages("mnist/status/output/+")), 60, message="no results")
            engine.ctrl_c()
            assert engine.wait() == 0
            assert "Traceback" not in engine.stderr, engine.stderr
            topics = {m.topic for m in statuses.messages()}
            assert {t.split("/")[2] for t in topics} == {"input", "infer", "output"}
            for topic in topics:
                bye = status(statuses, topic)
                assert bye["state"] == "offline" and bye["connected"] is True, (topic, bye)
                if bye["role"] == "infer":
                    assert bye["processed"] + bye["errors"] == bye["received"] - bye["dropped"], bye
        finally:
            statuses.close()
        wait_for(lambda: not any(process_alive(pid) for pid in broker_pids), message="mosquitto left running")
        wait_for(lambda: port_free(port), message=f"port {port} still taken")
    finally:
        engine.close()


@pytest.mark.slow
@pytest.mark.parametrize(("moment", "signum"), [("at-once", signal.SIGINT), ("broker-starting", signal.SIGINT),
                                                ("broker-starting", signal.SIGTERM)])
def test_ctrl_c_at_any_moment_leaves_nothing_running(moment: str, signum: int) -> None:
    """Ctrl-C (or SIGTERM) right after the start, or as soon as the embedded mosquitto exists: the start is
    cut short (exit 130 for Ctrl-C, as for any interrupted command, 143 for SIGTERM; 0 where the roles were up
    already), and no mosquitto is left behind."""
    engine = Engine("--embedded", "mosquitto", "run", "all", new_session=True)
    try:
        brokers: list[int] = []
        if moment == "broker-starting":
            brokers = wait_for(lambda: [p.pid for p in _mosquitto_children(engine)], 60,
                               message=lambda: f"no mosquitto child: {engine.stderr}")
        os.killpg(engine.pid, signum)
        code = engine.wait()
        if moment == "broker-starting":
            assert code in (0, 128 + signum) and "Traceback" not in engine.stderr, (code, engine.stderr)
        wait_for(lambda: not any(process_alive(pid) for pid in brokers), message="mosquitto left running")
        assert not _mosquitto_children(engine)
    finally:
        engine.close()


def test_a_worker_whose_control_connection_comes_up_first_still_gets_ready(mosquitto_broker, monkeypatch) -> None:
    """A role's first status (sent from the control connection's on_connect) reads the data client's
    counters. When the control connection came up before the data client existed, that raised on the
    control network thread, which died: the worker was never ready (seen once on a loaded machine).
    Here the data connection is made slow to start, so the control connection would always come first."""
    from engine.roles.dataplane import DataConnection

    start = DataConnection.start

    def slow_start(self: DataConnection) -> None:
        time.sleep(1.0)  # the broker answers the control connection meanwhile
        start(self)

    monkeypatch.setattr(DataConnection, "start", slow_start)
    worker = Worker(mosquitto_broker.address, Settings(), "slow-data", model=model())
    worker.start()
    try:
        assert worker.wait_ready(30), f"never ready (last error: {worker.last_error})"
        assert worker.client._thread is not None and worker.client._thread.is_alive(), "control thread died"
    finally:
        worker.stop()
