"""The draw dialog: draw a digit, send it down the pipeline like any other image, see what the model says.

The drawing goes out as a PNG on the image topic through the console's observer (local is remote: the
same path as `mosquitto_pub -f digit.png`), with the `mnist` metadata chunk carrying an id of its own.
The answer is picked out of the results by that id. Before it goes, the drawing is brought into MNIST
form (`engine.digits.preprocess.mnist_normalize`: ink box scaled into 20x20, centre of mass at the centre of
28x28), because a worker takes a 28x28 PNG as already framed; so a digit drawn small in a corner is
seen as MNIST would have it. The dialog shows that image too: what the model sees.
"""

from __future__ import annotations

import itertools
import time
from typing import Protocol

import numpy as np
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.events import Resize
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from engine.console.observer import ResultRow, Snapshot, Verdict
from engine.console.result_log import drawing_prefix
from engine.digits.preprocess import encode_png, mnist_normalize
from engine.errors import MnistError
from engine.protocol import embed_meta
from engine.topics import Topics
from tui.draw.draw_canvas import DrawCanvas
from tui.results.prob_bars import ProbBars
from tui.safe_text import markup_text
from tui.widgets import formatting as fmt
from tui.widgets.digit_view import DigitView

LARGE = (100, 40)  # screen size (columns, rows) from which the canvas is drawn twice as large
NO_ANSWER_AFTER = 10.0  # seconds: then the dialog says that no worker seems to answer
HINT = "[dim]mouse draws, right button erases · arrows move, space paints · [/]c[dim] clears · [/]enter[dim] sends[/]"
_ids = itertools.count(1)


def drawing_png(image: np.ndarray, image_id: str, source: str, now: float) -> bytes | None:
    """The drawing in MNIST form as a PNG with its metadata; None when nothing is drawn."""
    framed = mnist_normalize(image)
    if not framed.any():
        return None
    return embed_meta(encode_png(framed), {"id": image_id, "label": None, "t": round(now, 6), "src": source})


def result_markup(row: ResultRow) -> str:
    if row.error is not None:
        return f"[$text-error]the worker could not classify it: {markup_text(row.error)}[/]"
    conf = f" · {row.conf * 100:.1f}%" if row.conf is not None else ""
    details = [markup_text(row.worker or "?")]
    if row.latency_ms is not None:
        details.append(fmt.ms(row.latency_ms))
    return f"prediction [b $text-accent]{row.pred}[/]{conf}\n[dim]{' · '.join(details)}[/]"

READY = "draw a digit, then press [b]enter[/]"


class DrawTarget(Protocol):
    """Where a drawing goes: the console's observer publishes it on the image topic."""

    client_id: str
    topics: Topics

    def publish(self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False, *,
                tag: str | None = None, action: str = "publish") -> None: ...


