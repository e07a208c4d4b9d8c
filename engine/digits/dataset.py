"""A folder of PNG digits with a list file in the original demo's format: `<file> <label>` per line."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from engine.bounded_read import read_regular
from engine.errors import DatasetError
from engine.protocol import PNG_SIGNATURE

log = logging.getLogger(__name__)

PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the IEND chunk that the image metadata goes before

MAX_LIST_BYTES = 64 * 1024 * 1024  # a list file of a million lines is about 20 MB
LIST_NAMES = ("list.txt", "labels.txt", "mnist_images.txt")


@dataclass(frozen=True)
class Sample:
    name: str
    label: int | None
    png: bytes


def find_list_file(folder: Path) -> Path:
    for name in LIST_NAMES:
        if (folder / name).is_file():
            return folder / name
    candidates = sorted(folder.glob("*.txt"))
    if len(candidates) == 1:
        return candidates[0]
    raise DatasetError(f"no list file in {folder} (expected {LIST_NAMES[0]} with lines like '0.png 7')")


def parse_list(text: str, source: str = "list file") -> list[tuple[str, int | None]]:
    """Lines `<file> <label>` (label 0-9, or `-` / missing for unknown); blank lines and #comments skipped."""
    entries: list[tuple[str, int | None]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        parts = stripped.rsplit(None, 1)
        if len(parts) == 1:
            entries.append((parts[0], None))
            continue
        name, label = parts
        if label == "-":
            entries.append((name, None))
        elif label.isdigit() and len(label) == 1:
            entries.append((name, int(label)))
        else:
            raise DatasetError(f"{source} line {number}: expected '<file> <digit>', got {stripped[:60]!r}")
    return entries


class Samples(list[Sample]):
    """The usable images of a dataset, and what was skipped: `skipped` holds "<file>: <why>" lines."""

    def __init__(self, samples: list[Sample], skipped: list[str]) -> None:
        super().__init__(samples)
        self.skipped = skipped


def check_png(png: bytes) -> str | None:
    """Why `png` cannot be published as an image, or None: it must be a whole PNG that decodes."""
    from engine.digits.preprocess import ImageError, decode_png  # numpy and Pillow only when a dataset is read

    if not png.startswith(PNG_SIGNATURE):
        return "not a PNG file"
    if not png.endswith(PNG_END):
        return "not a whole PNG (no IEND chunk at its end: truncated?)"
    try:
        decode_png(png)
    except ImageError as exc:
        return str(exc)
    return None


def load_dataset(folder: Path | str, list_file: Path | str | None = None) -> Samples:
    """Read every listed PNG into memory (MNIST digits are ~300 bytes each).

    A file that cannot be read or is not a whole, decodable PNG is skipped with one warning naming it and
    why (and listed in `skipped`); DatasetError when the folder or list file is unusable or no image is.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"dataset {folder} is a file, not a folder of images" if folder.exists()
                           else f"dataset folder not found: {folder}")
    path = Path(list_file) if list_file else find_list_file(folder)
    if not path.is_absolute() and not path.is_file():
        path = folder / path
    try:
        text = read_regular(path, MAX_LIST_BYTES).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read list file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    entries = parse_list(text, source=str(path))
    if not entries:
        raise DatasetError(f"list file {path} names no images")
    samples = []
    skipped: list[str] = []
    for name, label in entries:
        file = folder / name
        try:
            png = file.read_bytes()
        except OSError as exc:
            why: str | None = f"cannot read it: {exc.strerror}"
        else:
            why = check_png(png)
        if why is not None:
            skipped.append(f"{name}: {why}")
            log.warning("dataset %s: skipped %s: %s", folder, name, why)
            continue
        samples.append(Sample(name=name, label=label, png=png))
    if not samples:
        first = f" (first: {skipped[0]})" if skipped else ""
        raise DatasetError(f"{path}: none of the {len(entries)} listed images is usable{first}")
    return Samples(samples, skipped)
