"""The console contract: what the Textual console may use of its model of the broker.

Two implementations keep it: `Observer` (engine/console/observer.py, in this process) and `ObserverProcess`
(engine/console/observer_process.py, the same observer in a child process, so a flood of messages never
competes with the screen for the GIL). `tui/app.py` is typed against this Protocol, mypy checks that both
implement it (below), and tests/integration/test_observer.py runs its broker tests against both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from engine.console.snapshot import Snapshot
from engine.mqtt.address import BrokerAddress
from engine.topics import Topics


class ConsoleModel(Protocol):
    """A thread-safe model of one broker: snapshots to render, and the console's only way to steer."""

    @property
    def address(self) -> BrokerAddress: ...
    @property
    def topics(self) -> Topics: ...
    @property
    def client_id(self) -> str: ...
    @property
    def max_images(self) -> int: ...  # 0: no images kept (no detail view of a result's digit)
    @property
    def filter(self) -> str: ...  # the inspector's subscription filter
    @property
    def paused(self) -> bool: ...
    @property
    def protocol(self) -> int: ...  # 5 or 4 (MQTT 3.1.1)

    def start(self) -> None: ...
    def stop(self) -> None: ...

    def snapshot(self, topic: str | None = None, *, results: int | None = None, topics: bool = True,
                 events_after: int = 0, results_after: int | None = None) -> Snapshot: ...
    def image(self, image_id: str) -> bytes | None: ...
    def images(self, ids: list[str]) -> dict[str, bytes]: ...

    # steering: ConfigError for bad input, BrokerError when not connected; the broker's verdict comes later
    def send_control(self, role: str, cmd: str, client_id: str | None = None, **args: Any) -> str: ...
    def publish(self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False, *,
                tag: str | None = None, action: str = "publish", forget_limit: bool = False) -> None: ...
    def clear_retained(self, topic: str) -> None: ...
    def set_filter(self, filter_text: str) -> None: ...
    # pause/resume the inspector: in effect when the call returns (nothing that comes after shows / is missed)
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def clear_results(self) -> None: ...


if TYPE_CHECKING:  # mypy: both implementations keep the contract
    from engine.console.observer import Observer
    from engine.console.observer_process import ObserverProcess

    def _both(a: Observer, b: ObserverProcess) -> tuple[ConsoleModel, ConsoleModel]:
        return a, b
