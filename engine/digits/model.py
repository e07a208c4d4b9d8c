"""The digit model: a LeNet-5-style CNN, its shipped weights, and safe loading of other model files.

`load_model()` loads the shipped state_dict; `load_model(path)` takes a state_dict of the same
architecture, or a TorchScript file when the caller allows it (`--allow-torchscript`): a TorchScript
file is a program, and loading it runs code from the file. Nothing here ever unpickles code: state_dicts
are read with `torch.load(..., weights_only=True)`, which refuses pickled objects, and we say so in one
line of our own.

`python -m engine.digits.model --bench` measures the forward speed quoted in the model card.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import pickletools
import re
import statistics
import sys
import time
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from engine.bounded_read import read_regular
from engine.errors import ModelError
from engine.settings import DEFAULT_WEIGHTS, MODEL_CARD

__all__ = [
    "BenchResult",
    "DEFAULT_WEIGHTS",
    "INPUT_MEAN",
    "INPUT_STD",
    "LeNet5",
    "LoadedModel",
    "MODEL_CARD",
    "benchmark",
    "card_accuracy",
    "load_model",
    "to_input_tensor",
]

ARCH_NAME = "lenet5"
MAX_MODEL_BYTES = 256 * 1024 * 1024  # LeNet-5 is 250 KB; a TorchScript file of a larger net still fits

# Input normalization (the usual MNIST statistics): x = (pixel / 255 - INPUT_MEAN) / INPUT_STD.
INPUT_MEAN = 0.1307
INPUT_STD = 0.3081
_SCALE = 1.0 / (255.0 * INPUT_STD)
_SHIFT = INPUT_MEAN / INPUT_STD


def max_pool2(x: torch.Tensor) -> torch.Tensor:
    """2x2 max pooling with stride 2 (same values as F.max_pool2d(x, 2) for even sizes).

    Written as two elementwise maxima because that is several times faster than max_pool2d on
    small CPU tensors with one thread, and pooling would otherwise dominate the forward pass.
    """
    n, c, h, w = x.shape
    rows = x.reshape(n, c, h // 2, 2 * w)
    r = torch.maximum(rows[..., :w], rows[..., w:])
    return torch.maximum(r[..., 0::2], r[..., 1::2])


class LeNet5(nn.Module):
    """LeNet-5 on 28x28 input without padding: conv5-pool-conv5-pool-fc120-fc84-fc10, ReLU.

    (N, 1, 28, 28) normalized input -> (N, 10) logits. 44,426 parameters.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)  # 6x24x24 -> pool 6x12x12
        self.conv2 = nn.Conv2d(6, 16, 5)  # 16x8x8 -> pool 16x4x4
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = max_pool2(self.conv1(x)).relu_()
        x = max_pool2(self.conv2(x)).relu_()
        x = self.fc1(x.flatten(1)).relu_()
        x = self.fc2(x).relu_()
        return self.fc3(x)


def to_input_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) white-on-black -> normalized float32 (N, 1, 28, 28) tensor."""
    a = np.asarray(images)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[1:] != (28, 28):
        raise ValueError(f"expected uint8 images of shape (N, 28, 28), got {a.dtype} {a.shape}")
    x = np.multiply(a, np.float32(_SCALE), dtype=np.float32)
    x -= np.float32(_SHIFT)
    return torch.from_numpy(x).unsqueeze(1)


class LoadedModel:
    """A model ready for inference: `.name`, `.module` (eval mode), `.predict(images)`."""

    def __init__(self, name: str, module: nn.Module, path: Path, kind: str) -> None:
        self.name = name
        self.module = module
        self.path = path
        self.kind = kind  # "state_dict" or "torchscript"

    def __repr__(self) -> str:
        return f"LoadedModel({self.name!r}, {self.kind}, {str(self.path)!r})"

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Softmax probabilities, float32 (N, 10), for uint8 (N, 28, 28) white-on-black images."""
        x = to_input_tensor(images)
        if x.shape[0] == 0:
            return np.zeros((0, 10), np.float32)
        with torch.inference_mode():
            return torch.softmax(self.module(x).float(), dim=1).numpy()


def _fail(path: Path, why: str) -> ModelError:
    return ModelError(f"model {path}: {why}")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _is_torchscript(data: bytes) -> bool:
    if not zipfile.is_zipfile(io.BytesIO(data)):
        return False
    try:
        names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def _pickled_global(data: bytes, message: str) -> str | None:
    """The first class/function a pickle wants to import, if that is why it was refused."""
    match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", message)
    if match:
        return match.group(1)
    if zipfile.is_zipfile(io.BytesIO(data)):  # a torch.save archive: its pickle is <name>/data.pkl
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
                data = archive.read(pickles[0]) if pickles else b""
        except (zipfile.BadZipFile, OSError, ValueError, KeyError):
            return None
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(data):  # reads opcodes, executes nothing
            if op.name == "GLOBAL":
                return str(arg).replace(" ", ".")
            if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
                strings = [*strings[-1:], str(arg)]
            elif op.name == "STACK_GLOBAL" and len(strings) == 2:
                return ".".join(strings)
    except Exception:
        return None
    return None


