"""A 28x28 drawing canvas: the mouse paints (right button erases), arrows move a cursor, space paints.

The brush is soft, like the anti-aliased pen strokes of MNIST digits: full ink within about a pixel of
the pen, fading out to nothing a pixel further. Strokes between two mouse positions are filled in, so a
quick drag leaves a line, not dots. Pixels are drawn with half blocks: at scale 1 one cell holds two
pixels (28x14 cells), at scale 2 a pixel is two cells wide and one high (56x28 cells).

The ink and the paper are the theme's foreground and background colours; `pixels` is the digit itself,
white (255) on black (0), as the model wants it.
"""

from __future__ import annotations

import math

import numpy as np
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.color import Color
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from tui import keys
from tui.widgets.palette import solid_colour

SIDE = 28
PEN_FULL = 0.8  # full ink within this distance of the pen (pixels)...
PEN_EDGE = 1.9  # ...fading to none at this distance
UPPER_HALF = "▀"


def stamp(pixels: np.ndarray, x: float, y: float, erase: bool = False) -> bool:
    """Put the soft pen down at (x, y) (pixel units: pixel i spans [i, i+1)); True if a pixel changed."""
    changed = False
    reach = math.ceil(PEN_EDGE)
    for j in range(max(0, int(y) - reach), min(SIDE, int(y) + reach + 1)):
        for i in range(max(0, int(x) - reach), min(SIDE, int(x) + reach + 1)):
            d = math.hypot(i + 0.5 - x, j + 0.5 - y)
            if d >= PEN_EDGE:
                continue
            ink = 255.0 * min(1.0, (PEN_EDGE - d) / (PEN_EDGE - PEN_FULL))
            old = pixels[j, i]
            new = max(0.0, old - ink) if erase else max(old, ink)
            if new != old:
                pixels[j, i] = new
                changed = True
    return changed


def stroke(pixels: np.ndarray, x0: float, y0: float, x1: float, y1: float, erase: bool = False) -> bool:
    """The pen dragged from (x0, y0) to (x1, y1): stamps every half pixel along the way."""
    steps = max(1, math.ceil(math.hypot(x1 - x0, y1 - y0) / 0.5))
    changed = False
    for k in range(1, steps + 1):
        t = k / steps
        changed |= stamp(pixels, x0 + (x1 - x0) * t, y0 + (y1 - y0) * t, erase)
    return changed


