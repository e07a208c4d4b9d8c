"""A message payload shown for what it is: PNG as an image, JSON pretty-printed, UTF-8 text, else hex."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from rich.cells import cell_len
from rich.highlighter import JSONHighlighter
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from engine.console.observer import Message
from engine.protocol import PNG_SIGNATURE, extract_meta
from engine.untrusted import loads_json, visible_text
from tui.safe_text import markup_text
from tui.widgets import formatting as fmt
from tui.widgets.digit_view import DigitView
from tui.widgets.halfblock import ImageDecodeError, open_png

HEX_LIMIT = 2048
TEXT_LIMIT = 20_000
MAX_JSON_DEPTH = 32  # deeper JSON is shown as text: pretty-printing it is quadratic, and recursive
_json_highlighter = JSONHighlighter()


class Rendered(NamedTuple):
    kind: str  # "empty", "png", "json", "text", "hex"
    info: str  # one line of markup
    body: Text | None
    png: bytes | None


def compact_json(value: Any, indent: int = 0, step: int = 2) -> str:
    """Pretty JSON that keeps lists of plain values (like ten probabilities) on one line."""
    pad = " " * (indent + step)
    if isinstance(value, dict) and value:
        items = [f"{pad}{json.dumps(k)}: {compact_json(v, indent + step)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    if isinstance(value, list) and value:
        if all(not isinstance(v, (dict, list)) for v in value):
            return "[" + ", ".join(json.dumps(v) for v in value) + "]"
        items = [pad + compact_json(v, indent + step) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"
    return json.dumps(value, ensure_ascii=False)


def json_depth(value: Any) -> int:
    """How deeply `value` nests lists and objects (iterative: any depth the parser gave is fine)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                return deepest
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def _is_text(text: str) -> bool:
    return all(c.isprintable() or c in "\n\r\t" for c in text[:4096])


def hex_dump(data: bytes, limit: int = HEX_LIMIT, per_row: int = 16) -> str:
    lines = []
    for offset in range(0, min(len(data), limit), per_row):
        chunk = data[offset : offset + per_row]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{offset:06x}  {hexes:<{3 * per_row - 1}}  {text}")
    if len(data) > limit:
        lines.append(f"… {len(data) - limit:,} more bytes")
    return "\n".join(lines)


def hex_row_bytes(width: int | None) -> int:
    """Bytes on a hex dump's row that fit `width` columns (16, 8 or 4): a wrapped row split its text column."""
    if width is None:
        return 16
    return next((n for n in (16, 8) if 4 * n + 9 <= width), 4)  # offset, 3 columns a byte, 2 gaps, the text


def props_markup(message: Message) -> str:
    """The message's MQTT 5 properties, one per line (already cleaned by the observer; escaped here)."""
    if message.props is None:
        return ""
    return "".join(f"\n[dim]{name}[/] {markup_text(value, 200)}" for name, value in message.props.lines())


def render_payload(message: Message, width: int | None = None) -> Rendered:
    """Decide what a payload is and how to show it (pure: no widgets), with its MQTT 5 properties; a hex
    dump's rows fit `width` columns."""
    r = _render(message, hex_row_bytes(width))
    extra = props_markup(message)
    return r._replace(info=r.info + extra) if extra else r