class DrawDialog(ModalScreen[None]):
    """Opened with `d`; escape closes it. The app hands it every snapshot (`update_snapshot`)."""

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("enter", "send", "Send"),
        Binding("c,delete,backspace", "clear", "Clear"),
    ]

    def __init__(self, target: DrawTarget, snap: Snapshot | None = None) -> None:
        super().__init__()
        self.target = target
        self._snap = snap
        self.sent_id: str | None = None
        self.sent_at = 0.0
        self.result: ResultRow | None = None
        self._seq_before = 0  # results up to this seq came before the drawing was sent, or were looked at
        self._waiting_note = False
        self._verdict: Verdict | None = None  # what the broker said to the image

    def compose(self) -> ComposeResult:
        with Vertical(id="draw", classes="dialog"):
            with Horizontal(id="draw-body"):
                yield DrawCanvas(id="draw-canvas")
                with Vertical(id="draw-side"):
                    yield Static(READY, id="draw-status")
                    yield ProbBars("the ten class probabilities appear here", id="draw-bars")
                    with Vertical(id="draw-seen"):
                        yield Static("[dim]what the model sees (centred by mass, scaled into 20x20):[/]",
                                     id="draw-seen-text")
                        yield DigitView(placeholder="", id="draw-preview")
            yield Static(HINT, classes="dialog-hint", id="draw-hint")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Send", variant="primary", id="draw-send", compact=True)
                yield Button("Clear", id="draw-clear", compact=True)
                yield Button("Close", id="draw-close", compact=True)

    def on_mount(self) -> None:
        self.query_one("#draw", Vertical).border_title = "Draw a digit"
        self._fit(self.app.size.width, self.app.size.height)
        self.set_focus(self.canvas)  # now, not after the keys typed right after `d` (see keys.Key.binding)

    def on_resize(self, event: Resize) -> None:
        self._fit(event.size.width, event.size.height)

    def _fit(self, width: int, height: int) -> None:
        large = width >= LARGE[0] and height >= LARGE[1]
        self.canvas.scale = 2 if large else 1
        self.query_one("#draw", Vertical).set_class(large, "-large")

    @property
    def canvas(self) -> DrawCanvas:
        return self.query_one(DrawCanvas)

    @property
    def bars(self) -> ProbBars:
        return self.query_one(ProbBars)

    @on(DrawCanvas.Changed)
    def _drawing_changed(self) -> None:
        framed = mnist_normalize(self.canvas.image)
        preview = self.query_one("#draw-preview", DigitView)
        preview.show_png(encode_png(framed) if framed.any() else None)

    # ----- actions -----
    @on(Button.Pressed, "#draw-send")
    def action_send(self) -> None:
        observer = self.target
        now = time.time()
        image_id = f"{drawing_prefix(observer.client_id)}{next(_ids)}"
        png = drawing_png(self.canvas.image, image_id, observer.client_id, now)
        if png is None:
            self.notify("draw a digit first", severity="warning", timeout=3)
            return
        snap = self._snap
        try:
            observer.publish(observer.topics.images, png, qos=1, tag=image_id, action="draw")
        except MnistError as exc:
            self.notify(str(exc), title="Not sent", severity="error")
            return
        self._seq_before = snap.results[-1].seq if snap is not None and snap.results else 0
        self.sent_id, self.sent_at, self.result = image_id, now, None
        self._waiting_note = False
        self._verdict = None
        status = f"sent as [b]{markup_text(image_id)}[/]\n[dim]waiting for a worker…[/]"
        self.query_one("#draw-status", Static).update(status)
        self.bars.show(None)

    @on(Button.Pressed, "#draw-clear")
    def action_clear(self) -> None:
        """A clean sheet: the drawing, and the answer to the last one with it."""
        self.canvas.clear()
        self.sent_id, self.result, self._verdict = None, None, None
        self.query_one("#draw-status", Static).update(READY)
        self.bars.show(None)
        self.canvas.focus()

    @on(Button.Pressed, "#draw-close")
    def action_close(self) -> None:
        self.dismiss(None)

    # ----- the answer -----
    def update_snapshot(self, snap: Snapshot) -> None:
        self._snap = snap
        if self.sent_id is None or self.result is not None:
            return
        if self._verdict is None:
            self._verdict = next((v for v in snap.verdicts if v.tag == self.sent_id), None)
            if self._verdict is not None and self._verdict.refused:
                self.query_one("#draw-status", Static).update(
                    f"[$text-error]the broker refused the image: {markup_text(self._verdict.reason or '?')}[/]\n"
                    "[dim]this account may not publish on the image topic[/]")
                return
        if self._verdict is not None and self._verdict.refused:
            return  # no worker will answer an image the broker did not take
        for row in reversed(snap.results):
            if row.seq <= self._seq_before:
                break
            if row.id == self.sent_id:
                self.show_result(row)
                return
        if snap.results:
            self._seq_before = max(self._seq_before, snap.results[-1].seq)  # looked at these: not again
        if not self._waiting_note and snap.time - self.sent_at > NO_ANSWER_AFTER:
            self._waiting_note = True
            took = self._verdict is not None and self._verdict.outcome == "accepted"
            why = "the broker took the image" if took else "the broker did not confirm it took the image"
            self.query_one("#draw-status", Static).update(
                f"sent as [b]{markup_text(self.sent_id)}[/]\n"
                f"[$text-warning]no answer yet: is an infer worker running?[/]\n[dim]({why})[/]")

    def show_result(self, row: ResultRow) -> None:
        self.result = row
        self.query_one("#draw-status", Static).update(result_markup(row))
        if row.probs is not None:
            self.bars.show(row.probs, row.pred)
        else:
            self.bars.placeholder = "no probabilities in this result"
            self.bars.show(None)
