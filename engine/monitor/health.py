"""`mnist-tui health`: exit 0 when the pipeline is healthy, 1 with one line why not.

Healthy: at least `--min` roles of the `--role` kind have a live status on the broker (not offline, not
in state "error"). Made for a Docker HEALTHCHECK or a Kubernetes exec probe; it reads the same retained
status topics as the console, so it checks roles wherever they run.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

from engine.options import non_negative_int, number_in
from engine.topics import ROLES, sanitize_id

UNHEALTHY_STATES = ("offline", "error")
MAX_TIMEOUT = 86_400  # a day: a wait past any clock (1e308) overflowed the first wait with a traceback


def state_of(status: dict[str, Any]) -> str:
    """The role's state as a short word; anything malformed counts as unknown (and so not healthy)."""
    state = status.get("state")
    if status.get("connected") is False:
        return "offline"
    return state if isinstance(state, str) and state else "unknown"


def verdict(statuses: dict[str, dict[str, Any]], role: str, minimum: int) -> tuple[bool, str]:
    """(healthy, one line) for the latest statuses of the roles of one kind, keyed by client id."""
    healthy = sorted(cid for cid, s in statuses.items() if state_of(s) not in UNHEALTHY_STATES + ("unknown",))
    if len(healthy) >= minimum:
        names = f" ({', '.join(healthy[:5])}{', ...' if len(healthy) > 5 else ''})" if healthy else ""
        return True, f"healthy: {len(healthy)} {role} role(s) online{names}"
    others = sorted((cid, state_of(s)) for cid, s in statuses.items() if cid not in healthy)
    seen = "; ".join(f"{cid} {state}" for cid, state in others[:5]) + ("; ..." if len(others) > 5 else "")
    return False, (f"unhealthy: {len(healthy)} of at least {minimum} {role} role(s) online"
                   + (f" ({seen})" if seen else " (no status seen)"))


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
    changed = threading.Condition()

    def on_status(_role: str, client_id: str, status: dict[str, Any] | None, _retained: bool) -> None:
        with changed:
            if status is None:
                statuses.pop(sanitize_id(client_id), None)
            else:
                statuses[sanitize_id(client_id)] = status
            changed.notify_all()

    feed = StatusFeed(address, topics, protocol=protocol, on_status=on_status, role=args.role, name="health")
    try:
        feed.start(timeout=max(args.timeout, 5.0))
        feed.sync(timeout=max(args.timeout, 5.0))  # every retained status is in
        deadline = start + args.timeout
        with changed:
            while True:
                healthy, line = verdict(statuses, args.role, args.min_roles)
                left = deadline - time.monotonic()
                if healthy or left <= 0:
                    break
                changed.wait(left)
    finally:
        feed.stop()
    print(line, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1