def _render(message: Message, per_row: int = 16) -> Rendered:
    data = message.payload
    cut = " [dim](truncated)[/]" if message.truncated else ""
    size = fmt.size(message.size)
    if not data:
        return Rendered("empty", f"empty payload{' [dim](clears a retained message)[/]' if message.retain else ''}",
                        None, None)
    if data.startswith(PNG_SIGNATURE):
        try:
            img = open_png(data)
        except ImageDecodeError as exc:
            return Rendered("hex", f"PNG that cannot be decoded ({markup_text(str(exc))}) · {size}{cut}",
                            Text(hex_dump(data, per_row=per_row)), None)
        meta = extract_meta(data)
        info = f"PNG {img.width}x{img.height} {img.mode} · {size}{cut}"
        if meta.id is not None or meta.label is not None:
            label = meta.label if meta.label is not None else "-"
            info += f"\nid [b]{markup_text(meta.id or '-')}[/] · label [b]{label}[/]"
            if meta.src:
                info += f" · from {markup_text(meta.src)}"
        return Rendered("png", info, None, data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return Rendered("hex", f"binary · {size}{cut}", Text(hex_dump(data, per_row=per_row)), None)
    stripped = text.strip()
    if stripped[:1] in ("{", "[") and not message.truncated:
        try:
            value = loads_json(stripped)
        except ValueError:  # not JSON, or nested too deeply for the parser
            pass
        else:
            if json_depth(value) > MAX_JSON_DEPTH:
                return Rendered("text", f"JSON nested deeper than {MAX_JSON_DEPTH} levels, shown as text · {size}",
                                Text(visible_text(text, TEXT_LIMIT, multiline=True)), None)
            body = Text(visible_text(compact_json(value), TEXT_LIMIT, multiline=True))
            _json_highlighter.highlight(body)
            return Rendered("json", f"JSON · {size}", body, None)
    if _is_text(text):
        return Rendered("text", f"UTF-8 text · {size}{cut}", Text(visible_text(text, TEXT_LIMIT, multiline=True)),
                        None)
    return Rendered("hex", f"binary · {size}{cut}", Text(hex_dump(data, per_row=per_row)), None)


def _shape(text: str) -> tuple[int, int]:
    lines = text.split("\n")
    return len(lines), max(map(len, lines))


def _fits(text: str, width: int | None) -> bool:
    """Every line of `text` (markup counted too: it only errs towards a new layout) fits `width` cells."""
    return width is not None and all(cell_len(line) <= width for line in text.split("\n"))


class PayloadView(VerticalScroll):
    """Shows one message; `show(message)` re-renders only when the message changes."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._shown: tuple[int, int | None] | None = None  # (message seq, the text's width when shown)
        self._message: Message | None = None
        self.kind: str | None = None
        self._info_shape: tuple[int, int] = (-1, -1)  # (newlines, longest line): same shape, same layout
        self._body_shape: tuple[int, int] = (-1, -1)

    def compose(self) -> ComposeResult:
        yield Static("[dim]select a topic to see its messages[/]", id="payload-info")
        yield DigitView(placeholder="", id="payload-image")
        yield Static("", id="payload-body")

    def on_resize(self) -> None:
        if self._message is not None:  # a hex dump's rows are cut to the width; wrapped lines take other heights
            self.show(self._message)

    def _text_width(self) -> int | None:
        """Columns the text has, as if a vertical scrollbar were there (a long dump adds one after it is cut
        to the width, and that adds no resize to cut it again); None before the first layout."""
        width = self.scrollable_content_region.width
        if width and not self.show_vertical_scrollbar:
            width -= self.styles.scrollbar_size_vertical
        return width if width > 0 else None

    def show(self, message: Message | None, hint: str | None = None) -> None:
        width = self._text_width()
        key = None if message is None else (message.seq, width)
        if key == self._shown and message is not None:
            return
        # Shown before the view had a width (or at another one): its Statics get a new layout whatever the
        # shape, else they kept the height of what they held before (a one-line heading, now and then).
        new_width = self._shown is None or self._shown[1] != width
        self._shown = key
        self._message = message
        info = self.query_one("#payload-info", Static)
        image = self.query_one("#payload-image", DigitView)
        body = self.query_one("#payload-body", Static)
        if message is None:
            self.kind = None
            self._info_shape = self._body_shape = (-1, -1)
            info.update(hint or "[dim]select a topic to see its messages[/]")
            image.show_png(None)
            image.display = False
            body.update("")
            return
        r = render_payload(message, width)
        same_kind = r.kind == self.kind
        self.kind = r.kind
        # A new message of the same kind and shape needs no new layout (that would repaint the screen), unless
        # a line of it is wider than the view: how many rows a wrapped line takes is the layout's to say.
        shape = _shape(r.info)
        info.update(r.info, layout=new_width or not (same_kind and shape == self._info_shape and _fits(r.info, width)))
        self._info_shape = shape
        image.display = r.png is not None
        image.show_png(r.png)
        plain = r.body.plain if r.body is not None else ""
        body_shape = _shape(plain) if r.body is not None else (-1, -1)
        body.update(r.body if r.body is not None else "",
                    layout=new_width or not (same_kind and body_shape == self._body_shape and _fits(plain, width)))
        self._body_shape = body_shape
        body.display = r.body is not None
        if not same_kind:
            self.scroll_home(animate=False)