class DrawCanvas(Widget, can_focus=True):
    """`pixels`: float32 28x28, 0..255. Posts `Changed` after every change."""

    DEFAULT_CSS = """
    DrawCanvas { width: 28; height: 14; }
    DrawCanvas.-large { width: 56; height: 28; }
    """

    BINDINGS = [
        *keys.arrow_bindings("move({}, {})", shift_action="move({}, {}, True)"),
        Binding("space", "paint", "Paint"),
        Binding("x", "erase", "Erase", show=False),
    ]

    ALLOW_SELECT = False  # a drag draws; it does not select text on the screen
    scale: reactive[int] = reactive(1, layout=True)

    class Changed(Message):
        """The drawing changed."""

        def __init__(self, canvas: DrawCanvas) -> None:
            super().__init__()
            self.canvas = canvas

        @property
        def control(self) -> DrawCanvas:
            return self.canvas

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.pixels = np.zeros((SIDE, SIDE), np.float32)
        self.cursor = (SIDE // 2, SIDE // 2)
        self._pen: tuple[float, float] | None = None  # the last mouse position while a button is down
        self._erasing = False

    # ----- the drawing -----
    @property
    def image(self) -> np.ndarray:
        """The drawing as uint8 28x28, white on black."""
        return np.clip(np.rint(self.pixels), 0, 255).astype(np.uint8)

    @property
    def empty(self) -> bool:
        return not self.pixels.any()

    def clear(self) -> None:
        self.pixels[:] = 0
        self._changed()

    def load(self, image: np.ndarray) -> None:
        """Replace the drawing with a 28x28 image (0..255)."""
        self.pixels[:] = np.asarray(image, np.float32)
        self._changed()

    def _changed(self) -> None:
        self.refresh()
        self.post_message(self.Changed(self))

    # ----- geometry -----
    def watch_scale(self, scale: int) -> None:
        self.set_class(scale > 1, "-large")

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return SIDE * self.scale

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return SIDE * self.scale // 2

    def cell_to_pixel(self, x: float, y: float) -> tuple[float, float]:
        """A position in cells (fractions allowed) to pixel units."""
        s = self.scale
        return x / s, y * 2 / s

    # ----- mouse -----
    def _event_pixel(self, event: events.MouseEvent) -> tuple[float, float]:
        offset = event.get_content_offset_capture(self)
        x, y = float(offset.x), float(offset.y)
        fx, fy = event.pointer_x % 1, event.pointer_y % 1  # sub-cell position where the terminal reports one
        x += fx if fx else 0.5
        y += fy if fy else 0.5
        return self.cell_to_pixel(x, y)

    def on_mouse_down(self, event: events.MouseDown) -> None:
        if event.button not in (1, 3):
            return
        self.focus()
        self.capture_mouse()
        self._erasing = event.button == 3
        x, y = self._event_pixel(event)
        self._pen = (x, y)
        self.cursor = (min(SIDE - 1, max(0, int(x))), min(SIDE - 1, max(0, int(y))))
        if stamp(self.pixels, x, y, self._erasing):
            self._changed()
        else:
            self.refresh()
        event.stop()

    def on_mouse_move(self, event: events.MouseMove) -> None:
        if self._pen is None:
            return
        x, y = self._event_pixel(event)
        x0, y0 = self._pen
        self._pen = (x, y)
        self.cursor = (min(SIDE - 1, max(0, int(x))), min(SIDE - 1, max(0, int(y))))
        if stroke(self.pixels, x0, y0, x, y, self._erasing):
            self._changed()
        event.stop()

    def on_mouse_up(self, event: events.MouseUp) -> None:
        if self._pen is None:
            return
        self._pen = None
        self.release_mouse()
        event.stop()

    # ----- keyboard -----
    def action_move(self, dx: int, dy: int, paint: bool = False) -> None:
        x, y = self.cursor
        nx, ny = min(SIDE - 1, max(0, x + dx)), min(SIDE - 1, max(0, y + dy))
        self.cursor = (nx, ny)
        if paint and stroke(self.pixels, x + 0.5, y + 0.5, nx + 0.5, ny + 0.5):
            self._changed()
        else:
            self.refresh()

    def action_paint(self) -> None:
        x, y = self.cursor
        if stamp(self.pixels, x + 0.5, y + 0.5):
            self._changed()

    def action_erase(self) -> None:
        x, y = self.cursor
        if stamp(self.pixels, x + 0.5, y + 0.5, erase=True):
            self._changed()

    # ----- drawing it -----
    def _colours(self) -> tuple[Color, Color, Color]:
        dark = self.app.current_theme.dark
        paper = solid_colour(self.app, "background", default="#000000" if dark else "#ffffff")
        ink = solid_colour(self.app, "foreground", default="#ffffff" if dark else "#000000")
        # the cursor in the theme's accent, or its primary colour where the accent is too pale on the paper
        candidates = (solid_colour(self.app, name, default="#0178d4") for name in ("accent", "primary"))
        cursor = next((c for c in candidates if abs(c.brightness - paper.brightness) >= 0.3), ink.blend(paper, 0.3))
        return paper, ink, cursor

    def render_line(self, y: int) -> Strip:
        s = self.scale
        width = SIDE * s
        if y >= SIDE * s // 2:
            return Strip.blank(width)
        paper, ink, cursor_colour = self._colours()
        show_cursor = self.has_focus
        top_row, bottom_row = (2 * y) // s, (2 * y + 1) // s
        cache: dict[tuple[int, int, bool, bool], Style] = {}
        segments: list[Segment] = []
        for cx in range(width):
            px = cx // s
            top = int(self.pixels[top_row, px])
            bottom = int(self.pixels[bottom_row, px])
            ct = show_cursor and self.cursor == (px, top_row)
            cb = show_cursor and self.cursor == (px, bottom_row)
            key = (top, bottom, ct, cb)
            style = cache.get(key)
            if style is None:
                tc = cursor_colour if ct else paper.blend(ink, top / 255)
                bc = cursor_colour if cb else paper.blend(ink, bottom / 255)
                style = cache[key] = Style(color=tc.rich_color, bgcolor=bc.rich_color)
            segments.append(Segment(UPPER_HALF, style))
        return Strip(Segment.simplify(segments), width)

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()
