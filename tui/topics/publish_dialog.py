"""The publish dialog: topic, payload (text, or @file for a file's bytes), QoS and retain."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, RadioButton, RadioSet, Static

from engine.bounded_read import read_regular
from engine.console.observer import Connection, Message, validate_topic
from engine.console.observer_common import HeldBack, check_publish
from engine.errors import ConfigError
from tui.toasts import clear_passing
from tui.widgets import formatting as fmt

MAX_FILE = 16 * 1024 * 1024


class PublishRequest(NamedTuple):
    topic: str
    payload: bytes
    qos: int
    retain: bool
    # sent although the broker closed the connection on a message as large (MQTT 3.1.1): what it learned is
    # forgotten (engine/console/oversize.py)
    forget_limit: bool = False


def parse_payload(text: str) -> bytes:
    """`@path` publishes a file's bytes (like `mosquitto_pub -f`); `@@...` is a literal '@...'; else UTF-8."""
    if text.startswith("@@"):
        return text[1:].encode("utf-8")
    if text.startswith("@"):
        path = Path(text[1:]).expanduser()
        try:
            return read_regular(path, MAX_FILE)  # a regular file only: not /dev/zero, not a pipe with no writer
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    return text.encode("utf-8")


class PublishDialog(ModalScreen[PublishRequest | None]):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        # priority, as the key arrives: `p topic tab payload enter` typed in one burst (a paste, tmux send-keys)
        # put the payload into the topic field, the focus moving only once the keys behind tab had gone there
        Binding("tab", "app.focus_next", show=False, priority=True),
        Binding("shift+tab", "app.focus_previous", show=False, priority=True),
    ]
    # Under 32 rows the hint and some spacing go (app.tcss): at 24 rows the buttons fell below the dialog.
    VERTICAL_BREAKPOINTS = [(0, "-short"), (32, "-tall")]

    def __init__(self, topic: str = "", payload: str = "", *, qos: int = 1, retain: bool = False,
                 raw: bytes | None = None, chosen: bool = True) -> None:
        """`raw`: bytes that cannot be typed (a received binary payload); they are sent while the payload
        field still holds the `payload` shown for them. `chosen`: the topic was picked on purpose (`p` in the
        Topics pane, `R` on a message), so the cursor starts in the payload field; otherwise it starts in the
        topic field, whose text (the Topics pane's selection, a suggestion) is selected: typing replaces it."""
        super().__init__()
        self.initial_topic = topic
        self.chosen = chosen
        self.initial_payload = payload
        self.initial_qos = qos if qos in (0, 1, 2) else 1
        self.initial_retain = retain
        self.raw = raw
        self._held: tuple[str, bytes, int] | None = None  # held back (HeldBack): the same again is sent anyway
        # the connection now (the app's): the largest packet the broker takes (MQTT 5 says it at each connection),
        # or one it closed the connection on (MQTT 3.1.1)
        self.connection: Callable[[], Connection | None] = lambda: None

    @classmethod
    def from_message(cls, message: Message) -> PublishDialog:
        """Prefilled with a received message: its topic, payload, QoS and retain flag."""
        try:
            text = message.payload.decode("utf-8")
        except UnicodeDecodeError:
            text = ""
        if text and all(c.isprintable() for c in text):
            return cls(message.topic, text, qos=message.qos, retain=message.retain)
        if not message.payload:
            return cls(message.topic, "", qos=message.qos, retain=message.retain)
        shown = f"(the {fmt.size(len(message.payload))} received, unchanged)"
        return cls(message.topic, shown, qos=message.qos, retain=message.retain, raw=message.payload)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label("Publish a message", classes="dialog-title")
            yield Input(self.initial_topic, placeholder="topic, e.g. test/hello", id="publish-topic")
            yield Input(self.initial_payload, placeholder="payload text, or @path/to/file.png", id="publish-payload")
            with Horizontal(id="publish-options"):
                yield Label("QoS", classes="option-label")
                with RadioSet(id="publish-qos"):
                    for q in (0, 1, 2):
                        yield RadioButton(str(q), value=q == self.initial_qos, id=f"publish-qos{q}")
            # on its own line: beside QoS it fell off the dialog
            yield Checkbox("retain", self.initial_retain, id="publish-retain")
            yield Static("[dim]@file sends a file's bytes; an empty retained message clears a topic; "
                         "QoS 1 and 2 let an MQTT 5 broker say whether it took the message[/]",
                         classes="dialog-hint")
            yield Static("", id="publish-error", classes="dialog-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Publish", variant="primary", id="publish")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        clear_passing(self.app)  # toasts would cover its input and buttons; it shows its own errors inline
        # now, not after the keys typed right after `p` or `R` (see keys.Key.binding); an Input selects its text
        # as it takes the focus, so a topic typed into a prefilled field replaces it
        target = "#publish-payload" if self.initial_topic and self.chosen else "#publish-topic"
        self.set_focus(self.query_one(target, Input))

    def _qos(self) -> int:
        pressed = self.query_one(RadioSet).pressed_index
        return pressed if pressed in (0, 1, 2) else 1

    @on(Input.Submitted)
    @on(Button.Pressed, "#publish")
    def submit(self) -> None:
        topic = self.query_one("#publish-topic", Input).value
        error = self.query_one("#publish-error", Static)
        anyway = False
        try:
            validate_topic(topic)
            text = self.query_one("#publish-payload", Input).value
            unchanged = self.raw is not None and text == self.initial_payload
            payload = self.raw if unchanged and self.raw is not None else parse_payload(text)
            try:
                check_publish(topic, payload, self._qos(), self.connection())  # what the broker would refuse
            except HeldBack as exc:  # a guess (oversize.py): the same message again goes out all the same
                anyway = self._held == (topic, payload, self._qos())
                if not anyway:
                    self._held = (topic, payload, self._qos())
                    error.update(f"{exc}; publish it again to send it anyway")
                    return
        except ConfigError as exc:
            error.update(str(exc))
            return
        retain = self.query_one("#publish-retain", Checkbox).value
        self.dismiss(PublishRequest(topic, payload, self._qos(), retain, forget_limit=anyway))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
