"""`mnist-tui health`: exit 0 when the pipeline is healthy, 1 with one line why not.

Healthy: at least `--min` roles of the `--role` kind are alive (engine/monitor/liveness.py: a state a
connected role says, not "error", and a status heard in the last few seconds, so that a status the broker
kept after its role died does not count). Made for a Docker HEALTHCHECK or a Kubernetes exec probe; it reads
the same retained status topics as the console, so it checks roles wherever they run.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

from engine.monitor.liveness import SILENT_AFTER, ago, has_time, heard_again, is_silent, state_of
from engine.options import non_negative_int, number_in
from engine.topics import ROLES
from engine.untrusted import visible_text

MAX_TIMEOUT = 86_400  # a day: a wait past any clock (1e308) overflowed the first wait with a traceback


def verdict(statuses: dict[str, dict[str, Any]], role: str, minimum: int,
            silent_for: Mapping[str, float] | None = None) -> tuple[bool, str]:
    """(healthy, one line) for the latest statuses of the roles of one kind, keyed by client id;
    `silent_for`: seconds since each was last heard (a role missing from it was heard just now)."""
    silent_for = silent_for or {}

    def why_not(cid: str) -> str | None:
        state = state_of(statuses[cid])
        if state in ("offline", "error", "unknown"):
            return state
        quiet = silent_for.get(cid, 0.0)
        if quiet <= SILENT_AFTER:
            return None
        if quiet != float("inf"):
            return f"silent (last status {ago(quiet)} ago)"
        ahead = has_time(statuses[cid])  # a ts the watcher could not use: further ahead of its clock than 10 s
        return "silent (its time is ahead of this clock)" if ahead else "silent (no time in its status)"

    reasons = {cid: why_not(cid) for cid in statuses}
    healthy = sorted(cid for cid, why in reasons.items() if why is None)
    if len(healthy) >= minimum:
        names = f" ({', '.join(healthy[:5])}{', ...' if len(healthy) > 5 else ''})" if healthy else ""
        return True, f"healthy: {len(healthy)} {role} role(s) online{names}"
    others = sorted((cid, why) for cid, why in reasons.items() if why is not None)
    seen = "; ".join(f"{cid} {why}" for cid, why in others[:5]) + ("; ..." if len(others) > 5 else "")
    return False, (f"unhealthy: {len(healthy)} of at least {minimum} {role} role(s) online"
                   + (f" ({seen})" if seen else " (no other status seen)" if healthy else " (no status seen)"))


def add_health_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--role", choices=ROLES, default="infer", help="the kind of role to check (default: infer)")
    parser.add_argument("--min", type=non_negative_int, default=1, dest="min_roles", metavar="N",
                        help="how many roles of that kind must be online (default: 1)")
    parser.add_argument("--timeout", type=number_in(0, MAX_TIMEOUT), default=5.0, metavar="S",
                        help="seconds to wait for the pipeline to become healthy (default: 5, at most a day); 0 "
                             "answers from the statuses the broker holds now")


def run(args: argparse.Namespace) -> int:
    from engine.monitor.metrics import _protocols
    from engine.monitor.status_feed import StatusFeed, target_from_args
    from engine.mqtt.client import probe

    start = time.monotonic()
    address, topics = target_from_args(args)
    protocol = probe(address, timeout=max(args.timeout, 1.0), protocols=_protocols(args))
    statuses: dict[str, dict[str, Any]] = {}
    heard: dict[str, float] = {}  # when each was last known to send (time.monotonic)
    changed = threading.Condition()

    def on_status(_role: str, client_id: str, status: dict[str, Any] | None, retained: bool) -> None:
        cid = visible_text(client_id, 200, exact=True)  # printable, and one name per id
        with changed:
            if status is None:
                statuses.pop(cid, None)
                heard.pop(cid, None)
            else:
                statuses[cid] = status
                heard[cid] = heard_again(heard.get(cid), status, retained, time.monotonic(), time.time())
            changed.notify_all()

    feed = StatusFeed(address, topics, protocol=protocol, on_status=on_status, role=args.role, name="health")
    try:
        feed.start(timeout=max(args.timeout, 5.0))
        feed.sync(timeout=max(args.timeout, 5.0))  # every retained status is in
        deadline = start + args.timeout
        with changed:
            while True:
                now = time.monotonic()
                silent_for = {cid: now - t for cid, t in heard.items() if is_silent(t, now)}
                healthy, line = verdict(statuses, args.role, args.min_roles, silent_for)
                left = deadline - now
                if healthy or left <= 0:
                    break
                changed.wait(left)  # a silent role that sends again wakes it like any change
    finally:
        feed.stop()
    print(line, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1
