"""The Results pane: running accuracy and an endless log of results, newest last."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from engine.console.observer import ResultStats, Snapshot
from tui import keys
from tui.results.results_log import ResultsLog, header_text
from tui.widgets import formatting as fmt


def summary_markup(stats: ResultStats, narrow: bool, publishing: bool = False, connected: bool = True) -> str:
    acc = stats.accuracy
    if stats.received == 0:
        if not connected:
            return "[dim]no results: the broker cannot be reached (see the header)[/]"
        if publishing:
            return "[dim]no results yet: is an infer worker running?[/]"
        return "[dim]no results yet: press[/] space [dim]to start the publisher[/]"
    acc_text = f"[b]{fmt.percent(acc)}[/]" if acc is not None else "[dim]no labels[/]"
    parts = [f"accuracy {acc_text}"]
    if not narrow:
        parts[0] += f" [dim]({fmt.count(stats.correct)} of {fmt.count(stats.labelled)})[/]"
    parts.append(f"{fmt.rate(stats.rate)}")
    if stats.lat_p50 is not None:
        parts.append(f"p50 {fmt.ms(stats.lat_p50)}" + ("" if narrow else f" p99 {fmt.ms(stats.lat_p99)}"))
    if stats.errors:
        parts.append(f"[$text-error]{fmt.count(stats.errors)} error{'s' if stats.errors != 1 else ''}[/]")
    return " [dim]·[/] ".join(parts)


def subtitle_text(received: int, skipped: int, narrow: bool, counted_only: int = 0, drawn: int = 0) -> str:
    """The border's count of results; `skipped`: messages the console skipped to keep its view current
    (engine/console/keep_up.py: they were answered, this view does not count them); `counted_only`: of
    `received`, those counted but not decoded (engine/console/sampling.py: the list and the figures above
    it are of the rest, a sample); `drawn`: of `received`, those of digits drawn here (`d`), which the
    Publisher pane's `sent` does not count: `199 results` beside `sent 198` read as a result of nothing sent."""
    text = fmt.plural(received, "result") if received else ""
    if drawn and received:
        text += f" · {fmt.count(drawn)} drawn"
    if counted_only and received:
        share = (received - counted_only) * 100 // received
        text += f" · {'<1' if share < 1 else share}% sampled"
    if skipped:
        text += f"{' · ' if text else ''}{fmt.short_count(skipped)} skipped{'' if narrow else ' to keep up'}"
    return text


class ResultsPane(Vertical):
    BINDINGS = keys.bindings(keys.RESULTS)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Results"
        self._summary: str | None = None
        self._header_width = -1

    def compose(self) -> ComposeResult:
        yield Static("", id="results-summary")
        yield Static("", id="results-header")
        yield ResultsLog(id="results-log")

    @property
    def log_view(self) -> ResultsLog:
        return self.query_one(ResultsLog)

    def action_follow(self) -> None:
        self.log_view.action_follow()

    def update_snapshot(self, snap: Snapshot) -> None:
        log = self.log_view
        width = log.scrollable_content_region.width
        if width != self._header_width:
            self._header_width = width
            self.query_one("#results-header", Static).update(header_text(width), layout=False)
        publishing = any(r.state == "running" for r in snap.roles_of("input"))
        summary = summary_markup(snap.stats, width < 60, publishing,
                                 connected=snap.connection.state == "connected")
        if summary != self._summary:
            self._summary = summary
            self.query_one("#results-summary", Static).update(summary, layout=False)
        log.set_rows(snap.results)
        stats = snap.stats
        subtitle = subtitle_text(stats.received, snap.skipped, width < 60, stats.counted_only, stats.drawn)
        if not log.following and snap.results:
            subtitle += " · scrolled: End for newest"
        if self.border_subtitle != subtitle:
            self.border_subtitle = subtitle
