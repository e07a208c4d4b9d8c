"""A role's data connection: images and results on a client of their own, apart from control and status.

A role's first client carries its control topics, replies, retained status and last will; a role
with `data_connection = True` moves its data subscriptions and publishes onto this second client.
Whatever queues on the data socket (a flood of images waiting to be read, thousands of images
waiting to be written, reads held back while the worker's queue is full), a command still arrives
on a socket of its own and its reply leaves on one (docs/PERFORMANCE.md, "Under overload").

A role with `results_connection = True` (the infer worker) also publishes on a third client, one that
subscribes to nothing (the worker's QoS 1/2 results; QoS 0 ones, which nothing acknowledges, stay on the
data connection). The broker's acknowledgements of QoS 1 results then come on a socket of their
own: on the image socket they queued behind the images the worker had not read yet, and with the
worker's queue full (reads held back) the results waited in the worker for seconds.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt

from engine.mqtt.client import RECONNECT_MAX_DELAY, RECONNECT_MIN_DELAY, connect_kwargs, make_client, reason_text
from engine.mqtt.fastclient import NO_MATCHING_SUBSCRIBERS, FastClient

if TYPE_CHECKING:
    from engine.roles.role import Role

log = logging.getLogger(__name__)

DROP_RECONNECT_DELAY = 0.02  # s before connecting again after drop_session (then doubling, as for a loss)


class DataConnection:
    """The second paho client of a role: subscribes `role.subscriptions()`, hands data to `role.on_data`.

    `outbound=True`: the role's results client instead (`<id>-results`): it only publishes. What it has not
    had acknowledged paho sends again after a reconnect, and the images it answers stay unacknowledged until
    then. With a durable session (`role.persistent`) its session is durable too, so that a QoS 2 result
    half done at a disconnect is finished, not delivered twice.
    """

    def __init__(self, role: Role, outbound: bool = False) -> None:
        self.role = role
        self.outbound = outbound
        self.client_id = f"{role.client_id}-{'results' if outbound else 'data'}"
        self.connected = threading.Event()
        self.ready = threading.Event()  # connected and the data subscriptions acknowledged
        self.generation = 0  # connections so far: packet ids of one mean nothing on the next
        self._sub_mid: int | None = None  # the subscribe made on connecting, until the broker answers it
        self._again_mids: set[int] = set()  # subscribe_again's, until answered
        self._refusals_logged: set[str] = set()
        self._client: FastClient | None = None
        self._dropping = False  # drop_session ended the connection: its loss is no error

    @property
    def client(self) -> FastClient:
        assert self._client is not None, "data connection not started"
        return self._client

    def start(self) -> None:
        role = self.role
        s = role.settings
        persistent = role.persistent
        client = make_client(
            role.address, self.client_id, protocol=s.protocol, clean_start=not persistent,
            session_expiry=s.session_expiry if persistent else None,
            receive_maximum=None if self.outbound else role.receive_maximum,
            manual_ack=False if self.outbound else role.manual_ack,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_publish = _OnPublishWhenNeeded(self)
        self._client = client
        client.connect_async(role.address.host, role.address.port, **connect_kwargs(client))
        client.loop_start()

    def drop_session(self) -> bool:
        """End the connection at once and connect again, so that the broker drops the session and what it
        queued for it (a worker's stale backlog: Worker._drop_backlog). Only for a session that ends with
        its connection. Called on the network thread; False when there is no socket to end."""
        client = self._client
        sock = client.socket() if client is not None else None
        if client is None or sock is None or not self.connected.is_set() or self.role.persistent:
            return False
        shutdown = getattr(sock, "shutdown", None)  # not on every transport (websockets)
        if shutdown is None:
            return False
        self._dropping = True
        client.reconnect_delay_set(min_delay=DROP_RECONNECT_DELAY, max_delay=RECONNECT_MAX_DELAY)  # type: ignore[arg-type]
        client.loop_write()  # what is queued goes out first (the socket's FIN follows the bytes written)
        try:
            shutdown(socket.SHUT_RDWR)  # paho reads the end of the stream next: connection lost, reconnect
        except OSError:  # gone meanwhile
            self._dropping = False
            client.reconnect_delay_set(min_delay=RECONNECT_MIN_DELAY, max_delay=RECONNECT_MAX_DELAY)
            return False
        return True

    def subscribe_again(self) -> None:
        """Subscribe to `role.subscriptions()` again on this connection (a worker back from a pause, after it
        unsubscribed with a full queue); a refusal is reported as one on connecting is."""
        rc, mid = self.client.subscribe(self.role.subscriptions())
        if rc == mqtt.MQTT_ERR_SUCCESS and mid is not None:
            self._again_mids.add(mid)

    def flush(self, timeout: float) -> bool:
        """Wait (at most `timeout` s) until what was published here is written and acknowledged."""
        client = self._client
        if client is None or not self.connected.is_set() or not isinstance(client, FastClient):
            return False
        return client.flush(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Disconnect. A connection whose acknowledgements matter (it acknowledges by hand, or its session
        outlives it) first waits, at most `timeout` s, until the broker has read every acknowledgement
        written (FastClient.round_trip): closing while the broker still writes to the socket makes its
        next write fail, and it drops the connection unread, so its session would send those messages again."""
        client = self._client
        if client is None:
            return
        role = self.role
        if (not self.outbound and (role.manual_ack or role.persistent) and self.connected.is_set()
                and isinstance(client, FastClient)):
            deadline = time.monotonic() + timeout
            if client.flush(timeout) and not client.round_trip(max(0.0, deadline - time.monotonic())):
                log.warning("%s %s: the broker did not confirm the last acknowledgements within %g s; it may "
                            "send those messages again", role.role, role.client_id, timeout)
        client.disconnect()
        client.loop_stop()

    # ----- paho callbacks (network thread) -----
    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, rc: Any, _p: Any) -> None:
        role = self.role
        if rc.is_failure:
            role.last_error = f"broker refused the data connection: {reason_text(rc)}"
            log.error("%s %s: %s", role.role, role.client_id, role.last_error)
            return
        if self.outbound:
            self.generation += 1
            self.connected.set()
            self.ready.set()
            role._check_ready()
            return
        if self.generation:  # a reconnect: the durable session, if any, is this connection's
            role.check_session(flags)
        if self._dropping:  # connected again after drop_session: a lost connection waits as usual again
            self._dropping = False
            client.reconnect_delay_set(min_delay=RECONNECT_MIN_DELAY, max_delay=RECONNECT_MAX_DELAY)
        self.generation += 1
        self._again_mids.clear()  # packet ids of the last connection
        role.on_data_connect()
        # stopping (a worker unsubscribed to be sent nothing more): a connection made meanwhile takes nothing new
        subs = [] if role._stop.is_set() and not role.persistent else role.subscriptions()
        self.connected.set()
        if subs:
            _rc, self._sub_mid = client.subscribe(subs)
        else:
            self.ready.set()
            role._check_ready()

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, mid: int, reason_codes: Any, _p: Any) -> None:
        again = mid in self._again_mids
        if mid != self._sub_mid and not again:
            return
        role = self.role
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:
            role.last_error = f"broker refused a subscription: {', '.join(refused)}"
            log.error("%s %s: %s", role.role, role.client_id, role.last_error)
        if again:
            self._again_mids.discard(mid)
            return
        self._sub_mid = None  # a later SUBACK with the same packet id answers something else
        self.ready.set()
        role._check_ready()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self.connected.clear()
        self.ready.clear()
        role = self.role
        role.ready.clear()
        if not self.outbound:
            role.on_data_disconnect()
        if self._dropping:
            log.debug("%s %s: data connection ended to drop its session; connecting again", role.role,
                      role.client_id)
        elif not role._stop.is_set():
            why = reason_text(rc)
            why = "connection lost" if why == "Unspecified error" else why
            role.last_error = f"{'results' if self.outbound else 'data'} connection: {why}; reconnecting"
            log.warning("%s %s: %s", role.role, role.client_id, role.last_error)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self.role.on_data(msg)
        except Exception:  # a role must never die of one message
            log.exception("%s %s: unexpected error handling a message on %s", self.role.role, self.role.client_id,
                          msg.topic)

    def on_publish(self, _c: mqtt.Client, _u: Any, _mid: int, rc: Any, _p: Any) -> None:
        """MQTT 5 brokers say in the PUBACK when the ACL denies a QoS 1 publish: say so once. They also say when
        nobody was subscribed to it (it is gone): the input role counts its images so in `no_subscriber` (a
        worker's results are not counted: the output role, a console and the metrics exporter all subscribe
        to them, and its answers on a response topic would count apart)."""
        if not rc.is_failure:
            if rc == NO_MATCHING_SUBSCRIBERS and not self.outbound:
                self.role.no_subscriber += 1
            return
        role = self.role
        topic = role.data_topic() or "a topic"
        role.refused += 1
        why = str(getattr(rc, "getName", lambda: rc)()).lower()
        role.last_error = f"the broker refused to let {role.role} {role.client_id} publish on {topic}: {why}"
        if topic not in self._refusals_logged:
            self._refusals_logged.add(topic)
            log.error("%s", role.last_error)


