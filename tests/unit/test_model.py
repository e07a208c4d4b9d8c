"""engine.digits.model, the bundled digits and engine.training.train: real weights, real files, no mocks."""

from __future__ import annotations

import argparse
import collections
import gzip
import hashlib
import io
import os
import pickle
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.digits.dataset import load_dataset
from engine.digits.make_assets import ASSETS_DIR, HELD_OUT_PER_CLASS, LIST_FILE, split_sample
from engine.digits.model import DEFAULT_WEIGHTS, MODEL_CARD, LeNet5, LoadedModel, card_accuracy, load_model, max_pool2
from engine.digits.preprocess import decode_png, encode_png
from engine.errors import DatasetError, ModelError
from engine.settings import DEFAULT_DATASET


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return load_model()


@pytest.fixture(scope="module")
def assets() -> tuple[list[str], np.ndarray]:
    """(file names, labels) from the list file, parsed as the original demo does."""
    lines = (ASSETS_DIR / LIST_FILE).read_text(encoding="ascii").splitlines(keepends=True)
    return [line[:-3] for line in lines], np.array([int(line[-2]) for line in lines])


def test_shipped_weights_load(model):
    digest = hashlib.sha256(DEFAULT_WEIGHTS.read_bytes()).hexdigest()[:8]
    assert model.name == f"lenet5@{digest}"
    assert model.kind == "state_dict" and not model.module.training
    assert DEFAULT_WEIGHTS.stat().st_size < 400_000
    assert sum(p.numel() for p in model.module.parameters()) == 44_426


def test_predict_gives_probabilities(model):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    probs = model.predict(images)
    assert probs.dtype == np.float32 and probs.shape == (5, 10)
    assert np.allclose(probs.sum(1), 1, atol=1e-5) and (probs >= 0).all()
    assert model.predict(np.zeros((0, 28, 28), np.uint8)).shape == (0, 10)
    with pytest.raises(ValueError):
        model.predict(np.zeros((2, 28, 28), np.float32))
    with pytest.raises(ValueError):
        model.predict(np.zeros((28, 28), np.uint8))


def test_fast_pooling_matches_max_pool2d():
    x = torch.randn(3, 6, 24, 24)
    assert torch.equal(max_pool2(x), torch.nn.functional.max_pool2d(x, 2))


def test_list_file_is_in_the_seed_format(assets):
    names, labels = assets
    raw = (ASSETS_DIR / LIST_FILE).read_bytes()
    assert raw.endswith(b"\n") and b"\r" not in raw
    assert len(names) >= 1000 and names == [f"{i}.png" for i in range(len(names))]
    assert np.bincount(labels, minlength=10).tolist() == [HELD_OUT_PER_CLASS] * 10
    assert sorted(p.name for p in ASSETS_DIR.glob("*.png")) == sorted(names)


def test_asset_files_are_mnist_pngs_reproducible_from_their_pixels(assets):
    names, _ = assets
    for name in names[::50]:
        payload = (ASSETS_DIR / name).read_bytes()
        with Image.open(io.BytesIO(payload)) as img:
            assert img.format == "PNG" and img.mode == "L" and img.size == (28, 28)
            pixels = np.asarray(img)
        assert pixels.max() > 128 and np.median(pixels) == 0  # white digit on black
        assert encode_png(pixels) == payload  # the writer is deterministic: make_assets reproduces these bytes


def test_split_is_fixed_stratified_and_disjoint():
    labels = np.repeat(np.arange(10), 500)
    train, held = split_sample(labels)
    train2, held2 = split_sample(labels)
    assert np.array_equal(train, train2) and np.array_equal(held, held2)
    assert len(held) == 10 * HELD_OUT_PER_CLASS and len(train) + len(held) == len(labels)
    assert not set(train) & set(held)
    assert np.bincount(labels[held]).tolist() == [HELD_OUT_PER_CLASS] * 10
    assert not np.array_equal(split_sample(labels, seed=1)[1], held)


def test_accuracy_on_the_bundled_digits_matches_the_card(model, assets):
    names, labels = assets
    images = np.stack([decode_png((ASSETS_DIR / name).read_bytes()) for name in names])
    accuracy = float((model.predict(images).argmax(1) == labels).mean() * 100)
    assert accuracy >= card_accuracy(MODEL_CARD) - 0.5
    assert card_accuracy(MODEL_CARD) >= 98.5