def _unwrap_state_dict(obj: object) -> Mapping[str, object] | None:
    if not isinstance(obj, Mapping):
        return None
    for key in ("state_dict", "model_state_dict", "model"):
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner and all(isinstance(k, str) for k in inner):
            obj = inner
            break
    if not all(isinstance(k, str) for k in obj):
        return None
    if obj and all(k.startswith("module.") for k in obj):  # saved from DataParallel
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj


def _load_state_dict(path: Path, data: bytes) -> nn.Module:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's notes about pickle protocols
            obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        message = str(exc)
        wanted = _pickled_global(data, message)
        if wanted is not None:
            raise _fail(
                path,
                f"refused: a pickled Python object (it imports {wanted}), not a state_dict; "
                "unpickling it would run code. Save model.state_dict() instead",
            ) from None
        if "weights_only" in message:  # torch's text would advise weights_only=False: never
            raise _fail(path, "not a PyTorch state_dict or TorchScript file (not readable as plain tensors)") from None
        if not data.startswith((b"PK\x03\x04", b"\x80")):  # torch.save writes a zip archive (a pickle before 1.6)
            # torch's own words about a text file are an IndexError's or an invalid load key's
            raise _fail(path, "not a PyTorch state_dict or TorchScript file (neither a zip archive nor a pickle)") \
                from None
        raise _fail(path, f"not a PyTorch state_dict or TorchScript file ({_one_line(exc)})") from None
    state = _unwrap_state_dict(obj)
    if state is None:
        raise _fail(path, f"holds a {type(obj).__name__}, not a state_dict (a dict of tensors)")
    model = LeNet5()
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else ""))
        if extra:
            parts.append("unexpected " + ", ".join(extra[:3]) + (" ..." if len(extra) > 3 else ""))
        raise _fail(path, f"not a {ARCH_NAME} state_dict: {'; '.join(parts)}")
    for key, ref in expected.items():
        value = state[key]
        if not isinstance(value, torch.Tensor):
            raise _fail(path, f"{key} is a {type(value).__name__}, not a tensor")
        if tuple(value.shape) != tuple(ref.shape):
            raise _fail(path, f"{key} has shape {tuple(value.shape)}, expected {tuple(ref.shape)}")
        if not value.is_floating_point():
            raise _fail(path, f"{key} holds {value.dtype}, not floating-point weights")
    model.load_state_dict({k: state[k] for k in expected})
    return model


def _load_torchscript(path: Path, data: bytes) -> nn.Module:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated, still works
            return torch.jit.load(io.BytesIO(data), map_location="cpu")
    except Exception as exc:
        raise _fail(path, f"TorchScript file does not load ({_one_line(exc)})") from None


def _check_forward(path: Path, module: nn.Module) -> None:
    """A dummy batch must come back as finite (N, 10) scores."""
    x = to_input_tensor(np.zeros((2, 28, 28), np.uint8))
    try:
        with torch.inference_mode():
            y = module(x)
    except Exception as exc:
        raise _fail(path, f"fails on a (N, 1, 28, 28) batch: {_one_line(exc)}") from None
    if not isinstance(y, torch.Tensor):
        raise _fail(path, f"returns a {type(y).__name__}, not a tensor of class scores")
    if tuple(y.shape) != (2, 10):
        raise _fail(path, f"maps (2, 1, 28, 28) to {tuple(y.shape)}, expected (2, 10): not a 10-class model")
    if not y.is_floating_point() or not bool(torch.isfinite(y).all()):
        raise _fail(path, "gives non-finite or non-float scores")


