"""The console's keys and small fixes (issues 13 and 14): one key table behind the bindings, the help screen
and the palette; z on every pane; the rate ladder and typed rates; texts that say what is true. The app runs
under Pilot on a recorded observer (tests/console/test_snapshots.py's, no broker); the pictures are in
test_snapshots.py, the keys that need a live pipeline (typed rate, quit) in test_tui_extras.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from helpers import pilot_until as until
from rich.console import Console
from rich.style import Style
from test_snapshots import BROKER, NOW, make_observer
from textual.containers import VerticalScroll
from textual.widgets._footer import FooterKey

from engine.cli import _summary
from engine.console.observer import ResultRow, RoleStatus
from engine.errors import ConfigError
from tui import keys
from tui.app import PANES, RATE_STEPS, MainScreen, MnistApp, next_rate
from tui.chrome.help_screen import HelpScreen, KeysTable
from tui.draw.draw_dialog import DrawDialog
from tui.publisher.rate_dialog import parse_rate
from tui.results.prob_bars import ProbBars
from tui.widgets import formatting as fmt
from tui.widgets.palette import Palette
from tui.workers.worker_charts import nice_ticks
from tui.workers.workers_pane import worker_cells

README = Path(__file__).resolve().parents[2] / "README.md"


def bound_keys() -> set[str]:
    return {k.keys for _title, section in keys.SECTIONS for k in section if k.action}


def test_every_binding_comes_from_the_key_table() -> None:
    table = bound_keys()
    for binding in MainScreen.BINDINGS:
        assert binding.key in table, f"{binding.key} is bound on the main screen but not in tui/keys.py"
    shown = {b.key for b in MainScreen.BINDINGS if b.show}
    assert shown == {k.keys for k in keys.GLOBAL if k.action and k.footer}


def test_help_lists_every_key_once_with_its_own_words() -> None:
    sections = keys.help_sections()
    lines = [(key, text) for _title, rows in sections for key, text in rows]
    assert len({text for _key, text in lines}) == len(lines), "a help line repeats another"
    for key in bound_keys():
        assert any(k.keys == key for _t, sec in keys.SECTIONS for k in sec), key
    assert all(text[0].islower() or not text[0].isalpha() for _key, text in lines), "help lines start lower case"


def test_readme_key_table_lists_every_key() -> None:
    text = README.read_text()
    table = text[text.index("## Keys"):text.index("## Headless roles")]
    listed = set(re.findall(r"`([^`]+)`", table))
    for _title, section in keys.SECTIONS[:-1]:  # the draw dialog's keys are told on its own screen
        for k in section:
            if k.action and k.keys not in ("up,down", "up,down,pageup,pagedown", "up,down,enter"):
                first = keys.key_text(k).split(" / ")[0]
                assert first in listed, f"README's key table lacks `{first}` ({k.help})"


def test_rate_ladder_reaches_max_in_ten_presses() -> None:
    rate, presses = 1.0, 0
    while rate != 0:
        rate = next_rate(rate, +1)
        presses += 1
    assert presses <= 10
    assert next_rate(0, -1) == RATE_STEPS[-1] and next_rate(1, -1) == 1


@pytest.mark.parametrize(("text", "rate"), [("max", 0), ("MAX", 0), ("0", 0), ("0.0", 0), ("0/s", 0), ("250", 250),
                                            (" 0.5 ", 0.5), ("1,500", 1500), ("20/s", 20),
                                            ("12,345.5", 12345.5), ("-0", 0), (".0", 0), ("0e5", 0)])
def test_typed_rates(text: str, rate: float) -> None:
    assert parse_rate(text) == rate


# 1e-400 is 0.0 to a float: it was taken as max, the opposite of what it asks
@pytest.mark.parametrize("text", ["", "fast", "-3", "nan", "inf", "1e9", "5e-324", "0.001", "1,5", "1,50", "0,500",
                                  "1e-400", "-1e-400"])
def test_bad_typed_rates_say_why_in_one_line(text: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_rate(text)
    assert "\n" not in str(exc.value) and ("rate" in str(exc.value))


@pytest.mark.parametrize("top", [0.3, 1, 7.3, 11.0, 99, 1234.5, 48_000])
def test_chart_ticks_are_even(top: float) -> None:
    ticks = nice_ticks(top)
    steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:], strict=False)}
    assert len(steps) == 1 and ticks[0] == 0 and ticks[-1] >= top and len(ticks) <= 6


def test_plural() -> None:
    assert [fmt.plural(n, "topic") for n in (0, 1, 2, 1234)] == ["0 topics", "1 topic", "2 topics", "1,234 topics"]


def test_headless_worker_log_has_no_none() -> None:
    idle = {"role": "infer", "id": "w", "processed": 0, "errors": 0, "rate": 0.0, "queue": 0, "dropped": 0,
            "batch_mean": None, "lat_ms": {"p50": None, "p90": None, "p99": None}}
    assert "None" not in _summary(idle)
    busy = idle | {"batch_mean": 3.2, "lat_ms": {"p50": 1.5, "p99": 4.0}}
    assert "batch 3.2" in _summary(busy) and "expired" not in _summary(busy)
    skipping = busy | {"expired": 1234}  # --max-wait skipping images: the summary says so
    assert "expired 1234" in _summary(skipping) and "expired 1234" in _summary(idle | {"expired": 1234})


def test_headless_input_log_says_what_went_to_nobody() -> None:
    sending = {"role": "input", "id": "in", "state": "running", "sent": 40, "rate_actual": 20.0, "no_subscriber": 0}
    assert _summary(sending) == "input in: running, sent 40, 20.0/s"
    assert _summary(sending | {"no_subscriber": 15}) == "input in: running, sent 40, no subscriber 15, 20.0/s"


def test_an_offline_workers_trend_holds_still() -> None:
    pal = Palette(*(Style() for _ in range(6)))
    t = tuple(NOW - 60 + i for i in range(60))
    dead = RoleStatus("infer", "w", "offline", {}, NOW, tuple(float(i % 7) for i in range(60)), t, (1.0,) * 60)
    assert worker_cells(dead, NOW + 5, pal) == worker_cells(dead, NOW + 50, pal)
    alive = dead._replace(state="running")
    assert worker_cells(alive, NOW + 5, pal) != worker_cells(alive, NOW + 50, pal)  # the test can fail


def test_a_worker_whose_queue_filled_since_its_last_status_shows_full() -> None:
    """Overloaded (its queue reached its bound since the last status: it drops, or at QoS 0 leaves its
    subscription, or the broker holds its QoS 1 images back), a running worker says `full`, not `running`."""
    pal = Palette(*(Style() for _ in range(6)))
    t = (NOW - 1,)

    def state(**data: object) -> str:
        role = RoleStatus("infer", "w", "running", {"queue_max": 2000, **data}, NOW, (1.0,), t, (1.0,))
        return worker_cells(role, NOW, pal)[1].plain

    assert state(queue=10, queue_peak=1999, queue_full=False) == "running"
    assert state(queue=10, queue_peak=2000, queue_full=True) == "full"
    assert state(queue=10) == "running"  # a status without the field
    assert state(queue_full="yes") == "running"  # not a flag: untrusted, shown as running


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
async def test_z_fills_the_screen_with_any_pane(size: tuple[int, int]) -> None:
    app = MnistApp(make_observer(), BROKER)
    async with app.run_test(size=size) as pilot:
        await pilot.pause(0.2)
        for i, name in enumerate(PANES):
            assert app._current_pane() == i
            await pilot.press("z")
            pane = app.screen.query_one(f"#{name}")
            await until(pilot, lambda pane=pane: pane.outer_size.width == size[0], f"z did not zoom {name}")
            assert pane.outer_size.height == size[1] - 2  # all but the header and the footer
            others = [app.screen.query_one(f"#{p}") for p in PANES if p != name]
            assert not any(o.display and o.region.area for o in others)
            await pilot.press("z")
            await until(pilot, lambda: app.screen.query_one("#publisher").region.width > 0, "z did not go back")
            await pilot.press("tab")
            await pilot.pause(0.1)


async def test_the_footer_drops_the_palette_key_when_narrow_and_shows_it_again_when_wide() -> None:
    """Under 100 columns the palette's key gives its room to the pane's keys (ctrl+p is on the help screen);
    the footer once kept it, and a stray letter after it, until its keys changed."""
    app = MnistApp(make_observer(), BROKER)

    def palette_keys() -> list[Any]:
        return [k for k in app.screen.query(FooterKey) if k.action == "command_palette"]

    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: len(palette_keys()) == 1, "no palette key at 120 columns")
        for width, height, shown in ((80, 24, 0), (40, 12, 0), (120, 40, 1)):
            await pilot.resize_terminal(width, height)
            await until(pilot, lambda shown=shown: len(palette_keys()) == shown,
                        lambda w=width: f"{w} columns: {len(palette_keys())} palette keys")


async def test_help_scrolls_to_what_is_below_the_fold() -> None:
    app = MnistApp(make_observer(), BROKER)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), "no help")
        body = app.screen.query_one("#help-body", VerticalScroll)
        assert app.focused is body
        await pilot.press("pagedown")
        await until(pilot, lambda: body.scroll_y > 0, "pagedown did not scroll the help")


async def test_the_help_is_built_unseen_at_startup_and_the_main_screen_keeps_its_focus() -> None:
    app = MnistApp(make_observer(), BROKER, warm_help=True)
    frames: list[tuple[type[Any], bool]] = []  # each frame handed to the terminal: its screen, held back by a batch
    display = app._display

    def noted(screen: Any, renderable: Any) -> None:
        if renderable is not None:
            frames.append((type(screen), app._batch_count > 0))
        display(screen, renderable)

    app._display = noted  # type: ignore[method-assign]
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.is_screen_installed("help") and isinstance(app.screen, MainScreen),
                    "the help was not built at startup")
        built = app.get_screen("help")
        assert built.query_one("#help-body", VerticalScroll).size.height > 0  # composed and laid out
        assert app.screen_stack == [app.main]
        assert app.focused is app.screen.query_one("#publisher")
        await pilot.pause(0.3)
        assert (HelpScreen, True) in frames and (HelpScreen, False) not in frames  # drawn, none of it shown
        await pilot.press("question_mark")
        await until(pilot, lambda: app.screen is built, "? did not open the help built at startup")
        await until(pilot, lambda: (HelpScreen, False) in frames, "the help opened but was never drawn")
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, MainScreen), "? did not close the help")
        assert app.focused is app.screen.query_one("#publisher")


async def test_the_kept_help_takes_a_theme_chosen_while_it_was_closed() -> None:
    """The help is styled again only when something its styles depend on changed: a theme changed while it
    was closed shows on its next opening, as on a help built under that theme."""
    app = MnistApp(make_observer(), BROKER)
    async with app.run_test(size=(120, 40)) as pilot:
        def dialog_colours() -> tuple[object, object]:
            box = app.screen.query_one("#help")
            return box.styles.background, app.screen.query_one(".help-section").styles.color

        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), "no help")
        dark = dialog_colours()
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, MainScreen), "the help did not close")
        app.theme = "textual-light"
        await pilot.pause()
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), "no help the second time")
        await until(pilot, lambda: dialog_colours() != dark, "the help kept the dark theme's colours")
        light = dialog_colours()
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, MainScreen), "the help did not close")
    fresh = MnistApp(make_observer(), BROKER)
    async with fresh.run_test(size=(120, 40)) as pilot:
        fresh.theme = "textual-light"
        await pilot.pause()
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(fresh.screen, HelpScreen), "no help")
        box = fresh.screen.query_one("#help")
        assert (box.styles.background, fresh.screen.query_one(".help-section").styles.color) == light


async def test_a_silent_worker_is_not_counted_online() -> None:
    """A worker not heard for a while (its status kept at the broker after it died, or its network cut) is
    not counted among those online: the Workers pane says how many are silent."""
    clock = [NOW - 60.0]
    obs = make_observer()
    obs._clock = lambda: clock[0]
    obs.ingest("mnist/status/infer/infer-gone-3", json.dumps({"role": "infer", "id": "infer-gone-3",
                                                               "state": "running", "ts": NOW - 60.0}).encode(),
               qos=1, retain=True)
    clock[0] = NOW
    app = MnistApp(obs, BROKER)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = app.screen.query_one("#workers")
        await until(pilot, lambda: pane.border_subtitle.startswith("1 of 3 online · 1 silent"),
                    lambda: f"subtitle {pane.border_subtitle!r}")


async def test_the_kept_help_drops_a_theme_chosen_while_it_was_open_once_the_first_is_back() -> None:
    """A theme chosen while the help is open (the palette opens over it) restyles the help without the help
    knowing; the first theme chosen again while it is closed shows on its next opening, not the other one's."""
    app = MnistApp(make_observer(), BROKER)
    async with app.run_test(size=(120, 40)) as pilot:
        def dialog_colours() -> tuple[object, object]:
            box = app.screen.query_one("#help")
            return box.styles.background, app.screen.query_one(".help-section").styles.color

        first = app.theme
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), "no help")
        before = dialog_colours()
        app.theme = "textual-light" if first != "textual-light" else "textual-dark"
        await until(pilot, lambda: dialog_colours() != before, "the open help did not take the other theme")
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, MainScreen), "the help did not close")
        app.theme = first
        await pilot.pause()
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), "no help the second time")
        await until(pilot, lambda: dialog_colours() == before,
                    "the help kept the colours of the theme chosen while it was open")


