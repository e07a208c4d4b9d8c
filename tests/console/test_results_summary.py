"""The Results pane's summary line says when the view skipped results to keep up (engine/console/keep_up.py)."""

from __future__ import annotations

from engine.console.snapshot import ResultStats
from tui.results.results_pane import summary_markup

STATS = ResultStats(1200, 1000, 990, 0, 0, 3500.0, 12.0, 40.0, tuple((0,) * 10 for _ in range(10)))


def test_the_summary_names_what_the_view_skipped() -> None:
    assert "skipped" not in summary_markup(STATS, narrow=False)
    wide = summary_markup(STATS, narrow=False, skipped=123_456)
    assert "view skipped 123k to keep up" in wide
    narrow = summary_markup(STATS, narrow=True, skipped=123_456)
    assert "skipped 123k" in narrow and "to keep up" not in narrow
