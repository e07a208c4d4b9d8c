"""How the inspector looks (pytest-textual-snapshot), 120x40 and 80x24: the full-screen inspector, a diff
and a plot, over the recorded messages of test_snapshots.py plus a few sensor readings with MQTT 5 properties.

Update with `pytest tests/test_inspector_snapshots.py --snapshot-update` after a deliberate change, and look.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from test_snapshots import BROKER, NOW, FrozenObserver, make_observer

from engine.console.message_props import MessageProps
from tui.app import MnistApp
from tui.topics.topic_tree import TopicTree

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


async def open_on(pilot: Any, topic: str, *keys: str) -> None:
    app = pilot.app
    await pilot.pause(0.2)
    tree = app.screen.query_one(TopicTree)
    tree.focus()
    tree.select_path(topic)
    await pilot.pause(0.2)
    app.refresh_from_observer(full=True)
    await pilot.pause(0.2)
    await pilot.press(*keys)
    await pilot.pause(0.3)
    app.refresh_from_observer(full=True)
    await pilot.pause(0.3)


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_inspector_screen(snap_compare: Any, size: tuple[int, int]) -> None:
    app = MnistApp(observer(), BROKER)

    async def run_before(pilot: Any) -> None:
        await open_on(pilot, "sensors/lab/env", "z")

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_diff_screen(snap_compare: Any, size: tuple[int, int]) -> None:
    app = MnistApp(observer(), BROKER)

    async def run_before(pilot: Any) -> None:
        await open_on(pilot, "sensors/lab/env", "D")

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_plot_screen(snap_compare: Any, size: tuple[int, int]) -> None:
    app = MnistApp(observer(), BROKER)

    async def run_before(pilot: Any) -> None:
        await open_on(pilot, "sensors/lab/env", "g")

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_search_in_the_tree(snap_compare: Any, size: tuple[int, int]) -> None:
    app = MnistApp(observer(), BROKER)

    async def run_before(pilot: Any) -> None:
        await open_on(pilot, "sensors/lab/env", "slash", "l", "a", "b")

    assert snap_compare(app, terminal_size=size, run_before=run_before)
