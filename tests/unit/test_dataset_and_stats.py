"""List files in the original demo's format, and the bounded statistics the roles report."""

from pathlib import Path

import pytest

from engine.digits.dataset import load_dataset, parse_list
from engine.errors import DatasetError
from engine.settings import DEFAULT_DATASET
from engine.stats import RateMeter, Window

PNG = Path(DEFAULT_DATASET, "0.png").read_bytes()  # a whole digit: a dataset's files are checked on load


def test_list_file_in_the_demo_format(tmp_path) -> None:
    (tmp_path / "0.png").write_bytes(PNG)
    (tmp_path / "1.png").write_bytes(PNG)
    (tmp_path / "list.txt").write_text("0.png 7\n1.png 2\n")
    samples = load_dataset(tmp_path)
    assert [(s.name, s.label) for s in samples] == [("0.png", 7), ("1.png", 2)]


def test_unknown_labels_blank_lines_and_comments() -> None:
    assert parse_list("# digits\n\na.png -\nb.png\nc.png 0\n") == [("a.png", None), ("b.png", None), ("c.png", 0)]


@pytest.mark.parametrize(
    ("files", "listing", "message"),
    [
        ({}, None, "no list file"),
        ({"0.png": PNG}, "0.png 12\n", "line 1"),
        ({}, "0.png 1\n", "0.png: cannot read it"),
        ({"0.png": b"GIF89a"}, "0.png 1\n", "not a PNG"),
        ({}, "# nothing\n", "names no images"),
    ],
)
def test_bad_datasets_give_one_line(tmp_path, files, listing, message) -> None:
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    if listing is not None:
        (tmp_path / "list.txt").write_text(listing)
    with pytest.raises(DatasetError, match=message) as info:
        load_dataset(tmp_path)
    assert "\n" not in str(info.value)


def test_missing_folder(tmp_path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(tmp_path / "nope")


def test_window_percentiles_are_ordered_and_bounded() -> None:
    w = Window(size=100)
    for v in range(1000):
        w.add(float(v))
    assert len(w) == 100
    p = w.percentiles((50, 90, 99))
    assert 900 <= p["p50"] <= p["p90"] <= p["p99"] <= p["max"] == 999


def test_rate_meter_counts_recent_events_only() -> None:
    meter = RateMeter(window=1.0, bucket=0.25)
    meter.add(100, now=10.0)
    assert meter.rate(now=10.1) > 0
    assert meter.rate(now=20.0) == 0
