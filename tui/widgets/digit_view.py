"""A digit (any PNG) drawn with half blocks, scaled to fit the widget and centred."""

from __future__ import annotations

from PIL import Image
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.strip import Strip
from textual.widget import Widget

from tui.widgets.halfblock import ImageDecodeError, image_strips, open_png


class DigitView(Widget):
    """Shows one image; `show_png(payload)` replaces it. Renders only when the image or size changes."""

    DEFAULT_CSS = """
    DigitView { width: 28; height: 14; }
    """

    def __init__(self, placeholder: str = "no digit yet", *, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.placeholder = placeholder
        self._payload: bytes | None = None
        self._image: Image.Image | None = None
        self._error: str | None = None
        self._strips: list[Strip] = []
        self._strips_for: tuple[int, int] | None = None
        self._text: list[str] = []
        self._text_for: tuple[str, int] | None = None

    @property
    def has_image(self) -> bool:
        return self._image is not None

    def show_png(self, payload: bytes | None) -> None:
        """Show this PNG (bytes); None clears. Same bytes again: nothing to do."""
        if payload == self._payload:
            return
        self._payload = payload
        self._image = None
        self._error = None
        if payload:
            try:
                self._image = open_png(payload)
            except ImageDecodeError as exc:
                self._error = str(exc)
        self._strips_for = None
        self.refresh()

    def show_image(self, image: Image.Image | None) -> None:
        self._payload = None
        self._image = image
        self._error = None
        self._strips_for = None
        self.refresh()

    def _layout_strips(self) -> list[Strip]:
        width, height = self.content_size
        if self._strips_for == (width, height):
            return self._strips
        self._strips_for = (width, height)
        if self._image is None:
            self._strips = []
        else:
            strips = image_strips(self._image, width, height)
            pad_top = max(0, (height - len(strips)) // 2)
            base = self.rich_style
            blank = Strip.blank(width, base)
            out = [blank] * pad_top
            for strip in strips:
                left = max(0, (width - strip.cell_length) // 2)
                right = width - left - strip.cell_length
                out.append(Strip([Segment(" " * left, base), *strip, Segment(" " * right, base)], width))
            self._strips = out
        return self._strips

    def _text_lines(self, text: str, width: int) -> list[str]:
        """`text` wrapped to `width` cells, each line centred (a sentence longer than the widget was cut)."""
        if self._text_for != (text, width):
            self._text_for = (text, width)
            lines = Text(text).wrap(self.app.console, width, justify="center", overflow="fold")
            self._text = [line.plain for line in lines]
        return self._text

    def render_line(self, y: int) -> Strip:
        width, height = self.content_size
        if self._image is None:
            text = self._error or self.placeholder
            lines = self._text_lines(text, width) if text and width > 0 else []
            top = max(0, height // 2 - len(lines) // 2)  # one line: in the middle row, as ever
            if top <= y < top + len(lines):
                style = self.rich_style + Style(dim=True)
                return Strip([Segment(lines[y - top], style)]).adjust_cell_length(width, style)
            return Strip.blank(width, self.rich_style)
        strips = self._layout_strips()
        return strips[y] if y < len(strips) else Strip.blank(width, self.rich_style)
