"""One result up close: its digit large, the label, the prediction, the ten probabilities, worker, latency.

The digit is the PNG that went over the broker, as the console's observer kept it (the newest few
thousand images, by id: see engine/console/observer.py); an older result says its image is no longer kept.
Left and right step through the list the result was picked from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.events import Resize
from textual.screen import ModalScreen
from textual.widgets import Static

from engine.console.observer import ResultRow
from engine.errors import MnistError
from tui.results.prob_bars import ProbBars
from tui.results.result_fields import ResultFields
from tui.safe_text import markup_text
from tui.widgets import formatting as fmt
from tui.widgets.digit_view import DigitView

LARGE = (100, 40)


class ImageSource(Protocol):
    """Where the images of results come from (the console's observer keeps the newest `max_images`)."""

    max_images: int

    def image(self, image_id: str) -> bytes | None: ...


class ResultDetail(ModalScreen[None]):
    """`rows[index]` is shown; escape or enter closes."""

    BINDINGS = [
        Binding("escape,enter,q", "close", "Close"),
        Binding("left,up", "step(-1)", "Previous", show=False),
        Binding("right,down", "step(1)", "Next", show=False),
    ]

    def __init__(self, rows: Sequence[ResultRow], index: int, images: ImageSource | None = None) -> None:
        super().__init__()
        self.images = images
        self.rows = rows
        self.index = index
        self.image_state = "loading"  # "loading", "shown", "gone" (not kept any more), "none" (no id), "error"

    @property
    def row(self) -> ResultRow:
        return self.rows[self.index]

    def compose(self) -> ComposeResult:
        with Vertical(id="detail", classes="dialog"):
            with Horizontal(id="detail-body"):
                yield DigitView(placeholder="", id="detail-digit")
                with Vertical(id="detail-side"):
                    yield ResultFields(id="detail-fields")
                    yield ProbBars("no probabilities in this result", id="detail-bars")
            yield Static("[dim]← → previous / next result · escape closes[/]", classes="dialog-hint")

    def on_mount(self) -> None:
        self._fit(self.app.size.width, self.app.size.height)
        self.call_after_refresh(self._show)  # pushed from outside a handler, its children come after its Mount

    def on_resize(self, event: Resize) -> None:
        self._fit(event.size.width, event.size.height)  # opened at 120x40, then 80x24: its side was cut

    def _fit(self, width: int, height: int) -> None:
        # query, not query_one: the first resize comes before the screen's children are mounted
        self.query("#detail").set_class(width >= LARGE[0] and height >= LARGE[1], "-large")

    def action_close(self) -> None:
        self.dismiss(None)

    def action_step(self, step: int) -> None:
        index = max(0, min(len(self.rows) - 1, self.index + step))
        if index != self.index:
            self.index = index
            self._show()

    def _show(self) -> None:
        row = self.row
        box = self.query_one("#detail", Vertical)
        box.border_title = f"Result {markup_text(row.id or '(no id)')}"
        box.border_subtitle = f"{fmt.count(self.index + 1)} of {fmt.count(len(self.rows))}"
        self.query_one(ResultFields).show(row)
        bars = self.query_one(ProbBars)
        bars.show(row.probs, row.pred, row.label)
        digit = self.query_one(DigitView)
        digit.show_png(None)
        if row.id is None:
            self.image_state = "none"
            digit.placeholder = "no id: no image to match"
            digit.refresh()
            return
        self.image_state = "loading"
        digit.placeholder = "…"
        self._fetch(row.id, self.index)

    @work(thread=True, exclusive=True, group="detail-image")
    def _fetch(self, image_id: str, index: int) -> None:
        try:
            png = self.images.image(image_id) if self.images is not None else None
        except MnistError as exc:  # the observer process is gone or too busy to answer
            self.app.call_from_thread(self._fetched, None, index, str(exc))
            return
        self.app.call_from_thread(self._fetched, png, index)

    def _fetched(self, png: bytes | None, index: int, error: str | None = None) -> None:
        if index != self.index or not self.is_mounted:
            return
        digit = self.query_one(DigitView)
        if error is not None:
            self.image_state = "error"
            digit.placeholder = error
            digit.refresh()
            return
        if png is None:
            self.image_state = "gone"
            kept = self.images.max_images if self.images is not None else 0
            # never seen (sent before the console started, on another topic, or not sampled at full speed), or
            # seen and since replaced by newer ones
            digit.placeholder = (f"image not at hand (the console keeps the last {fmt.count(kept)} images it saw)"
                                 if kept else "image not at hand")
            digit.refresh()
            return
        self.image_state = "shown"
        digit.show_png(png)
