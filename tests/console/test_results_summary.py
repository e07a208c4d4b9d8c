"""The Results pane's border says when the view skipped results to keep up (engine/console/keep_up.py)."""

from __future__ import annotations

from tui.results.results_pane import subtitle_text


def test_the_border_names_what_the_view_skipped() -> None:
    assert subtitle_text(1200, 0, narrow=False) == "1,200 results"
    assert subtitle_text(1200, 123_456, narrow=False) == "1,200 results · 123k skipped to keep up"
    assert subtitle_text(1200, 123_456, narrow=True) == "1,200 results · 123k skipped"
    assert subtitle_text(0, 0, narrow=False) == ""