def load_model(path: str | Path | None = None, *, allow_torchscript: bool = False) -> LoadedModel:
    """Load the shipped weights (path None), a state_dict of LeNet5, or a TorchScript file.

    A TorchScript file is loaded only with `allow_torchscript`: it runs code from the file.

    The module receives normalized input, (pixel / 255 - INPUT_MEAN) / INPUT_STD, shaped
    (N, 1, 28, 28), and should return (N, 10) logits (log-probabilities work too).
    Raises ModelError with a one-line reason when the file cannot be used.
    """
    p = Path(path) if path is not None else DEFAULT_WEIGHTS
    try:
        data = read_regular(p, MAX_MODEL_BYTES)  # the path may come from the broker (`load`): no device, no pipe
    except FileNotFoundError:
        raise _fail(p, "file not found") from None
    except OSError as exc:
        raise _fail(p, f"cannot read ({exc.strerror or _one_line(exc)})") from None
    if not data:
        raise _fail(p, "empty file")
    digest = hashlib.sha256(data).hexdigest()[:8]
    if _is_torchscript(data):
        if not allow_torchscript:
            raise _fail(p, "is a TorchScript file, a program: loading it runs code from the file. "
                           "Pass --allow-torchscript if you trust it")
        module = _load_torchscript(p, data)
        kind, stem = "torchscript", re.sub(r"[^A-Za-z0-9_.-]", "_", p.stem) or "model"
    else:
        module = _load_state_dict(p, data)
        kind, stem = "state_dict", ARCH_NAME
    module.eval()
    _check_forward(p, module)
    return LoadedModel(f"{stem}@{digest}", module, p, kind)


def card_accuracy(card: str | Path = MODEL_CARD) -> float:
    """The held-out accuracy (percent) written in a model card."""
    text = Path(card).read_text(encoding="utf-8")
    match = re.search(r"Held-out accuracy: \*\*([0-9.]+)%\*\*", text)
    if match is None:
        raise ValueError(f"{card}: no 'Held-out accuracy: **NN.NN%**' line")
    return float(match.group(1))


class BenchResult(NamedTuple):
    """Forward speed in images/s: best and median wall-clock round, and per CPU-second of the thread."""

    best: float
    median: float
    cpu: float

    def __str__(self) -> str:
        return f"{self.best:,.0f} images/s (median {self.median:,.0f}; {self.cpu:,.0f} per CPU-second)"


def set_threads(threads: int) -> None:
    """Give torch `threads` intra-op threads for inference in this process.

    With one thread (the worker's default) the convolutions run on torch's own kernels instead of
    oneDNN's: for LeNet-5's small convolutions oneDNN's per-call setup costs more than it saves, on the
    2-core reference machine at every batch size (median forward pass at batch 1 / 8 / 64: 569 / 781 /
    2,368 us with oneDNN, 312 / 616 / 2,054 us without; six interleaved rounds of 100). With more
    threads torch's default stays.
    """
    torch.set_num_threads(threads)
    torch.backends.mkldnn.enabled = threads > 1  # type: ignore[assignment]  # a ContextProp: assignment sets it


def benchmark(
    model: LoadedModel, batch: int = 64, threads: int = 1, seconds: float = 1.0, repeats: int = 5
) -> BenchResult:
    """Images per second through `model.predict` (normalization and softmax included).

    Runs `repeats` timed rounds of about `seconds` each on random digit-like input with
    `torch.set_num_threads(threads)` (restored afterwards). On a shared machine the best round is
    the one least disturbed by other work; the CPU-time rate (threads=1 computes in the calling
    thread) does not count time the thread spent waiting for a core at all.
    """
    rng = np.random.default_rng(0)
    images = (rng.random((batch, 28, 28)) < 0.2).astype(np.uint8) * 255
    before = torch.get_num_threads(), torch.backends.mkldnn.enabled
    set_threads(threads)
    try:
        for _ in range(20):
            model.predict(images)
        rates, cpu_rates = [], []
        for _ in range(repeats):
            n, start, cpu_start = 0, time.perf_counter(), time.thread_time()
            while (elapsed := time.perf_counter() - start) < seconds:
                model.predict(images)
                n += 1
            rates.append(n * batch / elapsed)
            cpu_rates.append(n * batch / max(time.thread_time() - cpu_start, 1e-9))
        return BenchResult(max(rates), statistics.median(rates), max(cpu_rates))
    finally:
        torch.set_num_threads(before[0])
        torch.backends.mkldnn.enabled = before[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.digits.model", description=__doc__.splitlines()[0])
    parser.add_argument("--bench", action="store_true", help="measure forward speed (predict) and exit")
    parser.add_argument("--model", default=None, help="model file (default: the shipped weights)")
    parser.add_argument("--allow-torchscript", action="store_true",
                        help="accept a TorchScript model file (it runs code from the file)")
    parser.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--seconds", type=float, default=1.0, help="length of each timed round")
    args = parser.parse_args(argv)
    try:
        model = load_model(args.model, allow_torchscript=args.allow_torchscript)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not args.bench:
        print(f"{model.name} ({model.kind}) from {model.path}")
        return 0
    result = benchmark(model, batch=args.batch, threads=args.threads, seconds=args.seconds)
    plural = "thread" if args.threads == 1 else "threads"
    print(
        f"{model.name}: {result} at batch {args.batch} with {args.threads} {plural}; "
        f"predict(): uint8 in, probabilities out; best of 5 rounds of {args.seconds:g} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