async def test_refreshes_keep_coming_one_after_another() -> None:
    app = MnistApp(make_observer(), BROKER)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.2)
        start = app._tick
        await until(pilot, lambda: app._tick >= start + 5, "the console stopped refreshing")
        assert app.pace.interval <= app.pace.longest


async def test_palette_has_one_keys_entry_and_no_textual_maximize() -> None:
    app = MnistApp(make_observer(), BROKER)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.1)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Keys" not in titles and "Maximize" not in titles and "Minimize" not in titles
        assert titles.count("Keys and help") == 1 and "Zoom pane" in titles
        assert "Set the publishing rate" in titles
        assert len(titles) == len(set(titles))


async def test_draw_clear_forgets_the_last_answer() -> None:
    app = MnistApp(make_observer(), BROKER)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, DrawDialog), "no draw dialog")
        dialog = app.screen
        assert isinstance(dialog, DrawDialog)
        dialog.show_result(ResultRow(1, NOW, "x", 1, None, 0.9, 1.0, "w", None, (0.1,) * 10, "m", False))
        assert dialog.query_one(ProbBars).probs is not None
        await pilot.press("c")
        await until(pilot, lambda: dialog.query_one(ProbBars).probs is None, "c kept the old bars")
        assert dialog.result is None


async def test_results_pane_says_when_the_broker_is_out_of_reach() -> None:
    from engine.console.observer import Observer
    from engine.mqtt.address import BrokerAddress

    observer = Observer(BrokerAddress(port=1))  # never started: not connected
    app = MnistApp(observer, BROKER)
    async with app.run_test(size=(120, 40)) as pilot:
        summary = app.screen.query_one("#results-summary")

        def text() -> str:
            return str(summary.render())

        await until(pilot, lambda: "cannot be reached" in text(), lambda: f"results summary: {text()!r}")
        assert "press" not in text()


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
async def test_worker_plots_keep_the_topics_pane_on_screen(size: tuple[int, int]) -> None:
    """g at 24 rows: the plots take their share and the Topics pane stays whole above the footer."""
    app = MnistApp(make_observer(), BROKER)
    async with app.run_test(size=size) as pilot:
        await pilot.press("tab", "g")
        workers = app.screen.query_one("#workers")
        await until(pilot, lambda: workers.has_class("-charts"), "g showed no plots")
        await pilot.pause(0.2)
        topics = app.screen.query_one("#topics").region
        assert topics.height >= 6 and topics.bottom <= size[1] - 1, topics


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
async def test_the_console_opens_at_once_and_says_it_is_starting(size: tuple[int, int],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """While the roles load (the starter blocks), the header and panes show and say "starting"; keys that
    need the roles say so; once the starter returns, the panes show the pipeline."""
    import threading

    from textual.widgets import Static

    from tui.chrome.header_bar import BrokerInfo, HeaderBar
    from tui.starting import StartingModel, Startup

    shown: list[str] = []
    notify = MnistApp.notify

    def recording(self: MnistApp, message: str, *args: Any, **kwargs: Any) -> None:
        shown.append(str(message))
        notify(self, message, *args, **kwargs)

    monkeypatch.setattr(MnistApp, "notify", recording)
    up = threading.Event()

    def starter() -> Startup:
        assert up.wait(60), "the test never let the roles start"
        return Startup(make_observer(), BROKER, ["a note from the pipeline"], False)

    app = MnistApp(StartingModel(), BrokerInfo("", "starting", "starting"), starter=starter)
    async with app.run_test(size=size) as pilot:
        header = app.screen.query_one(HeaderBar)
        summary = app.screen.query_one("#results-summary", Static)
        fields = app.screen.query_one("#publisher-fields", Static)

        def texts() -> str:
            return f"header {header.render()!s} | results {summary.render()!s} | publisher {fields.render()!s}"

        await until(pilot, lambda: "starting: loading the model" in str(header.render())
                    and "starting: loading the model" in str(summary.render()), texts)
        assert "starting…" in str(fields.render()) and "no publisher" not in str(fields.render()), texts()
        for key in ("space", "plus", "p", "d", "f"):
            shown.clear()
            await pilot.press(key)
            await until(pilot, lambda: any(text.startswith("starting:") for text in shown),
                        lambda key=key: f"{key}: {shown}")
            assert isinstance(app.screen, MainScreen), f"{key} opened {app.screen}"
        app.screen.query_one("#workers-table").focus()  # l (load a model) belongs to the Workers pane
        shown.clear()
        await pilot.press("l")
        await until(pilot, lambda: any(text.startswith("starting:") for text in shown), lambda: f"l: {shown}")
        assert not any("no worker" in text for text in shown), shown
        assert isinstance(app.screen, MainScreen), f"l opened {app.screen}"
        up.set()
        await until(pilot, lambda: "connected" in str(header.render()), texts)
        await until(pilot, lambda: "state" in str(fields.render()) and "starting" not in str(summary.render()),
                    texts)
        assert "a note from the pipeline" in shown
        assert app.start_error is None and not app.starting


async def test_a_start_that_fails_ends_the_console_with_its_error() -> None:
    from tui.chrome.header_bar import BrokerInfo
    from tui.starting import StartingModel, Startup

    def starter() -> Startup:
        raise ConfigError("no such broker config")

    app = MnistApp(StartingModel(), BrokerInfo("", "starting", "starting"), starter=starter)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: not app.is_running or app.return_code is not None, "the console did not end")
    assert isinstance(app.start_error, ConfigError) and app.return_code == 1


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
async def test_publish_dialog_shows_all_of_itself(size: tuple[int, int]) -> None:
    """At 24 rows the Publish and Cancel buttons fell below the dialog's edge: every part lies inside it."""
    from tui.topics.publish_dialog import PublishDialog

    app = MnistApp(make_observer(), BROKER)
    async with app.run_test(size=size) as pilot:
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, PublishDialog), "no publish dialog")
        await pilot.pause(0.2)
        inside = app.screen.query_one("#dialog").content_region
        for part in ("#publish-topic", "#publish-payload", "#publish-qos", "#publish-retain", "#publish-error",
                     "#publish", "#cancel"):
            region = app.screen.query_one(part).region
            assert inside.contains_region(region), f"{part} at {region} outside {inside}"


