"""How the inspector looks (pytest-textual-snapshot), 120x40 and 80x24: the full-screen inspector, a diff
and a plot, over the recorded messages of test_snapshots.py plus a few sensor readings with MQTT 5 properties.

Update with `pytest tests/console/test_inspector_snapshots.py --snapshot-update` after a deliberate change, and look.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from helpers import pilot_until
from test_snapshots import BROKER, NOW, FrozenObserver, make_observer

from engine.console.message_props import MessageProps
from tui.app import MnistApp
from tui.topics.diff_screen import DiffScreen
from tui.topics.inspector_screen import InspectorScreen
from tui.topics.payload_view import PayloadView
from tui.topics.plot_screen import PlotScreen
from tui.topics.topic_tree import TopicTree
from tui.topics.topics_pane import TopicSearch, TopicsPane

SIZES = [(120, 40), (80, 24)]
IDS = ["120x40", "80x24"]


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


def observer() -> FrozenObserver:
    obs = make_observer()
    ticks = iter(range(100))
    obs._clock = lambda: NOW - 60 + 10 * next(ticks)  # readings ten seconds apart, then the clock stands still
    props = MessageProps(content_type="application/json", response_topic="lab/replies", correlation_data="req-7",
                         message_expiry=300, user_properties=(("site", "lab"),))
    for i, (t, h) in enumerate([(20.5, 41), (20.9, 40), (21.4, 38), (21.2, 39), (22.0, 37)]):
        obs.ingest("sensors/lab/env", json.dumps({"temp": t, "hum": h, "n": i}).encode(), qos=1,
                   props=props if i == 4 else None)
    obs._clock = lambda: NOW
    return obs


async def open_on(pilot: Any, topic: str, *keys: str, ready: Callable[[Any], bool] = lambda _s: True) -> None:
    """Select `topic` in the Topics pane, wait for its messages, press `keys`, wait for `ready(screen)`."""
    app = pilot.app
    await pilot.pause(0.2)
    tree = app.screen.query_one(TopicTree)
    tree.focus()
    tree.select_path(topic)
    pane = app.screen.query_one(TopicsPane)
    await pilot_until(pilot, lambda: len(pane.messages) == 5 and pane.messages[0].topic == topic,
                      lambda: f"messages of {tree.selected_path}")
    await pilot.press(*keys)
    await pilot_until(pilot, lambda: ready(app.screen), lambda: f"not ready: {app.screen}")
    await pilot.wait_for_scheduled_animations()
    await pilot.pause(0.5)


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_inspector_screen(snap_compare: Any, size: tuple[int, int]) -> None:
    app = MnistApp(observer(), BROKER)

    async def run_before(pilot: Any) -> None:
        def ready(screen: Any) -> bool:
            if not isinstance(screen, InspectorScreen):
                return False
            pane = screen.query_one(TopicsPane)
            return len(pane.messages) == 5 and pane.messages[0].topic == "sensors/lab/env" \
                and screen.query_one(PayloadView).kind == "json"

        await open_on(pilot, "sensors/lab/env", "i", ready=ready)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_diff_screen(snap_compare: Any, size: tuple[int, int]) -> None:
    app = MnistApp(observer(), BROKER)

    async def run_before(pilot: Any) -> None:
        await open_on(pilot, "sensors/lab/env", "D", ready=lambda s: isinstance(s, DiffScreen))

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_plot_screen(snap_compare: Any, size: tuple[int, int]) -> None:
    app = MnistApp(observer(), BROKER)

    async def run_before(pilot: Any) -> None:
        await open_on(pilot, "sensors/lab/env", "g", ready=lambda s: isinstance(s, PlotScreen) and s.points == 5)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_search_in_the_tree(snap_compare: Any, size: tuple[int, int]) -> None:
    app = MnistApp(observer(), BROKER)

    async def run_before(pilot: Any) -> None:
        tree: list[TopicTree] = []

        def ready(screen: Any) -> bool:
            tree[:] = [screen.query_one(TopicTree)]
            return tree[0].query == "lab" and tree[0].selected_path == "mnist/status/infer/infer-lab-1"

        await pilot.pause(0.2)
        pilot.app.screen.query_one(TopicSearch).cursor_blink = False  # a blinking cursor is a coin toss
        await open_on(pilot, "sensors/lab/env", "slash", "l", "a", "b", ready=ready)

    assert snap_compare(app, terminal_size=size, run_before=run_before)
