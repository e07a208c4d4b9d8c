"""Broker text on the screen: the console's side of the boundary in `engine/untrusted.py`.

The engine has already removed control and escape characters from most of what it keeps; the screen
shows whatever is left of them, and the invisible characters, as escapes (`\u200b`: a client id or a
topic that differs from another by one of them does not look the same), and adds the one thing the
engine does not know about: Textual markup. Whatever another client wrote is shown
through `markup_text` (inside a markup string) or `plain` (as a Text, never parsed), so a topic like
`a/[@click=app.quit]b` or a reason like `disk [/] full` is shown as written and does nothing.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text

from engine.untrusted import TEXT_LIMIT, visible_text


def escape_markup(text: str) -> str:
    """Every `[` escaped, whatever follows it (Textual's own `escape` leaves a `[` at the end alone, so
    `a/[` followed by the console's `/…[/]` became a closing tag and a MarkupError); a trailing backslash
    gets a space so that it cannot escape the console's next tag."""
    text = text.replace("[", "\\[")
    return text + " " if text.endswith("\\") else text


def markup_text(value: object, limit: int = TEXT_LIMIT) -> str:
    """`value` made visible (`engine.untrusted.visible_text`) and escaped, to go inside a markup string."""
    return escape_markup(visible_text(value, limit))


def plain(value: object, limit: int = TEXT_LIMIT, style: str = "") -> Text:
    """`value` made visible, as a Text that is never parsed for markup."""
    return Text(visible_text(value, limit), style=style)


def single_cell_text(value: object, limit: int = 24) -> str:
    """Cleaned text in which every character takes one terminal cell (a wide or zero-width one becomes "?"), for
    a drawing that counts characters as cells (plotext's legend: a wide worker id shifted the rest of its row)."""
    text = visible_text(str(value), limit)
    return "".join(c if cell_len(c) == 1 else "?" for c in text)
