"""The mnist-tui console: one screen that runs, shows and steers the whole pipeline.

The app renders observer snapshots ten times a second, fewer (down to two) when refreshes are expensive
(tui/refresh_pace.py), and never one update per message. It steers
roles only through the observer's control messages (docs/PROTOCOL.md: local is remote); errors become
notifications.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import textwrap
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from textual import on
from textual.actions import SkipAction
from textual.app import ComposeResult, SystemCommand
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.theme import Theme
from textual.widget import Widget
from textual.widgets import Input, Static

from engine.config_file import ConsolePrefs, save_console_setting
from engine.console.contract import ConsoleModel
from engine.console.export import default_name, export_dir, write_results_csv
from engine.console.snapshot import Snapshot
from engine.errors import MnistError
from engine.untrusted import clean_text
from tui import keys
from tui.chrome.footer import MainFooter
from tui.chrome.header_bar import BrokerInfo, HeaderBar
from tui.chrome.help_screen import HelpScreen, Section
from tui.draw.draw_dialog import DrawDialog
from tui.key_order import KeyOrderedApp
from tui.messages import OpenResult, RefreshWanted
from tui.publisher.publisher_pane import PublisherPane, pick_publisher
from tui.publisher.rate_dialog import RateDialog
from tui.refresh_pace import MAX_HZ, RefreshPace
from tui.results.confusion_screen import ConfusionScreen
from tui.results.result_detail import ResultDetail
from tui.results.results_log import ResultsLog
from tui.results.results_pane import ResultsPane
from tui.starting import StartDone, StartingModel, Startup
from tui.topics.filter_dialog import FilterDialog
from tui.topics.publish_dialog import PublishDialog, PublishRequest
from tui.topics.topic_tree import TopicTree
from tui.topics.topics_pane import TopicsPane
from tui.widgets import formatting as fmt
from tui.workers.workers_pane import NO_WORKERS, WorkersPane

log = logging.getLogger(__name__)

REFRESH_HZ = MAX_HZ  # at most; fewer when a refresh is expensive (tui/refresh_pace.py)
MAX_FAILURES_TOLD = 5  # places a refresh failed from that are notified (a broken console need not say more)
TOPICS_EVERY = 4  # refreshes between topic-tree and message-list refreshes (2.5 a second at 10 Hz)
# + and - step by about three times: from 1/s to max in nine presses (r types any rate).
RATE_STEPS = (1, 3, 10, 30, 100, 300, 1000, 3000, 10_000)
QUIT_DRAIN_S = 5.0  # q waits this long at most for the workers' queues to empty (q again: at once)
PANES = ("publisher", "workers", "results", "topics")
TEXTUAL_TWINS = frozenset({"Keys", "Maximize", "Minimize"})



def next_rate(current: float, direction: int) -> float:
    """The next rate up (+1) or down (-1) from `current`; 0 means as fast as possible (above every step)."""
    if direction > 0:
        if current == 0:
            return 0
        return next((r for r in RATE_STEPS if r > current), 0)
    if current == 0:
        return RATE_STEPS[-1]
    return next((r for r in reversed(RATE_STEPS) if r < current), RATE_STEPS[0])


class MainScreen(Screen[None]):
    """The four panes under the header line. Keys that steer the pipeline live here, so no dialog
    ever triggers them."""

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide"), (120, "-wider")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (32, "-tall")]

    BINDINGS = keys.main_bindings()

    def __init__(self, broker: BrokerInfo) -> None:
        super().__init__()
        self.broker = broker

    def compose(self) -> ComposeResult:
        yield HeaderBar(self.broker, id="header")
        with Horizontal(id="main"):
            yield PublisherPane(id="publisher")
            with Vertical(id="right"):
                yield WorkersPane(id="workers")
                yield ResultsPane(id="results")
                yield TopicsPane(id="topics")
        yield MainFooter()

    def action_inspector(self) -> None:
        """`i` from any pane: the Topics pane opens the inspector (from the Topics pane its own binding does)."""
        self.query_one(TopicsPane).action_inspector()

    @property
    def zoomed(self) -> str | None:
        """The pane that fills the screen, or None when all four show."""
        return next((p for p in PANES if self.has_class(f"-zoom-{p}")), None)

    def zoom(self, pane: str | None) -> None:
        """Fill the screen with one pane (its id), or show all four again (None). Styles in app.tcss: the
        other panes are hidden and this one takes their room, whatever its own width or height."""
        for name in PANES:
            self.set_class(name == pane, f"-zoom-{name}")
            self.query_one(f"#{name}").set_class(name == pane, "-zoomed")
        self.set_class(pane is not None, "-zoom")
        self._refresh_when_laid_out()

    def on_resize(self) -> None:
        # Under 100 columns the footer drops the padding around each key and the palette's key (ctrl+p is on
        # the help screen), so that ? Help and q Quit still fit beside a pane's own keys.
        footer = self.query_one(MainFooter)
        footer.compact = self.size.width < 100
        footer.show_command_palette = self.size.width >= 100
        self._refresh_when_laid_out()

    def _refresh_when_laid_out(self) -> None:
        """The panes fit their columns and lines to their size at a refresh: one now, not at the next tick
        (under load up to half a second away)."""
        self.call_after_refresh(self.post_message, RefreshWanted(full=False))


class MnistApp(KeyOrderedApp[None]):
    """`observer` must be started by the caller (and stopped after the app exits). `owns_roles`: the
    console started the roles and they stop with it, so q stops publishing and drains them first.

    `starter`: the console opens at once on a StartingModel (header, panes, "starting: ...") and runs
    `starter` in a thread (`start_thread`); what it returns replaces the observer, the broker line and
    `owns_roles`. An exception from it ends the app, kept in `start_error` for the caller to report."""

    CSS_PATH = "app.tcss"
    TITLE = "mnist-tui"
    ENABLE_COMMAND_PALETTE = True

    def __init__(
        self,
        observer: ConsoleModel,
        broker: BrokerInfo | None = None,
        *,
        notes: Iterable[str] = (),
        refresh_hz: float = REFRESH_HZ,
        log_records: deque[logging.LogRecord] | None = None,
        owns_roles: bool = False,
        prefs: ConsolePrefs | None = None,
        starter: Callable[[], Startup] | None = None,
        warm_help: bool = False,
    ) -> None:
        super().__init__()
        self.prefs = prefs  # the theme to start with, and the config file that remembers theme and filter
        self.observer = observer
        self.starter = starter
        self.start_thread: threading.Thread | None = None
        self.start_error: BaseException | None = None
        self.broker = broker or BrokerInfo(observer.address.url, "external", "external broker")
        self.notes = list(notes)
        self.pace = RefreshPace(max_hz=refresh_hz)
        self.warm_help = warm_help  # open and close the help unseen at startup (the mnist-tui command does)
        self.log_records = log_records
        self.snap: Snapshot | None = None
        self._events_seen = 0
        self._wanted_rate: tuple[float | None, float] = (None, 0.0)
        self._pending_pane: int | None = None
        self._tick = 0
        self.last_export: Path | None = None
        self.owns_roles = owns_roles  # the roles stop with the console: q drains them first
        self._quit_asked: float | None = None  # when q was pressed: the console drains, then quits
        self._saved: dict[str, str] = {}  # the preferences as the config file has them
        self.refresh_failures = 0  # refreshes that raised (_refresh_failed)
        self._failures_told: set[tuple[object, ...]] = set()  # (exception type, file, line) already said

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """Every notification is plain text: its words may come from the broker (topics, reasons, errors)."""
        super().notify(clean_text(message, 600, multiline=True), title=clean_text(title, 100),
                       severity=severity, timeout=timeout, markup=False)

    # ----- lifecycle -----
    def get_default_screen(self) -> Screen[Any]:
        return MainScreen(self.broker)

    def on_mount(self) -> None:
        self._apply_prefs()
        self.call_after_refresh(self._started)

    # ----- preferences remembered in the config file (engine/config_file.py writes it) -----
    def _apply_prefs(self) -> None:
        prefs = self.prefs
        if prefs is None:
            return
        if prefs.theme and prefs.theme != self.theme:
            if prefs.theme in self.available_themes:
                self.theme = prefs.theme
            else:
                self.notes.append(f"unknown theme {prefs.theme!r}: using {self.theme} "
                                  f"(ctrl+p, then 'theme', lists them)")
        self._saved = {"theme": prefs.theme or self.theme, "filter": prefs.filter}
        for key in prefs.left_out:  # the file holds something else: choosing the value in use saves it
            self._saved.pop(key, None)
        self.notes.extend(prefs.notes)
        self.theme_changed_signal.subscribe(self, self._theme_changed)

    def _theme_changed(self, theme: Theme) -> None:
        self._remember("theme", theme.name)

    def _remember(self, key: str, value: str) -> None:
        """Save a preference the user changed here; a file that cannot be written is a notification."""
        if self.prefs is None or self._saved.get(key) == value:
            return
        try:
            save_console_setting(self.prefs.file, key, value)
        except MnistError as exc:
            self.notify(str(exc), title="Preference not saved", severity="warning", timeout=8)
            return
        self._saved[key] = value

    def _started(self) -> None:
        # What exists now (modules, styles, the widgets) lives as long as the console: moved out of the garbage
        # collector's sight, a full collection has a third of the objects to walk (0.2-0.3 s to 0.05-0.1 s here,
        # and a key waits for it). Full collections also come 100 times more rarely (threshold 10 -> 1000 young
        # collections): under a flood, keys answered with p90 52-56 ms and max 98-110 ms instead of 71-81 and
        # 118-153 ms (python -m tools.keylatency, two runs each, interleaved). Young garbage is collected as before.
        gc.freeze()
        gc.set_threshold(700, 10, 1000)
        main = self.main
        # A pane picked meanwhile (a click, a test) keeps the focus; a dialog opened by a key typed before
        # this first refresh is on top: the main screen's own focus is set behind it.
        if main is not None and main.focused is None:
            main.query_one("#publisher", PublisherPane).focus()
        if self.starter is not None:
            self._show_starting()
            self.start_thread = threading.Thread(target=self._run_starter, name="console-start", daemon=True)
            self.start_thread.start()
        self.refresh_from_observer(full=True)
        self.set_timer(self.pace.next_interval(), self._paced_refresh, name="refresh")
        if self.warm_help:
            self.call_after_refresh(self._warm_help)
        for note in self.notes:
            self.notify(note, severity="warning", timeout=8)

    # ----- starting: the chrome at once, the roles when they are up -----
    @property
    def starting(self) -> bool:
        """The roles (or the connection to the broker) are not up yet: keys that steer say so."""
        return isinstance(self.observer, StartingModel)

    def _show_starting(self) -> None:
        """What the panes say until the roles are up (their snapshots would say "no publisher", "no worker")."""
        main = self.main
        if main is None or not isinstance(self.observer, StartingModel):
            return
        line = f"[b $text-warning]starting:[/] [dim]{self.observer.what}[/]"
        what = textwrap.fill(self.observer.what, 20)  # the pane's lines do not wrap: at 80 columns it is 22 wide
        main.query_one("#publisher-fields", Static).update(f"[b $text-warning]starting…[/]\n\n[dim]{what}[/]")
        main.query_one("#workers-empty", Static).update(line)
        main.query_one(WorkersPane).set_class(True, "-empty")
        main.query_one("#results-summary", Static).update(line)

    def _run_starter(self) -> None:
        """In the start thread: the blocking start, then hand the result (or the error) to the app."""
        assert self.starter is not None
        try:
            done = StartDone(self.starter())
        except BaseException as exc:  # reported by the caller as one line, after the app has ended
            self.start_error = exc
            done = StartDone(None, exc)
        # Not call_from_thread: it waits for the app, which may have ended meanwhile (q while starting).
        with contextlib.suppress(RuntimeError):  # RuntimeError: the app's loop is closed
            self.post_message(done)

    @on(StartDone)
    def _start_done(self, event: StartDone) -> None:
        if event.started is None:
            self.exit(None, 1)
        else:
            self._take_startup(event.started)

    def _take_startup(self, started: Startup) -> None:
        self.observer = started.observer
        self.broker = started.broker
        self.owns_roles = started.owns_roles
        main = self.main
        if main is not None:
            main.broker = started.broker
            main.query_one(HeaderBar).broker = started.broker
            # The panes were not updated while starting: the first snapshot now replaces every "starting" line.
            main.query_one("#workers-empty", Static).update(NO_WORKERS)
        self.refresh_from_observer(full=True)
        for note in started.notes:
            self.notify(note, severity="warning", timeout=8)

    def not_started(self) -> bool:
        """True (and a notification says why) while the roles are still starting."""
        if isinstance(self.observer, StartingModel):
            self.notify(self.observer.message, title="Not yet", severity="warning", timeout=4)
            return True
        return False

    @property
    def main(self) -> MainScreen | None:
        for screen in self.screen_stack:
            if isinstance(screen, MainScreen):
                return screen
        return None

    def _paced_refresh(self) -> None:
        """Refresh, then wait what the pace says before the next (a chain of timers, not a fixed interval)."""
        try:
            self.refresh_from_observer()
        finally:
            self.set_timer(self.pace.next_interval(), self._paced_refresh, name="refresh")

    def _refresh_failed(self, exc: Exception) -> None:
        """A refresh raised (a bug in a pane): the console goes on refreshing, so the pipeline it steers stays in
        view and under its keys, and says what failed (a notification and a log record) instead of ending with
        a traceback. Once per place it was raised from, whatever its words (they may name a changing id), and
        for the first few such places only."""
        self.refresh_failures += 1
        frames = traceback.extract_tb(exc.__traceback__)
        where = (type(exc).__name__, frames[-1].filename, frames[-1].lineno) if frames else (type(exc).__name__,)
        if where in self._failures_told or len(self._failures_told) >= MAX_FAILURES_TOLD:
            return
        self._failures_told.add(where)
        what = clean_text(f"{type(exc).__name__}: {exc}", 200)  # its words may be the broker's
        log.warning("a pane could not be refreshed (%s)", what, exc_info=exc)  # a warning: not notified twice
        self.notify(f"{what}\nThe console goes on; the pipeline is not affected.",
                    title="A pane could not be refreshed", severity="error", timeout=10)

    def refresh_from_observer(self, full: bool = False) -> None:
        """Take one snapshot and hand it to every pane, or to the dialog on top (the panes wait behind it)."""
        main = self.main
        if main is None or not main.is_mounted:
            return
        try:
            self._refresh(main, full)
        except NoMatches as exc:
            if main.is_attached and not self._exit_asked():  # not torn down: a bug like any other
                self._refresh_failed(exc)
        except Exception as exc:  # a bug outside the panes' updates (those are caught in _hand_over)
            self._refresh_failed(exc)

    def _exit_asked(self) -> bool:
        """The console is quitting, or no longer running (a test's end stops the app without asking it to exit):
        its screens are being torn down, and a query may find nothing."""
        return (not self.is_running
                or bool(getattr(self, "_exit", False) or getattr(self, "_closing", False)))  # Textual's own flags

    def _refresh(self, main: MainScreen, full: bool) -> None:
        self._tick += 1
        full = full or self._tick % TOPICS_EVERY == 0
        topics = main.query_one(TopicsPane)
        top = self.screen
        # A screen pushed a moment ago is composed when it mounts: until then it has no panes to ask or update.
        ready = top is not main and top.is_mounted
        # A screen that follows one topic (the inspector, a plot) names it; else the Topics pane's selection.
        wanted = getattr(top, "topic_wanted", None) if ready else None
        snap = self.observer.snapshot(wanted or topics.selected_topic, topics=full, events_after=self._events_seen)
        if not full and self.snap is not None:
            snap = snap._replace(topics=self.snap.topics)
        self.snap = snap
        for event in snap.events:
            self._events_seen = max(self._events_seen, event.seq)
            self.notify(event.text, severity=event.level, timeout=6)  # type: ignore[arg-type]
        self._show_log_errors()
        if top is not main:
            # The panes hold still behind a dialog: nobody sees them there, updating them is most of the work
            # of a refresh, and Textual repaints the dialog over every change behind it (over a see-through one
            # it re-rendered and tinted the whole console ten times a second). A dialog that follows the flow
            # (drawing, confusion matrix) gets the snapshot; the panes catch up at the first refresh after it.
            update = getattr(top, "update_snapshot", None) if ready else None
            if update is not None:
                self._hand_over(update, snap)
            return
        self._hand_over(main.query_one(HeaderBar).update_snapshot, snap)
        if self.starting:  # the panes keep their "starting" line (_show_starting)
            return
        self._hand_over(main.query_one(PublisherPane).update_snapshot, snap)
        self._hand_over(main.query_one(WorkersPane).update_snapshot, snap)
        self._hand_over(main.query_one(ResultsPane).update_snapshot, snap)
        self._hand_over(topics.update_snapshot, snap, full)

    def _hand_over(self, update: Callable[..., None], *args: Any) -> None:
        """One pane's update: a pane whose update raises keeps the others from none of theirs."""
        try:
            update(*args)
        except NoMatches as exc:
            if self._exit_asked():
                raise  # torn down while quitting: refresh_from_observer ends the refresh, unremarked
            self._refresh_failed(exc)
        except Exception as exc:
            self._refresh_failed(exc)

    def _show_log_errors(self) -> None:
        """Errors logged by local roles while the console owns the terminal become notifications."""
        records = self.log_records
        shown = 0
        while records:
            record = records.popleft()
            if record.levelno >= logging.ERROR and shown < 3:
                shown += 1
                self.notify(record.getMessage()[:300], title=record.name, severity="error", timeout=8)

    # ----- steering the publisher (through the control topic, like any remote console) -----
    def _publishers(self) -> list[Any]:
        if self.not_started():
            return []
        snap = self.snap or self.observer.snapshot(topics=False)
        # The ones still heard from, if any: a stray "running" status, retained or sent once by any client, is
        # silent, and counting it would make space send stop for ever. When every one is silent (a flood, a
        # console behind on its messages) they are all steered: a stop must still go out.
        online = [r for r in snap.roles_of("input") if r.online]
        heard = [r for r in online if not r.silent(snap.time)]
        if not online:
            self.notify("no publisher online: start one with 'mnist-tui run input --broker URL'",
                        title="Nothing to steer", severity="warning")
        return heard or online

    def _control(self, role: str, cmd: str, **args: Any) -> bool:
        try:
            self.observer.send_control(role, cmd, **args)
        except MnistError as exc:
            self.notify(str(exc), title=f"{cmd} not sent", severity="error")
            return False
        return True

    def action_toggle_publishing(self) -> None:
        publishers = self._publishers()
        if publishers:
            running = any(r.state == "running" for r in publishers)
            self._control("input", "stop" if running else "start")

    def action_step(self) -> None:
        if self._publishers():
            self._control("input", "step", n=1)

    def _change_rate(self, direction: int) -> None:
        publishers = self._publishers()
        if not publishers:
            return
        role, _n = pick_publisher(self.snap) if self.snap else (publishers[0], 1)
        current = role.data.get("rate", 10) if role is not None else 10
        current = float(current) if isinstance(current, (int, float)) else 10.0
        wanted, asked_at = self._wanted_rate
        if wanted is not None and time.monotonic() - asked_at < 3:
            current = wanted  # keys pressed faster than the status comes back: step from what we asked for
        new = next_rate(current, direction)
        if new == current:
            self.notify("already as fast as it goes" if new == 0 else f"rate is already {fmt.set_rate(new)}")
            return
        if self._control("input", "rate", value=new):
            self._wanted_rate = (new, time.monotonic())

    def action_rate(self) -> None:
        """Type a rate (a number, or max) in a dialog; sent like + and - send theirs."""
        publishers = self._publishers()
        if not publishers:
            return
        role, _n = pick_publisher(self.snap) if self.snap else (publishers[0], 1)
        current = role.data.get("rate") if role is not None else None
        shown = fmt.set_rate(current).removesuffix("/s") if isinstance(current, (int, float)) else ""

        def send(rate: float | None) -> None:
            if rate is not None and self._control("input", "rate", value=rate):
                self._wanted_rate = (rate, time.monotonic())
                self.notify(f"rate {fmt.set_rate(rate)} asked of the publisher", timeout=3)

        self.push_screen(RateDialog(shown), send)

    def action_faster(self) -> None:
        self._change_rate(+1)

    def action_slower(self) -> None:
        self._change_rate(-1)

    # ----- results and topics -----
    def action_clear_results(self) -> None:
        self.observer.clear_results()
        self.refresh_from_observer()

    def action_search_topics(self) -> None:
        """`/` from any pane: the Topics pane opens its search box and focuses it as the key arrives."""
        if isinstance(self.focused, Input):
            raise SkipAction  # a `/` typed in the search box (or a dialog's field) is text: topics are paths
        main = self.main
        pane = self._topics_pane()  # in the inspector its own: the main screen's is hidden behind it
        if main is None or pane is None:
            return
        if pane.screen is main and main.zoomed is not None and main.zoomed != "topics":
            main.zoom(None)  # the search is in the Topics pane: show it
        pane.action_search()

    def action_filter(self) -> None:
        if self.not_started():
            return

        def apply(new: str | None) -> None:
            if new is None:
                return
            if new == self.observer.filter:
                self._remember("filter", new)  # saved unless it is already (a saved filter left out is not)
                return
            try:
                self.observer.set_filter(new)
            except MnistError as exc:
                self.notify(str(exc), title="Bad filter", severity="error")
                return
            self._remember("filter", new)
            self.refresh_from_observer(full=True)

        self.push_screen(FilterDialog(self.observer.filter), apply)

    def _topics_pane(self) -> TopicsPane | None:
        """The Topics pane of the screen on top (the inspector's), else the main screen's."""
        for screen in (self.screen, self.main):
            panes = screen.query(TopicsPane) if screen is not None else ()
            if panes:
                return panes.first()
        return None

    def _selected_topic(self) -> str | None:
        """The topic selected in the Topics pane of the screen on top (the inspector's), else the main one."""
        pane = self._topics_pane()
        return pane.selected_topic if pane is not None else None

    def action_publish(self, dialog: PublishDialog | None = None) -> None:
        if self.not_started():
            return

        def send(request: PublishRequest | None) -> None:
            if request is None:
                return
            try:
                self.observer.publish(request.topic, request.payload, request.qos, request.retain,
                                      forget_limit=request.forget_limit)
            except MnistError as exc:
                self.notify(str(exc), title="Not published", severity="error")
            # The broker's verdict (published, refused, or not confirmed) comes as an observer event.

        if dialog is None:
            # The Topics pane's selection is the topic; chosen on purpose only where that pane has the focus: `p`
            # from another pane, with `mnist` selected there, put a typed topic into the payload, and the
            # workers got it as an image
            pane = self._topics_pane()
            topic = pane.selected_topic if pane is not None else None
            dialog = PublishDialog(topic or "", chosen=pane is not None and pane.has_focus_within)
        dialog.connection = lambda: self.snap.connection if self.snap is not None else None
        self.push_screen(dialog, send)

    def action_republish(self) -> None:
        """`R` in the Topics pane: the publish dialog, filled in with the selected message. Opened here, as the
        key arrives (a message from the pane reached the app after the keys typed next: keys.Key.binding)."""
        pane = self._topics_pane()
        dialog = pane.republish_dialog() if pane is not None else None
        if dialog is not None:
            self.action_publish(dialog)

    def action_clear_retained(self) -> None:
        if self.not_started():
            return
        topic = self._selected_topic()
        if topic is None:
            self.notify("select a topic in the Topics pane first", severity="warning")
            return
        try:
            self.observer.clear_retained(topic)
        except MnistError as exc:
            self.notify(str(exc), title="Not cleared", severity="error")
        # The broker's verdict (cleared, refused, or not confirmed) comes as an observer event.

    def action_toggle_pause(self) -> None:
        if self.not_started():
            return
        try:
            if self.observer.paused:
                self.observer.resume()
                self.notify("inspector resumed", timeout=2)
            else:
                self.observer.pause()
                self.notify("inspector paused: topics and messages hold still; results keep coming", timeout=3)
        except MnistError as exc:  # the observer process is gone or too busy to say so
            self.notify(str(exc), title="Inspector", severity="error")
        self.refresh_from_observer(full=True)

    # ----- drawing, looking closer, keeping the record -----
    def action_draw(self) -> None:
        if self.not_started():
            return
        self.push_screen(DrawDialog(self.observer, self.snap))

    def action_matrix(self) -> None:
        if isinstance(self.screen, ConfusionScreen):
            self.screen.dismiss(None)
        else:
            self.push_screen(ConfusionScreen(self.snap))

    def on_results_log_selected(self, event: ResultsLog.Selected) -> None:
        self.push_screen(ResultDetail(event.rows, event.index, self.observer))

    @on(OpenResult)
    def _open_result(self, event: OpenResult) -> None:
        self.push_screen(ResultDetail(event.rows, event.index, self.observer))

    @on(RefreshWanted)
    def _refresh_wanted(self, event: RefreshWanted) -> None:
        self.refresh_from_observer(full=event.full)

    def action_export(self, path: str | None = None) -> None:
        """Write the results the console holds (since the last `c`) to a CSV file (default: a timestamped name
        in the export folder, made when missing)."""
        snap = self.observer.snapshot(topics=False)
        rows = snap.results
        if not rows:
            self.notify("no results to export yet", severity="warning", timeout=3)
            return
        target = Path(path).expanduser().absolute() if path else export_dir() / default_name()
        try:
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            n = write_results_csv(rows, target)
        except (MnistError, OSError) as exc:
            self.notify(str(exc), title="Not exported", severity="error")
            return
        note = ""
        if snap.stats.counted_only:
            note = (f" (of {fmt.count(snap.stats.received)}: at thousands a second the console decodes a sample"
                    " and keeps its newest)")
        elif snap.stats.received > n:
            note = f" (the newest {fmt.count(n)} of {fmt.count(snap.stats.received)}: the console keeps that many)"
        self.notify(f"{fmt.count(n)} results to {target}{note}", title="Exported", timeout=8)
        self.last_export = target

    # ----- quitting -----
    def _in_flight(self) -> int:
        """Images the infer workers still hold in their queues (from their last status)."""
        snap = self.snap
        if snap is None:
            return 0
        queued = (r.data.get("queue") for r in snap.roles_of("infer") if r.online)
        return int(sum(q for q in queued if isinstance(q, (int, float)) and q > 0))

    async def action_quit(self) -> None:
        """q: stop publishing, let the workers drain what they hold (a notice says how much), then quit;
        q again quits at once."""
        # Roles of others are not ours to stop; roles still starting are stopped by the caller once up.
        if self._quit_asked is not None or not self.owns_roles or self.starting:
            self.exit()
            return
        self._quit_asked = time.monotonic()
        running = any(r.state == "running" for r in (self.snap.roles_of("input") if self.snap else ()))
        if running:
            self._control("input", "stop")
        n = self._in_flight()
        if n == 0 and not running:
            self.exit()
            return
        self.notify(f"stopping: draining {fmt.count(n)} images (q again quits at once)", title="Quitting",
                    timeout=QUIT_DRAIN_S + 5)
        self.set_interval(0.2, self._quit_when_drained)

    def _quit_when_drained(self) -> None:
        waited = time.monotonic() - (self._quit_asked or 0.0)
        if (self._in_flight() == 0 and waited >= 1.0) or waited >= QUIT_DRAIN_S:  # 1 s: a fresh status
            self.exit()

    # ----- moving around -----
    def _pane_targets(self) -> list[Widget]:
        main = self.main
        if main is None:
            return []
        return [
            main.query_one(PublisherPane),
            main.query_one("#workers-table"),
            main.query_one(ResultsLog),
            main.query_one(TopicTree),
        ]

    def _current_pane(self) -> int:
        focused = self.focused
        if focused is None:
            return -1
        for i, name in enumerate(PANES):
            node: Any = focused
            while node is not None:
                if getattr(node, "id", None) == name:
                    return i
                node = node.parent
        return -1

    def _focus_pane(self, step: int) -> None:
        targets = self._pane_targets()
        if not targets:
            return
        current = self._current_pane()
        if self._pending_pane is not None:  # focus moves after this key: a fast second tab starts from there
            current = self._pending_pane
        index = (current + step) % len(targets)
        if self.main is not None:
            self.main.zoom(None)
        self._pending_pane = index
        targets[index].focus()
        self.call_after_refresh(self._focus_settled)

    def _focus_settled(self) -> None:
        self._pending_pane = None

    def action_next_pane(self) -> None:
        self._focus_pane(+1)

    def action_previous_pane(self) -> None:
        self._focus_pane(-1)

    def action_zoom(self) -> None:
        """Fill the screen with the focused pane, or go back to all four."""
        main = self.main
        if main is None:
            return
        if main.zoomed is not None:
            main.zoom(None)
            return
        index = self._current_pane()
        if index >= 0:
            main.zoom(PANES[index])

    def action_help(self) -> None:
        # One help screen, composed once and kept: building it anew took most of the time the key took.
        if isinstance(self.screen, HelpScreen):
            return
        if not self.is_screen_installed("help"):
            self.install_screen(HelpScreen(self.key_sections()), "help")
        self.push_screen("help")

    async def _warm_help(self) -> None:
        """Open and close the help once at startup, with nothing drawn: its first `?` then costs what later ones do.

        A screen's first showing composes it, applies the styles to every node and lays it out at the terminal's
        size: about three times the work of showing it again (0.25-0.43 s against 0.08-0.14 s under Pilot).
        A key typed meanwhile waits in the app's queue (behind push_screen's wait for the help's mount) and
        reaches the main screen once the help is gone again."""
        if self.is_screen_installed("help") or self.screen is not self.main:
            return
        self.install_screen(HelpScreen(self.key_sections()), "help")
        with self.batch_update():  # nothing reaches the terminal until the main screen is back
            await self.push_screen("help")
            if isinstance(self.screen, HelpScreen):
                await self.pop_screen()

    def key_sections(self) -> list[Section]:
        return keys.help_sections()

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        # Textual's own "Keys" (its key panel) and "Maximize" would stand beside the app's help and zoom.
        yield from (c for c in super().get_system_commands(screen) if c.title not in TEXTUAL_TWINS)
        if not isinstance(screen, MainScreen):
            return
        for title, help_text, key in keys.commands():
            yield SystemCommand(title, help_text, getattr(self, key.method))