async def test_q_while_starting_quits_at_once() -> None:
    """Nothing is ours to drain yet: q ends the console; the caller stops the roles once they are up."""
    import threading

    from tui.chrome.header_bar import BrokerInfo
    from tui.starting import StartingModel, Startup

    up = threading.Event()

    def starter() -> Startup:
        assert up.wait(60)
        return Startup(make_observer(), BROKER, [], True)

    app = MnistApp(StartingModel(), BrokerInfo("", "starting", "starting"), starter=starter)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.start_thread is not None, "the start thread never began")
            await pilot.press("q")
            await until(pilot, lambda: app.return_code is not None, "q did not end the console")
    finally:
        up.set()
    assert app.start_thread is not None
    app.start_thread.join(10)
    assert not app.start_thread.is_alive() and app.start_error is None


def test_a_long_help_line_wraps_in_its_own_column() -> None:
    console = Console(width=30, record=True, color_system=None)
    console.print(KeysTable([("space", "start or stop publishing, every publisher on the broker"), ("q", "quit")], 5))
    lines = console.export_text().splitlines()
    assert lines[0].startswith("space  start or stop")
    assert len(lines) > 3 and all(line.startswith(" " * 7) and line[7] != " " for line in lines[1:-1])
    assert lines[-1].rstrip() == "q      quit"
    assert all(len(line.rstrip()) <= 30 for line in lines)