class _OnPublishWhenNeeded:
    """The data client's on_publish, falsy while the role publishes its data at QoS 0 (and none of its QoS 1 data
    still waits for its acknowledgement).

    paho asks `if on_publish:` before it builds a ReasonCode and a Properties object for the callback,
    and it does so for every QoS 0 message it writes (13% of a full-speed worker's GIL time, py-spy);
    FastClient joins QoS 0 writes only while nobody listens. A refused publish can only be reported
    for QoS 1, so the callback is needed only then.
    """

    def __init__(self, data: DataConnection) -> None:
        self._data = data

    def __call__(self, *args: Any) -> None:
        self._data.on_publish(*args)

    def __bool__(self) -> bool:
        data = self._data
        if not data.outbound and data.role.results_connection:
            return False  # a role with a results connection sends only QoS 0 results and acknowledgements here
        # QoS 1/2 data, and QoS 0 data while a QoS 1/2 publish still waits for its acknowledgement (a refusal, or
        # "no matching subscribers", comes in it whatever the QoS is now): a worker's QoS 0 results after QoS 1
        # ones (Worker._publish_results), the input role's images after `set qos 0`. Otherwise a QoS 0 batch
        # is written joined, without the callback.
        client = data._client
        return data.role.data_qos() > 0 or (client is not None and client.awaits_acknowledgement())
