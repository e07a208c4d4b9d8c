"""The Publisher pane: the input role's state and settings, and the last digit it sent."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from engine.console.observer import ResultRow, RoleStatus, Snapshot
from engine.roles.publisher import BURST
from engine.untrusted import clean_number
from tui import keys
from tui.safe_text import markup_text
from tui.widgets import formatting as fmt
from tui.widgets.digit_view import DigitView

NO_PUBLISHER = (
    "[dim]no publisher on the broker[/]\n\n"
    "start one with\n[b]mnist-tui run input[/]\n[dim]--broker URL[/]\n"
    "or run [b]mnist-tui[/] alone"
)


ORDERS = {"sequential": "in order", "shuffle": "shuffled"}
# Seconds by which a status may come after results of images sent after it: images and statuses go on two
# connections of the publisher, each queued on its own (see sent_since_status).
LATE_STATUS = 1.0
SHORT_ORDERS = {"sequential": "seq", "shuffle": "shuffle"}


def pick_publisher(snap: Snapshot) -> tuple[RoleStatus | None, int]:
    """The input role to show: a running one first, then any online one, then the newest offline one; a silent
    one (no status for a while: gone, or a single stray status) after every one still heard from."""
    inputs = snap.roles_of("input")
    if not inputs:
        return None, 0
    ranked = sorted(inputs, key=lambda r: (r.silent(snap.time), r.state != "running", not r.online, -r.received))
    return ranked[0], len(inputs)


def _number(image_id: Any, prefix: str) -> int | None:
    """N of an image id `<prefix>N`, else None."""
    if not isinstance(image_id, str) or not image_id.startswith(prefix):
        return None
    digits = image_id[len(prefix):]
    return int(digits) if digits.isascii() and digits.isdigit() else None


def sent_since_status(role: RoleStatus, rows: Sequence[ResultRow]) -> int:
    """How many images the input role has sent since the `sent` of its last status, as far as the results
    seen say: the status comes once a second, the results as they come, and beside `689 results` a `sent
    665` read as results of images never sent (duplicates, or a bug).

    A publisher numbers its images `<client id>-N`, with no gaps, and its status's `last` is the image that
    its `sent` counts up to (engine/roles/publisher.py); so a result of its image N says that N minus the
    number of `last` images went out since. Only the results that came at most LATE_STATUS before the status
    count (older ones are of images it counted; a restarted publisher numbers from 1 again). What it says
    is a floor: images whose results have not come yet are counted by the next status. 0 when the status
    does not say where its count is (no `last` after a first image, or one of another form)."""
    data = role.data
    prefix = f"{role.id}-"
    last = data.get("last")
    if isinstance(last, dict):
        base = _number(last.get("id"), prefix)
    else:  # nothing sent yet by this process: its first image is number 1
        base = 0 if last is None and data.get("sent") == 0 else None
    if base is None:
        return 0
    newest, newest_t = base, 0.0
    since = role.received - LATE_STATUS
    for row in reversed(rows):  # newest last
        if row.t < since:
            break
        n = _number(row.id, prefix)
        if n is not None and n > newest:
            newest, newest_t = n, row.t
    # Any client may publish a result: a forged id (`input-a-999999999`) counts only as far as the publisher's own
    # rate could have gone since the status (and a burst more)
    rate = clean_number(data.get("rate_actual"), 0, 1e6) or 0.0
    return min(newest - base, BURST + int(rate * max(0.0, newest_t - since)))


def _last_png(data: Any) -> bytes | None:
    last = data.get("last")
    if not isinstance(last, dict) or not isinstance(last.get("png"), str):
        return None
    try:
        return base64.b64decode(last["png"], validate=True)
    except (binascii.Error, ValueError):
        return None


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def publisher_markup(role: RoleStatus, now: float, narrow: bool, since_status: int = 0) -> str:
    """`since_status`: images sent since the status's `sent`, from the results seen (sent_since_status)."""
    d = role.data
    if not role.online:
        state = "[bold $text-error]○ offline[/]"
    elif role.silent(now):
        state = f"[$text-warning]? silent {fmt.duration(now - role.received)}[/]"
    elif role.state == "running":
        state = "[bold $text-success]● running[/]"
    else:
        state = f"[$text-warning]■ {markup_text(role.state, 40)}[/]"
    rate_set = fmt.set_rate(d.get("rate"))
    actual = fmt.rate(d.get("rate_actual"))
    orders = SHORT_ORDERS if narrow else ORDERS
    order = orders.get(str(d.get("order")), markup_text(d.get("order", "?"), 20))
    loop = "loop" if d.get("loop") else "once"
    dataset = PurePath(str(d.get("dataset", "?"))).name
    last = d.get("last") if isinstance(d.get("last"), dict) else None
    sent, remaining = d.get("sent"), d.get("remaining")
    if since_status > 0 and _is_count(sent):
        sent += since_status
        if _is_count(remaining):
            remaining = max(0, remaining - since_status)
    lines = [
        f"state   {state}",
        f"sent    [b]{fmt.count(sent)}[/]" + (f" [dim]({fmt.count(remaining)} left)[/]" if remaining else ""),
        f"rate    [b]{rate_set}[/] [dim]now[/] {actual}",
        f"qos {markup_text(d.get('qos', '?'))} [dim]·[/] {order} [dim]·[/] {loop}",
    ]
    if narrow:  # "rate    10,000/s now 9,876/s" is cut at 80x24: the rate it keeps on a line of its own
        lines[2:3] = [f"rate    [b]{rate_set}[/]", f"now     {actual}"]
    if not narrow and d.get("rate") == 0:  # "max": kept to what the workers take, or a flood
        paced = d.get("paced")
        if paced is not None:
            lines.insert(3, f"paced   {fmt.rate(paced)} [dim]by workers[/]")
        elif d.get("pace") is False:
            lines.insert(3, "paced   [dim]no (flood)[/]")
    if not narrow:
        lines.append(f"data    {markup_text(dataset, 60)} [dim]({fmt.count(d.get('size'))})[/]")
        if d.get("errors"):
            lines.append(f"errors  [$text-error]{fmt.count(d.get('errors'))}[/]")
    if last is not None:
        label = last.get("label")
        lines.append(f"last    label [b]{label if label is not None else '?'}[/]")
    return "\n".join(lines)


class PublisherPane(Vertical, can_focus=True):
    """Shows the input role from its status messages; steered through the control topic by the app."""

    BINDINGS = keys.bindings(keys.PUBLISHER)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Publisher"
        self._markup: str | None = None

    def compose(self) -> ComposeResult:
        yield Static(NO_PUBLISHER, id="publisher-fields")
        yield DigitView(id="publisher-digit")

    def update_snapshot(self, snap: Snapshot) -> None:
        role, n = pick_publisher(snap)
        narrow = self.size.width < 30 or self.size.height < 20
        fields = self.query_one("#publisher-fields", Static)
        digit = self.query_one(DigitView)
        if role is None:
            markup = NO_PUBLISHER
            subtitle = ""
            digit.show_png(None)
        else:
            markup = publisher_markup(role, snap.time, narrow, sent_since_status(role, snap.results))
            subtitle = markup_text(role.id) if n == 1 else f"{markup_text(role.id)} (1 of {n})"
            digit.show_png(_last_png(role.data))
        if markup != self._markup:
            same_height = self._markup is not None and markup.count("\n") == self._markup.count("\n")
            self._markup = markup
            fields.update(markup, layout=not same_height)
        if self.border_subtitle != subtitle:
            self.border_subtitle = subtitle
