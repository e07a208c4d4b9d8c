"""The footer of the main screen: Textual's Footer, not rebuilt while a dialog hides it.

Textual's Footer rebuilds all its key widgets whenever the screen's bindings may have changed, also when
its screen is hidden: a dialog opening over the main screen and closing again rebuilt it twice, with the
same keys. Each rebuild mounts and styles a dozen widgets (about 20 ms here, under a publisher at full
speed), and a key pressed meanwhile waits. This one skips rebuilds while a dialog is on top, and rebuilds
once the main screen is back only if the keys (key, description, enabled state) changed meanwhile.
"""

from __future__ import annotations

from typing import Any

from textual.widgets import Footer


class MainFooter(Footer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._shown: tuple[Any, ...] | None = None  # the keys of the last rebuild
        self._skipped = False  # a rebuild was skipped while hidden

    def watch_show_command_palette(self, _old: bool, _new: bool) -> None:
        """Textual's Footer shows the palette's key as it was when it last rebuilt: rebuild once it changes (the
        main screen hides it under 100 columns; at 40 its key and a stray letter were left at the end)."""
        self.call_after_refresh(self.recompose)

    def _keys_shown(self) -> tuple[Any, ...]:
        return tuple(
            (key, binding.key_display, binding.description, binding.action, binding.show, enabled, tooltip)
            for key, (_node, binding, enabled, tooltip) in self.screen.active_bindings.items()
        ) + (self.show_command_palette,)

    async def recompose(self) -> None:
        if not self.is_attached:
            return
        if self.screen is not self.app.screen:  # behind a dialog: nobody sees it
            self._skipped = True
            return
        shown = self._keys_shown()
        skipped, self._skipped = self._skipped, False
        if skipped and shown == self._shown:
            return
        self._shown = shown
        await super().recompose()
