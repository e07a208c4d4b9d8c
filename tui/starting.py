"""The console while its roles start: chrome at once, the pipeline when it is up.

The local roles (and the embedded broker) take 10-30 s to come up: their child process imports torch and
loads the model before it says ready, and only then is the broker's address known. The console does not
wait for that with a blank terminal: it opens on a `StartingModel` (an observer of no broker, whose
snapshots say "starting" and whose steering answers that the roles are not up yet), runs the blocking
start in a thread, and swaps the real observer in when it returns (`Startup`, posted as `StartDone`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from textual.message import Message

from engine.console.contract import ConsoleModel
from engine.console.observer import Connection, Observer, Snapshot
from engine.errors import MnistError
from engine.mqtt.address import BrokerAddress
from tui.chrome.header_bar import BrokerInfo

LOADING = "loading the model and starting the roles…"
CONNECTING = "connecting to the broker…"


class Startup(NamedTuple):
    """What the blocking start hands the console: its model of the broker and what the header says."""

    observer: ConsoleModel
    broker: BrokerInfo
    notes: list[str]
    owns_roles: bool  # the console started the roles: q stops them


class StartDone(Message):
    """Posted from the start thread (post_message is thread-safe and never waits: the app may have ended)."""

    def __init__(self, started: Startup | None, error: BaseException | None = None) -> None:
        super().__init__()
        self.started = started
        self.error = error


class NotStarted(MnistError):
    """A key that needs the roles (or the broker) was pressed before they were up."""


class StartingModel(Observer):
    """An observer that never connects: its snapshots are empty and say "starting: <what>", and every way
    to steer answers NotStarted (one line, shown as a notification)."""

    def __init__(self, what: str = LOADING) -> None:
        super().__init__(BrokerAddress(), client_id="console-starting")
        self.what = what

    @property
    def message(self) -> str:
        return f"starting: {self.what} (a moment: try again once the header says connected)"

    def snapshot(self, *args: Any, **kwargs: Any) -> Snapshot:
        snap = super().snapshot(*args, **kwargs)
        return snap._replace(connection=Connection("starting", snap.time, None, self.what, 0, ""))

    def _not_yet(self) -> NotStarted:
        return NotStarted(self.message)

    def send_control(self, role: str, cmd: str, client_id: str | None = None, **args: Any) -> str:
        raise self._not_yet()

    def publish(self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False, *,
                tag: str | None = None, action: str = "publish", forget_limit: bool = False) -> None:
        raise self._not_yet()

    def clear_retained(self, topic: str) -> None:
        raise self._not_yet()

    def set_filter(self, filter_text: str) -> None:
        raise self._not_yet()

    def pause(self) -> None:
        raise self._not_yet()

    def resume(self) -> None:
        raise self._not_yet()
