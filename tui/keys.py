"""Every key of the console, once: the bindings, the help screen and the command palette are made from here.

A `Key` says what a key does in words for the help screen, in a word for the footer, and (when it has a
`command` title) how the command palette calls it. The sections follow the panes: a key of a pane shows in
the footer while that pane has focus; `everywhere` keys of a pane also work from the others (the main
screen binds them, hidden). A `Key` without an action is a line of help for keys a widget handles itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class Key:
    keys: str  # Textual key names, comma separated ("plus,equals_sign")
    action: str  # a Textual action ("app.step", "toggle_charts"); "" for a help line only
    label: str  # the footer's word
    help: str  # the help screen's line
    display: str = ""  # what the help and footer show for the key; default: the first key's display
    footer: bool = True  # shown in the footer where the key is bound
    everywhere: bool = False  # a pane key that also works from every other pane
    priority: bool = False
    opens: bool = False  # the key opens a dialog or a screen: bound with priority (see `binding`)
    command: str = ""  # the command palette's title; "" keeps it out of the palette

    @property
    def method(self) -> str:
        """The name of the action's method (`action_step` for "app.step")."""
        return "action_" + self.action.split(".")[-1].split("(")[0]

    def binding(self, *, show: bool | None = None) -> Binding:
        # A key that opens a screen is a priority binding: it runs as the app takes it, not after a trip up from
        # the focused widget through the queues of its ancestors, busy under a flood (`?` opened the help with p90
        # 28-43 ms, max 46-67 ms as a priority binding, and p90 36-59 ms, max 59-110 ms as a plain one: 3 and 4
        # runs of 20, python -m tools.keylatency, interleaved). In a burst (a paste, tmux send-keys) it acts in
        # order all the same: tui/key_order.py routes each key once the one before is done. push_screen holds the
        # app's queue until the screen is mounted, so the keys typed after it go to that screen, which focuses its
        # field in on_mount with set_focus (focus() would wait in the queue behind them). A focused text field
        # still takes these keys as text: Textual leaves out the bindings of a key that the field consumes
        # (check_consume_key).
        return Binding(self.keys, self.action, self.label, show=self.footer if show is None else show,
                       key_display=self.display or None, priority=self.priority or self.opens)


GLOBAL = (
    Key("space", "app.toggle_publishing", "Start/stop", "start or stop publishing (every publisher on the broker)",
        priority=True, command="Start or stop publishing"),
    Key("tab", "app.next_pane", "Next pane", "next pane", footer=False, priority=True),
    Key("shift+tab", "app.previous_pane", "Previous pane", "previous pane", footer=False, priority=True),
    Key("z", "app.zoom", "Zoom", "fill the screen with the focused pane, or back to all four", footer=False,
        command="Zoom pane"),
    Key("d", "app.draw", "Draw", "draw a digit, send it, see the ten probabilities", command="Draw a digit",
        opens=True),
    Key("m", "app.matrix", "Matrix", "confusion matrix; a cell lists its digits", footer=False,
        command="Confusion matrix", opens=True),
    Key("e", "app.export", "Export CSV", "export the results held since the last c to a CSV file",
        footer=False, command="Export results to CSV"),
    Key("question_mark,f1", "app.help", "Help", "this screen", display="?", command="Keys and help", opens=True),
    Key("q", "app.quit", "Quit", "quit (local roles and the embedded broker stop too); q again: at once"),
    Key("ctrl+p", "", "", "command palette (every action by name; themes too)"),
)

PUBLISHER = (
    Key("n", "app.step", "Send one", "send one image now", everywhere=True, command="Send one image"),
    Key("plus,equals_sign", "app.faster", "Faster", "publish faster (a step up; max: as fast as the workers take)",
        display="+", everywhere=True, command="Faster"),
    Key("minus", "app.slower", "Slower", "publish slower (a step down)", display="-", everywhere=True,
        command="Slower"),
    Key("r", "app.rate", "Rate", "type a rate: images per second, or 0 or max", everywhere=True,
        command="Set the publishing rate", opens=True),
)

WORKERS = (
    Key("g", "toggle_charts", "Charts", "plots of throughput and latency per worker"),
    Key("l", "load_model", "Load model", "load another model on the selected worker (it keeps its images)", opens=True),
    Key("up,down", "", "", "move between workers (local or remote, from their status messages)", display="↑ ↓"),
)

RESULTS = (
    Key("c", "app.clear_results", "Clear", "clear the results shown (this console only)", everywhere=True,
        command="Clear results"),
    Key("up,down,pageup,pagedown", "", "", "move the cursor", display="↑ ↓ pgup pgdn"),
    Key("end", "follow", "Newest", "let go of the cursor and follow the newest result", footer=False),
    Key("enter", "", "", "the result under the cursor, up close (a click too)", display="enter"),
)