# ---------------------------------------------------------------- model files that must be refused


def _assert_one_line(exc: pytest.ExceptionInfo[ModelError], *words: str) -> None:
    message = str(exc.value)
    assert "\n" not in message and "Traceback" not in message and len(message) < 300
    for word in words:
        assert word in message, message


def _save(obj: object, path: Path) -> Path:
    torch.save(obj, path)
    return path


def test_missing_empty_and_corrupt_files(tmp_path):
    with pytest.raises(ModelError) as exc:
        load_model(tmp_path / "nope.pt")
    _assert_one_line(exc, "not found")
    with pytest.raises(ModelError) as exc:
        load_model(tmp_path)
    _assert_one_line(exc, "directory")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ModelError) as exc:
        load_model(tmp_path / "empty.pt")
    _assert_one_line(exc, "empty")
    (tmp_path / "random.pt").write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(ModelError) as exc:
        load_model(tmp_path / "random.pt")
    _assert_one_line(exc, "not a PyTorch state_dict")
    (tmp_path / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")  # said what torch raised on it
    with pytest.raises(ModelError) as exc:
        load_model(tmp_path / "passwd")
    _assert_one_line(exc, "neither a zip archive nor a pickle")
    assert "index" not in str(exc.value)
    data = DEFAULT_WEIGHTS.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError) as exc:
        load_model(tmp_path / "cut.pt")
    _assert_one_line(exc, "cut.pt")


def test_wrong_state_dicts(tmp_path):
    good = LeNet5().state_dict()
    wrong_shape = dict(good, **{"fc1.weight": torch.zeros(120, 400)})  # the padded LeNet-5's fc1
    with pytest.raises(ModelError) as exc:
        load_model(_save(wrong_shape, tmp_path / "shape.pt"))
    _assert_one_line(exc, "fc1.weight", "(120, 400)", "(120, 256)")
    renamed = {k.replace("conv", "c"): v for k, v in good.items()}
    with pytest.raises(ModelError) as exc:
        load_model(_save(renamed, tmp_path / "keys.pt"))
    _assert_one_line(exc, "missing conv1.weight")
    with pytest.raises(ModelError) as exc:
        load_model(_save(torch.zeros(3), tmp_path / "tensor.pt"))
    _assert_one_line(exc, "not a state_dict")
    nan = dict(good, **{"fc3.bias": torch.full((10,), float("nan"))})
    with pytest.raises(ModelError) as exc:
        load_model(_save(nan, tmp_path / "nan.pt"))
    _assert_one_line(exc, "non-finite")


def test_wrapped_state_dict_loads(tmp_path):
    good = load_model().module.state_dict()
    wrapped = {"epoch": 3, "model_state_dict": {f"module.{k}": v for k, v in good.items()}}
    loaded = load_model(_save(wrapped, tmp_path / "ckpt.pt"))
    images = np.stack([decode_png((ASSETS_DIR / f"{i}.png").read_bytes()) for i in range(8)])
    assert np.allclose(loaded.predict(images), load_model().predict(images))


def test_pickled_module_is_refused_without_running_it(tmp_path):
    with pytest.raises(ModelError) as exc:
        load_model(_save(LeNet5(), tmp_path / "model.pkl"))
    _assert_one_line(exc, "refused", "engine.digits.model.LeNet5", "state_dict")
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps(LeNet5()))
    with pytest.raises(ModelError) as exc:
        load_model(tmp_path / "plain.pkl")
    _assert_one_line(exc, "refused", "LeNet5")


