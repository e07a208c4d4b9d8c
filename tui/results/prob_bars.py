"""Ten class probabilities as a horizontal bar chart, one line per digit, the prediction highlighted."""

from __future__ import annotations

from collections.abc import Sequence

from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from tui.widgets.palette import palette

EIGHTHS = " ▏▎▍▌▋▊▉"
FULL = "█"


def bar(fraction: float, width: int) -> str:
    """`fraction` (0..1) of `width` cells in block characters, to an eighth of a cell."""
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    text = FULL * full + (EIGHTHS[part] if part else "")
    return text.ljust(width)


def bars_text(probs: Sequence[float], pred: int | None, label: int | None, width: int,
              styles: dict[str, Style]) -> Text:
    """Ten lines: digit, bar, percentage. The predicted digit's bar is strong (correct: success colour,
    wrong: error colour, no label: accent); the true label, when it differs, is marked."""
    bar_width = max(3, width - 9)
    out = Text(no_wrap=True, overflow="crop")
    for digit in range(10):
        p = float(probs[digit]) if digit < len(probs) else 0.0
        percent = f"{p * 100:6.1f}"
        shown = float(percent) / 100  # the bar shows the percentage written beside it: two 0.2% look alike
        if digit == pred:
            strong = styles["accent"] if label is None else (styles["ok"] if label == pred else styles["bad"])
            out.append(f"{digit} ", strong + styles["bold"])
            out.append(bar(shown, bar_width), strong)
            out.append(f"{percent}%", styles["bold"])
        else:
            mark = digit == label
            out.append(f"{digit} ", (styles["ok"] + styles["bold"]) if mark else styles["plain"])
            out.append(bar(shown, bar_width), styles["ok"] if mark else styles["muted"])
            out.append(f"{percent}%", styles["muted"] if p < 0.0005 else styles["plain"])
        if digit < 9:
            out.append("\n")
    return out


class ProbBars(Widget):
    """`show(probs, pred, label)`; None shows a placeholder. Follows the theme (re-rendered on change)."""

    DEFAULT_CSS = """
    ProbBars { height: 10; width: 1fr; }
    """

    def __init__(self, placeholder: str = "", *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.placeholder = placeholder
        self._probs: tuple[float, ...] | None = None
        self._pred: int | None = None
        self._label: int | None = None

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.refresh())

    @property
    def probs(self) -> tuple[float, ...] | None:
        return self._probs

    def show(self, probs: Sequence[float] | None, pred: int | None = None, label: int | None = None) -> None:
        self._probs = tuple(float(p) for p in probs) if probs is not None else None
        self._pred = pred
        self._label = label
        self.refresh()

    def render(self) -> Text:
        if self._probs is None:
            return Text(self.placeholder, style=Style(dim=True))
        pal = palette(self.app)
        styles = {"ok": pal.ok, "bad": pal.bad, "accent": pal.accent, "muted": pal.muted, "bold": pal.bold,
                  "plain": Style()}
        return bars_text(self._probs, self._pred, self._label, self.content_size.width, styles)
