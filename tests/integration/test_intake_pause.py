"""A worker whose queue is full under QoS 0 images leaves its image subscription until the queue is half empty:
the broker drops what is published meanwhile instead of sending it to be read and shed. Real mosquitto and
model, an in-process worker; waits with deadlines."""

from __future__ import annotations

import pytest
from fault_helpers import command, model, results, send, tagged, wait_status
from helpers import wait_for

from engine.roles.worker import Worker
from engine.settings import Settings

WID = "w-pause"
STATUS = f"mnist/status/infer/{WID}"


def _answered(probe, prefix: str) -> list[str]:
    return [r["id"] for r in results(probe) if r["id"].startswith(prefix)]


@pytest.mark.parametrize("protocol", [5, 4], ids=["mqtt5", "mqtt311"])
def test_a_full_worker_leaves_its_subscription_and_is_back_with_room(mosquitto_broker, probe_factory,
                                                                     protocol: int) -> None:
    """Stopped, the worker fills its queue of 50 with QoS 0 images; the next is shed and it unsubscribes.
    The 500 published then never reach it (the code before read and shed every one). Started again, it
    answers its queue, subscribes again, and answers what comes next; a retained image, which the broker
    sends again at that subscribe, is answered once. (Not on the Python broker: amqtt forwards a QoS 0 image at
    the subscription's QoS 1, and a worker never leaves once a QoS 1 image came.)"""
    addr = mosquitto_broker.address
    probe = probe_factory(addr, ["result", "mnist/reply/#", "mnist/status/#"], qos=1, protocol=protocol)
    probe.client.publish("mnist", tagged("r0"), qos=0, retain=True).wait_for_publish(10)
    worker = Worker(addr, Settings(queue_size=50, max_batch=8, protocol=protocol), WID, model=model())
    worker.start()
    try:
        assert worker.wait_ready()
        wait_for(lambda: _answered(probe, "r"), message="the retained image was not answered at the subscribe")
        assert command(probe, "infer", WID, '{"cmd":"stop","req":"p"}', "p")["ok"]  # nothing leaves the queue
        send(probe, [f"q{i}" for i in range(60)], qos=0)
        full = wait_status(probe, STATUS, lambda s: s.get("intake_pauses") == 1 and s["queue"] >= 50,
                           what="no pause with a full queue")
        read, queued = full["received"], full["queue"]  # queued: with a batch taken just before the stop, if any
        assert queued <= 50 + 8 and queued < read - 1 <= 60, full  # the retained image, the queue, one shed at least
        send(probe, [f"x{i}" for i in range(500)], qos=0)  # published while it is not subscribed
        assert command(probe, "infer", WID, '{"cmd":"start","req":"s"}', "s")["ok"]
        wait_for(lambda: len(_answered(probe, "q")) == queued,
                 message=lambda: f"{len(_answered(probe, 'q'))} of {queued}")
        # subscribed again once the queue was half empty: what is published now is answered
        fresh = send(probe, [f"f{i}" for i in range(20)], qos=0)
        wait_for(lambda: sorted(_answered(probe, "f")) == sorted(fresh), message="the fresh images were not answered")
        final = wait_status(probe, STATUS, lambda s: s["processed"] == 1 + queued + 20 and s["queue"] == 0)
        # the 500 published in the pause came after the 60 and before the 20, on one connection: none was read
        assert final["received"] == read + 20, final
        assert final["intake_pauses"] == 1 and final["subscribed"] is True, final
        assert not _answered(probe, "x")
        assert _answered(probe, "r") == ["r0"], "the retained image was answered again after the pause"
    finally:
        probe.client.publish("mnist", b"", qos=0, retain=True).wait_for_publish(10)
        worker.stop()
