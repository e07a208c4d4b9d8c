"""tui/key_order.py on a small Textual app of its own: a marker that never comes back holds the keys behind
its key only for a while. The console's own bursts (keys before and after a dialog key, editing keys in a
field, focus keys) are tested on the console, in test_tui_extras.py and test_inspector.py."""

from __future__ import annotations

from helpers import burst, pilot_until
from textual import events, on
from textual.app import ComposeResult
from textual.widgets import Static

from tui.key_order import KeyOrderedApp, KeyPassed


class Swallowing(Static, can_focus=True):
    """Records the keys it gets, and keeps every marker: as a widget removed with a marker in its queue would."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[str] = []

    def on_key(self, event: events.Key) -> None:
        self.keys.append(event.key)

    @on(KeyPassed)
    def _keep(self, event: KeyPassed) -> None:
        event.stop()


class KeysApp(KeyOrderedApp[None]):
    """Keys routed as the console routes them (MnistApp is a KeyOrderedApp too)."""

    def compose(self) -> ComposeResult:
        yield Swallowing()

    def on_mount(self) -> None:
        self.query_one(Swallowing).focus()


async def test_keys_behind_a_marker_that_never_comes_back_go_all_the_same() -> None:
    app = KeysApp()
    async with app.run_test() as pilot:
        widget = app.query_one(Swallowing)
        await pilot_until(pilot, lambda: app.focused is widget, "not focused")
        await burst(app, "a", "b", "c")
        await pilot_until(pilot, lambda: widget.keys == ["a", "b", "c"], lambda: f"the widget got {widget.keys}")
        assert not app.key_order.held
