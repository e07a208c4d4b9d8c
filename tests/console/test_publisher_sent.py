"""The Publisher pane's `sent` against the Results pane's count: the status says `sent` once a second, the
results come as they come, and `sent 665` beside `689 results` read as duplicates or a bug. The pane adds the
images it has results of past the status's `last` (tui/publisher/publisher_pane.py: sent_since_status)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from helpers import pilot_until as until
from textual.pilot import Pilot

from engine.console.observer import Observer
from engine.console.snapshot import ResultRow, RoleStatus
from engine.mqtt.broker import EmbeddedBroker
from engine.roles.pipeline import LocalPipeline
from engine.settings import Settings
from tui.app import MnistApp
from tui.chrome.header_bar import BrokerInfo
from tui.publisher.publisher_pane import PublisherPane, publisher_markup, sent_since_status
from tui.results.results_pane import ResultsPane


def status(sent: int, last: str | None, received: float = 100.0, role_id: str = "input-a", **more: Any) -> RoleStatus:
    data: dict[str, Any] = {"state": "running", "sent": sent, **more}
    data["last"] = None if last is None else {"id": last, "label": 3, "png": ""}
    return RoleStatus("input", role_id, "running", data, received, ())


def row(image_id: str | None, t: float) -> ResultRow:
    return ResultRow(0, t, image_id, 3, 3, 0.9, 5.0, "infer-1", None, None, None, False)


def test_results_past_the_status_advance_sent() -> None:
    role = status(665, "input-a-700")  # a reset counts from 0 again: the numbers go on
    rows = [row("input-a-690", 99.5), row("input-a-701", 99.8), row("input-a-724", 100.4), row("input-a-710", 100.5)]
    assert sent_since_status(role, rows) == 24  # the newest number, not the newest to come
    assert "sent    [b]689[/] [dim](11 left)[/]" in publisher_markup(role._replace(
        data={**role.data, "remaining": 35}), 100.5, False, 24)


def test_only_this_publishers_results_of_late_enough_count() -> None:
    role = status(10, "input-a-10")
    assert sent_since_status(role, [row("input-a-50", 98.9)]) == 0  # before the status's window: counted by it
    others = [row("input-a-2-30", 100.2), row("input-b-30", 100.2), row("console-1-draw-30", 100.2), row(None, 100.2),
              row("input-a-３0", 100.2), row("input-a-", 100.2), row("input-a-5", 100.2)]
    assert sent_since_status(role, others) == 0
    assert sent_since_status(role, [row("input-a-12", 99.2)]) == 2  # a status may come after such a result


def test_a_forged_result_id_counts_only_as_far_as_the_publishers_rate_could_go() -> None:
    """Any client may publish a result: one with the id `input-a-999999999` showed `sent 999,999,964`."""
    role = status(10, "input-a-10", rate_actual=20.0)
    assert sent_since_status(role, [row("input-a-999999999", 100.0)]) == 64 + 20  # a burst, and 1 s at 20/s
    assert sent_since_status(status(10, "input-a-10"), [row("input-a-999999999", 100.5)]) == 64  # no rate said


def test_a_status_that_does_not_say_where_it_counts_to_is_shown_as_it_is() -> None:
    assert sent_since_status(status(0, None), [row("input-a-3", 100.1)]) == 3  # nothing sent before: from 1
    assert sent_since_status(status(5, None), [row("input-a-9", 100.1)]) == 0  # another publisher's status
    assert sent_since_status(status(5, "other-5"), [row("input-a-9", 100.1)]) == 0
    assert "sent    [b]5[/]" in publisher_markup(status(5, None), 100.5, False, 0)


# ---- against the real console and pipeline ----------------------------------------------------------------


@pytest.fixture
def pipeline(mosquitto_broker: EmbeddedBroker) -> Iterator[LocalPipeline]:
    with LocalPipeline(Settings(rate=30), address=mosquitto_broker.address) as p:
        yield p


def shown_sent(app: MnistApp) -> int:
    text = str(app.screen.query_one(PublisherPane)._markup)
    found = re.search(r"sent    \[b\]([\d,]+)\[/\]", text)
    assert found, text
    return int(found.group(1).replace(",", ""))


def shown_results(app: MnistApp) -> int:
    found = re.match(r"([\d,]+) results?", str(app.screen.query_one(ResultsPane).border_subtitle))
    return int(found.group(1).replace(",", "")) if found else 0


@contextlib.asynccontextmanager
async def console_on(pipeline: LocalPipeline) -> AsyncIterator[tuple[MnistApp, Pilot[Any], Any]]:
    """The console on the pipeline's broker, once it has seen the pipeline's publisher; and that publisher."""
    observer = Observer(pipeline.address)
    observer.start()
    app = MnistApp(observer, BrokerInfo(pipeline.address.url, "mosquitto", "mosquitto (test)"))
    real = pipeline.role("input")
    assert real is not None
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.snap is not None and app.snap.roles_of("input") and not app.starting,
                        "no publisher seen")
            yield app, pilot, real
    finally:
        observer.stop()


async def test_sent_never_trails_the_results_count(pipeline: LocalPipeline) -> None:
    """Every image has one result here and the console saw them all: at no refresh may the Publisher pane
    say fewer sent than the Results pane has results, nor more than the publisher has sent."""
    async with console_on(pipeline) as (app, pilot, real):

        async def watch(pilot: Pilot[Any], seconds: float) -> list[tuple[int, int]]:
            seen = []
            for _ in range(int(seconds / 0.05)):
                await pilot.pause(0.05)
                sent, results = shown_sent(app), shown_results(app)
                assert sent <= real.sent, (sent, real.sent)
                seen.append((sent, results))
            return seen

        await pilot.press("space")
        await until(pilot, lambda: shown_results(app) >= 5, "no results")
        seen = await watch(pilot, 3.0)
        assert [s for s in seen if s[0] < s[1]] == [], seen
        assert len({s for s, _ in seen}) > 6, seen  # it went up between statuses, not once a second
        await pilot.press("space")
        await until(pilot, lambda: real.state == "stopped", "space did not stop it")
        await until(pilot, lambda: shown_sent(app) == real.sent, lambda: f"{shown_sent(app)} != {real.sent}")


def shown_drawn(app: MnistApp) -> int:
    found = re.search(r"· ([\d,]+) drawn", str(app.screen.query_one(ResultsPane).border_subtitle))
    return int(found.group(1).replace(",", "")) if found else 0


async def test_a_drawn_digit_is_a_result_no_publisher_sent(pipeline: LocalPipeline) -> None:
    """A digit drawn with `d` has a result, and no publisher sent it: the Publisher pane said `sent 198` beside
    `199 results`, a result of an image never sent. The Results pane says how many of its results were drawn."""
    from tui.draw.draw_dialog import DrawDialog

    async with console_on(pipeline) as (app, pilot, real):
        await pilot.press("space")
        await until(pilot, lambda: shown_results(app) >= 3, "no results")
        await pilot.press("space")
        await until(pilot, lambda: real.state == "stopped", "space did not stop it")
        await until(pilot, lambda: shown_sent(app) == real.sent, lambda: f"{shown_sent(app)} != {real.sent}")
        await pilot.press("d")
        dialog = await until(pilot, lambda: isinstance(app.screen, DrawDialog) and app.screen, "no draw dialog")
        await pilot.press(*["up"] * 6, "space", *["shift+down"] * 13, "enter")  # a 1, sent
        await until(pilot, lambda: dialog.result is not None, "no result for the drawing")
        await pilot.press("escape")
        await until(pilot, lambda: shown_drawn(app) == 1,
                    lambda: f"Results: {app.screen.query_one(ResultsPane).border_subtitle}")
        assert shown_sent(app) == real.sent
        assert shown_results(app) - shown_drawn(app) <= shown_sent(app), (shown_results(app), shown_sent(app))
        await pilot.press("c")  # cleared with the results it counts
        await until(pilot, lambda: shown_drawn(app) == 0 and shown_results(app) == 0, "not cleared")