TOPICS = (
    Key("f", "app.filter", "Filter", "change the subscription filter", everywhere=True, command="Topic filter",
        opens=True),
    Key("p", "app.publish", "Publish", "publish a message (topic, payload, QoS, retain)", everywhere=True,
        command="Publish a message", opens=True),
    Key("x", "app.clear_retained", "Unretain", "clear the retained message of the selected topic",
        command="Clear retained message", footer=False),
    Key("s", "app.toggle_pause", "Pause", "pause or resume the inspector (topics hold still, results go on)",
        command="Pause or resume the inspector"),
    Key("up,down,enter", "", "", "pick a topic; enter goes to its messages, escape back", display="↑ ↓ enter"),
    Key("slash", "app.search_topics", "Search", "search the topic tree as you type (from any pane); enter keeps "
        "it, escape drops it", display="/", footer=False, priority=True, everywhere=True, command="Search topics"),
    Key("n", "next_match(1)", "Next", "next search match (no search: send one image)", footer=False),
    Key("N", "next_match(-1)", "Previous", "previous search match", footer=False),
    Key("right_square_bracket", "expand_all", "Expand", "expand every level of the tree", display="]",
        footer=False),
    Key("left_square_bracket", "collapse_all", "Collapse", "collapse the tree to its first level", display="[",
        footer=False),
    Key("b", "mark_base", "Base", "mark the selected message as the base of a diff", footer=False),
    Key("D", "diff", "Diff", "what changed from the base (or the message before)", footer=False, opens=True),
    Key("y", "copy", "Copy", "copy the payload to the clipboard (OSC 52)", footer=False),
    Key("w", "save", "Save", "save the payload to a new file here (0600)", footer=False),
    Key("R", "app.republish", "Re-publish", "edit and re-publish the selected message", footer=False, opens=True),
    Key("g", "plot", "Plot", "plot the topic's numbers or a JSON number field over time", footer=False, opens=True),
    Key("i", "inspector", "Inspector", "full-screen inspector: tree, history, payload (i: back)", everywhere=True,
        opens=True),
)

DRAW = (
    Key("mouse", "", "", "left button draws, right button erases", display="mouse"),
    Key("arrows", "", "", "move the cursor; space paints, x erases; shift+arrows draw a line",
        display="arrows space"),
    Key("enter,c,escape", "", "", "send · clear · close", display="enter c escape"),
)

SECTIONS: tuple[tuple[str, tuple[Key, ...]], ...] = (
    ("Everywhere", GLOBAL),
    ("Publisher (the input role)", PUBLISHER),
    ("Workers", WORKERS),
    ("Results", RESULTS),
    ("Topics", TOPICS),
    ("Draw a digit (d)", DRAW),
)

ARROWS = {"up": (0, -1), "down": (0, 1), "left": (-1, 0), "right": (1, 0)}


def bindings(keys: Iterable[Key]) -> list[Binding]:
    """The bindings of a pane (or of the main screen's own keys)."""
    return [k.binding() for k in keys if k.action]


def main_bindings() -> list[Binding]:
    """The main screen: the keys that work everywhere; a pane's `everywhere` keys bound too, hidden."""
    pane_keys = [k for _title, keys in SECTIONS[1:] for k in keys if k.everywhere and k.action]
    return bindings(GLOBAL) + [k.binding(show=False) for k in pane_keys]


def arrow_bindings(action: str, *, shift_action: str = "", swap: bool = False) -> list[Binding]:
    """up/down/left/right as `action` with (dx, dy) filled in (swap: (dy, dx), for row-first widgets);
    `shift_action` binds shift+arrows the same way."""
    out = []
    for key, (dx, dy) in ARROWS.items():
        a, b = (dy, dx) if swap else (dx, dy)
        out.append(Binding(key, action.format(a, b), key.capitalize(), show=False))
        if shift_action:
            out.append(Binding(f"shift+{key}", shift_action.format(a, b), f"Draw {key}", show=False))
    return out


def key_text(key: Key) -> str:
    """How the help screen shows a key: its display, or the key names as a user types them."""
    if key.display:
        return key.display
    names = {"question_mark": "?", "plus": "+", "minus": "-", "equals_sign": "="}
    return " / ".join(names.get(k, k) for k in key.keys.split(","))


def help_sections(sections: Sequence[tuple[str, Sequence[Key]]] = SECTIONS) -> list[tuple[str, list[tuple[str, str]]]]:
    return [(title, [(key_text(k), k.help) for k in keys]) for title, keys in sections]


def commands() -> list[tuple[str, str, Key]]:
    """The palette's entries: (title, help with its key, the key)."""
    out = []
    for _title, keys in SECTIONS:
        for k in keys:
            if k.command:
                out.append((k.command, f"{key_text(k)}: {k.help}", k))
    return out
