"""The Results pane's border: what the view skipped to keep up (engine/console/keep_up.py), what share it decoded,
and how many results are of digits drawn here."""

from __future__ import annotations

from tui.results.results_pane import subtitle_text


def test_the_border_names_what_the_view_skipped() -> None:
    assert subtitle_text(1200, 0, narrow=False) == "1,200 results"
    assert subtitle_text(1, 0, narrow=False) == "1 result"
    assert subtitle_text(1200, 123_456, narrow=False) == "1,200 results · 123k skipped to keep up"
    assert subtitle_text(1200, 123_456, narrow=True) == "1,200 results · 123k skipped"
    assert subtitle_text(0, 0, narrow=False) == ""


def test_the_border_says_what_share_of_the_results_was_decoded() -> None:
    """engine/console/sampling.py: at thousands a second the list is a sample; the count stays exact."""
    assert subtitle_text(40_000, 0, narrow=False, counted_only=30_000) == "40,000 results · 25% sampled"
    text = subtitle_text(1_000_000, 5, narrow=True, counted_only=999_000)
    assert text == "1,000,000 results · <1% sampled · 5 skipped"


def test_the_border_says_how_many_results_are_of_digits_drawn_here() -> None:
    """No publisher sent them: beside the Publisher's `sent 198`, `199 results · 1 drawn` adds up."""
    assert subtitle_text(199, 0, narrow=True, drawn=1) == "199 results · 1 drawn"
    assert subtitle_text(40_000, 3, narrow=True, counted_only=30_000, drawn=2) == \
        "40,000 results · 2 drawn · 25% sampled · 3 skipped"
