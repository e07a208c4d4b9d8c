"""A number over time: the selected topic's payload (when it is a number) or a number field of its JSON."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList, Static
from textual.widgets.option_list import Option

from engine.console.observer import Message, Snapshot
from engine.console.series import VALUE, Changes, changes, for_plot, number_fields, opening, series, y_limits
from engine.untrusted import visible_text
from tui.safe_text import markup_text, plain
from tui.widgets import formatting as fmt
from tui.widgets.palette import plot_colours, plot_theme
from tui.widgets.safe_plot import SafePlot


def still_note(fields: list[str], seen: Changes) -> str:
    """What the plot says when no field but a clock changes of late (an idle worker's status): its flat line
    is no fault."""
    if seen.varying - seen.clocks:
        return ""
    clocks = [markup_text(field, 40) for field in fields if field in seen.varying]
    return f"only clocks change of late ({', '.join(clocks)})" if clocks else "nothing changes of late"


class PlotScreen(ModalScreen[None]):
    """Follows the topic while it is open (the app hands it each snapshot, for `topic_wanted`)."""

    BINDINGS = [Binding("escape,q,g", "close", "Close")]

    def __init__(self, topic: str, messages: tuple[Message, ...]) -> None:
        super().__init__()
        self.topic = topic
        self.messages = messages
        self.fields = number_fields(m.payload for m in messages)
        self.seen = changes([(m.t, m.payload) for m in messages], self.fields)
        self.field: str | None = self.fields[opening(self.fields, self.seen)] if self.fields else None
        self.points = 0  # values in the plot drawn last
        self._key: tuple[object, ...] | None = None

    @property
    def topic_wanted(self) -> str:
        return self.topic

    def compose(self) -> ComposeResult:
        with Vertical(id="plot-dialog", classes="dialog"):
            yield Label(f"{markup_text(self.topic, 100)} over time", classes="dialog-title")
            with Horizontal(id="plot-body"):
                yield OptionList(*(Option(plain(f, 80), id=str(i)) for i, f in enumerate(self.fields)),
                                 id="plot-fields")
                yield SafePlot(id="plot-chart")
            yield Static("", id="plot-info", classes="dialog-hint")

    def on_mount(self) -> None:
        fields = self.query_one(OptionList)
        if self.field is not None:
            fields.highlighted = self.fields.index(self.field)
        self.set_focus(fields)  # now, not after the keys typed right after `g` (see keys.Key.binding)
        self._draw()

    @on(OptionList.OptionHighlighted, "#plot-fields")
    def _pick(self, event: OptionList.OptionHighlighted) -> None:
        index = int(event.option.id or 0)
        if 0 <= index < len(self.fields):
            self.field = self.fields[index]
            self._draw()

    def update_snapshot(self, snap: Snapshot) -> None:
        if snap.messages and snap.messages[-1].topic == self.topic and snap.messages != self.messages:
            self.messages = snap.messages
            self.seen = changes([(m.t, m.payload) for m in snap.messages], self.fields)
            self._draw()

    def _draw(self) -> None:
        info = self.query_one("#plot-info", Static)
        if self.field is None:
            info.update("[dim]no numbers in the messages kept: a number, or JSON with number fields[/]")
            return
        times, values = series(((m.t, m.payload) for m in self.messages), self.field)
        key = (self.field, len(times), times[-1] if times else None, self.seen)
        if key == self._key:
            return
        self._key = key
        self.points = len(values)
        widget = self.query_one(SafePlot)
        plt = widget.plt
        plt.clear_data()
        plt.clear_figure()
        name = "value" if self.field == VALUE else self.field
        drawn, exponent = for_plot(values)
        shown = visible_text(name, 80)  # the broker's text: plotext's output is read as ANSI (controls escaped here)
        plt.title(shown if not exponent else f"{shown} (x 1e{exponent})")
        if times:
            start = times[-1]
            widget.theme = plot_theme(self.app)  # type: ignore[assignment]
            colour = plot_colours(self.app, ("text-primary",))[0]
            plt.plot([t - start for t in times], drawn, marker="braille", color=colour)
            limits = y_limits(drawn)
            if limits is not None:
                plt.ylim(*limits)
            plt.xlabel("seconds before the newest")
        widget.refresh()
        still = still_note(self.fields, self.seen)
        info.update(f"[dim]{fmt.plural(len(values), 'value')} of {markup_text(name, 80)} in the "
                    f"{fmt.plural(len(self.messages), 'message')} kept{f' · {still}' if still else ''} · "
                    "↑↓ field · escape closes[/]")

    def action_close(self) -> None:
        self.dismiss(None)