class _Flat(torch.nn.Module):
    def __init__(self, classes: int) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(784, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def _torchscript(module: torch.nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(module), str(path))
    return path


def test_every_refused_pickle_gets_our_own_line(tmp_path):
    """A torch.save archive of objects and a protocol-0 pickle: our message, never torch's weights_only hint."""
    (tmp_path / "p0.pkl").write_bytes(pickle.dumps(LeNet5(), protocol=0))
    archive = _save({"fc1.weight": torch.zeros(1), "extra": collections.OrderedDict(a=_Flat(2))}, tmp_path / "a.pt")
    for path in (tmp_path / "p0.pkl", archive):
        with pytest.raises(ModelError) as exc:
            load_model(path)
        _assert_one_line(exc, "refused", "would run code")
        assert "weights_only" not in str(exc.value)


def test_torchscript_needs_the_explicit_flag(tmp_path):
    path = _torchscript(_Flat(10), tmp_path / "flat.pt")
    with pytest.raises(ModelError) as exc:
        load_model(path)
    _assert_one_line(exc, "TorchScript", "runs code from the file", "--allow-torchscript")
    assert load_model(path, allow_torchscript=True).kind == "torchscript"


def test_torchscript_models(tmp_path):
    loaded = load_model(_torchscript(_Flat(10), tmp_path / "flat.pt"), allow_torchscript=True)
    assert loaded.kind == "torchscript" and loaded.name.startswith("flat@")
    assert loaded.predict(np.zeros((3, 28, 28), np.uint8)).shape == (3, 10)
    with pytest.raises(ModelError) as exc:
        load_model(_torchscript(_Flat(5), tmp_path / "five.pt"), allow_torchscript=True)
    _assert_one_line(exc, "(2, 5)", "expected (2, 10)")
    shipped = load_model()
    scripted = load_model(_torchscript(shipped.module, tmp_path / "lenet.pt"), allow_torchscript=True)
    images = np.stack([decode_png((ASSETS_DIR / f"{i}.png").read_bytes()) for i in range(8)])
    assert np.allclose(scripted.predict(images), shipped.predict(images), atol=1e-6)


# ---------------------------------------------------------------- training (tiny, from IDX files)


def _write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def test_train_from_idx_files_writes_loadable_weights_and_a_card(tmp_path, assets, capsys):
    from engine.training import train
    names, labels = assets
    images = np.stack([np.asarray(Image.open(ASSETS_DIR / name)) for name in names[:300]])
    idx = tmp_path / "mnist"
    idx.mkdir()
    _write_idx(idx / "train-images-idx3-ubyte.gz", images[:200], gz=True)
    _write_idx(idx / "train-labels-idx1-ubyte", labels[:200], gz=False)
    _write_idx(idx / "t10k-images-idx3-ubyte", images[200:], gz=False)
    _write_idx(idx / "t10k-labels-idx1-ubyte.gz", labels[200:300], gz=True)
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    out = tmp_path / "tiny.pt"
    args = parser.parse_args(["--idx", str(idx), "--epochs", "1", "--no-bench", "--out", str(out)])
    threads = torch.get_num_threads()
    assert train.run(args) == 0
    assert torch.get_num_threads() == threads and not torch.are_deterministic_algorithms_enabled()
    loaded = load_model(out)
    assert loaded.name.startswith("lenet5@")
    card = out.with_suffix(".md").read_text()
    assert f"# Model card: {loaded.name}" in card and "--idx" in card
    assert 0 <= card_accuracy(out.with_suffix(".md")) <= 100
    assert "100 MNIST test digits" in card

    (idx / "t10k-labels-idx1-ubyte.gz").unlink()
    capsys.readouterr()
    assert train.run(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("mnist-tui: ") and "t10k-labels-idx1-ubyte" in err and "\n" not in err


@pytest.mark.parametrize("kind", ["device", "fifo", "directory"])
def test_a_model_or_list_file_that_is_not_a_regular_file_is_refused_at_once(tmp_path: Path, kind: str) -> None:
    """A model path can come from the broker (`load`): /dev/zero was read until memory ran out, and a named pipe
    with no writer would wait for ever. The dataset's list file is read the same way."""
    if kind == "device":
        path = Path("/dev/zero")
    elif kind == "fifo":
        path = tmp_path / "pipe"
        os.mkfifo(path)
    else:
        path = tmp_path
    with pytest.raises(ModelError) as model_err:
        load_model(path)
    with pytest.raises(DatasetError) as list_err:
        load_dataset(DEFAULT_DATASET, path)
    why = "a directory" if kind == "directory" else "not a regular file"
    assert why in str(model_err.value) and why in str(list_err.value)
    assert "\n" not in str(model_err.value) + str(list_err.value)
