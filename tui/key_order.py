"""Keys act one at a time, in the order they were typed, even when they come in one burst.

How Textual routes a key: the app takes it from its queue and runs its priority bindings there and then;
any other key it posts to the focused widget, whose own handlers run in that widget's queue (a field puts a
character in), and the key then bubbles up, widget by widget, to the app, where the bindings of the focused
widget and its ancestors run (a field's backspace and ctrl+u, the screen's tab, a pane's x). The keys of a
burst (a paste, `tmux send-keys`, a script, a fast typist) all wait in the app's queue, and the app routed
the next one as soon as it had posted the one before: a key that opens a screen (a priority binding) ran
before the plain key typed ahead of it had come back up (`z m` zoomed nothing), a field took the characters
typed after a backspace or ctrl+u before that binding ran (`f ctrl+u x y` left the field empty), and keys
typed after shift+tab went into the field it was leaving.

`KeyOrder` routes each key only once the one before it is done. It learns that from a marker (`KeyPassed`)
posted to the same widget right behind the key: each widget handles its messages in order and bubbles them
along the same path, so the marker reaches the app after the key has (or after the widget that kept the key,
as a field keeps a character). A key handled as the app took it gets its marker from the app's own queue,
behind the work that key left there (a screen pushed is mounted before the next key is routed into it).
While keys wait, a second marker then goes up from the widget focused now, behind the messages the key's
bindings posted there: enter in a field posts Submitted, and the dialog closes on it, before the keys
typed after the enter are routed (they went into the closing dialog's field).

A key typed alone is routed at once, as Textual routes it. A marker could be lost only where Textual drops a
message: in a widget removed (or one whose parent was) before the marker went through; a held key then goes
once a widget on the path is gone, or after MAX_WAIT_S at most. No private Textual API: the app's
`on_event` (where Textual routes a key), `Key.is_forwarded`, `post_message` and the order of each queue.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from textual import events, on
from textual.app import App
from textual.dom import DOMNode
from textual.message import Message
from textual.timer import Timer

ReturnType = TypeVar("ReturnType")

WATCH_S = 0.1  # while keys are held: how often to look for a marker lost with its widget
MAX_WAIT_S = 2.0  # a held key waits no longer for the key before it (a marker lost some way not foreseen)


@dataclass
class KeyPassed(Message):
    """The key routed as number `seq` is done: it, or its marker, came back up to the app."""

    seq: int


class KeyOrder:
    """The app's keys, held until the one before is done. The app hands each key it takes from the terminal
    to `take` (from its `on_event`) and each `KeyPassed` that reaches it to `passed`; `route` is Textual's
    own routing of a key (the app's `on_event`)."""

    def __init__(self, app: App[Any], route: Callable[[events.Key], Awaitable[None]]) -> None:
        self.app = app
        self.route = route
        self.held: deque[events.Key] = deque()
        self._seq = 0
        self._pending: int | None = None  # the marker awaited
        self._settling = False  # it is the second one, behind what the key's bindings posted
        self._path: tuple[DOMNode, ...] = ()  # the widgets it goes through
        self._since = 0.0  # when it was posted
        self._watch: Timer | None = None

    async def take(self, key: events.Key) -> None:
        if self._pending is not None and self._lost():
            self._pending = None
        if self._pending is not None:
            self.held.append(key)
            if self._watch is None:
                self._watch = self.app.set_interval(WATCH_S, self._check, name="held keys")
            return
        await self._send(key)

    async def passed(self, seq: int) -> None:
        if seq != self._pending:
            return  # a marker given up on (_lost) that came after all
        self._pending = None
        if self.held and not self._settling:
            self._follow(self.app.focused or self.app.screen, settling=True)
            return
        if self.held:
            await self._send(self.held.popleft())
        if not self.held and self._watch is not None:
            self._watch.stop()
            self._watch = None

    async def _send(self, key: events.Key) -> None:
        target = self.app.focused or self.app.screen  # where Textual forwards a key no priority binding takes
        await self.route(key)
        # A key handled as the app took it: done once what it left in the app's queue is.
        self._follow(target if key.is_forwarded else self.app, settling=False)

    def _follow(self, target: DOMNode, *, settling: bool) -> None:
        """Post a marker to `target`, to come back up to the app behind what `target` has queued."""
        self._seq += 1
        marker = KeyPassed(self._seq)
        self._pending, self._settling, self._since = self._seq, settling, time.monotonic()
        if target is not self.app and target.post_message(marker):
            self._path = tuple(node for node in target.ancestors_with_self if node is not self.app)
        else:
            self._path = ()
            self.app.post_message(marker)

    def _lost(self) -> bool:
        return (any(not node.is_attached for node in self._path)
                or time.monotonic() - self._since > MAX_WAIT_S)

    def _check(self) -> None:
        # In the timer's task: the app itself lets the next key go, as if the marker had come (and with no second
        # marker: it would go the way of the first).
        if self._pending is not None and self._lost():
            self._settling = True
            self.app.post_message(KeyPassed(self._pending))


class KeyOrderedApp(App[ReturnType]):
    """An App whose keys act one at a time, in the order typed: each key from the terminal goes through
    `key_order`, which routes it with App's own `on_event`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_order = KeyOrder(self, super().on_event)

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key) and not event.is_forwarded:  # from the terminal, not yet routed
            await self.key_order.take(event)
        else:
            await super().on_event(event)

    @on(KeyPassed)
    async def _key_passed(self, event: KeyPassed) -> None:
        await self.key_order.passed(event.seq)
