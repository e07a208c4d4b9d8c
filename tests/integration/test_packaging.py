"""A regular install (a wheel, not an editable one) carries every file read at run time and finds it.

The wheel is built offline from a copy of the source tree with the project's own backend
(setuptools.build_meta, as `pip wheel --no-build-isolation` would), then installed into a fresh
virtual environment, where `engine.datafiles` must find the broker config and the digits as package
data inside the installed engine (engine/data/), not in this checkout.
"""

from __future__ import annotations

import json
import shutil
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from engine.datafiles import DATA, data_path
from engine.digits.dataset import find_list_file, parse_list
from engine.mqtt.broker import default_config_path
from engine.settings import DEFAULT_DATASET, DEFAULT_WEIGHTS, MODEL_CARD

REPO = Path(__file__).resolve().parents[2]
ASSETS = REPO / "assets" / "mnist_images"
# What a build must not see: version control, virtual environments and earlier build output.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache"
)
BUILD = "import sys\nfrom setuptools import build_meta\nbuild_meta.build_wheel(sys.argv[1])\n"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("setuptools", minversion="77", reason="building the wheel needs setuptools>=77 (pyproject)")
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=NOT_SOURCE)
    out = tmp / "dist"
    done = subprocess.run(
        [sys.executable, "-c", BUILD, str(out)], cwd=src, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, f"wheel build failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_checkout_uses_its_own_files() -> None:
    """engine/data/ links to the top-level files: a checkout reads them, and names them in errors."""
    for name in ("mosquitto.conf", "assets"):
        link = REPO / "engine" / DATA / name
        assert link.is_symlink() and link.resolve() == REPO / name, f"{link} must link to the top-level {name}"
    assert data_path("mosquitto.conf") == REPO / "mosquitto.conf"
    assert default_config_path() == REPO / "mosquitto.conf"
    assert DEFAULT_DATASET == ASSETS
    assert data_path("assets/mnist_images/list.txt") == ASSETS / "list.txt"
    assert DEFAULT_WEIGHTS.is_file() and MODEL_CARD.is_file()


def test_wheel_metadata(wheel: Path) -> None:
    """An SPDX license with its text, and a textual bound below its next major (tui/chrome/footer.py uses internals)."""
    name, version = wheel.name.split("-")[:2]
    with zipfile.ZipFile(wheel) as zf:
        meta = zf.read(f"{name}-{version}.dist-info/METADATA").decode("utf-8")
        assert zf.read(f"{name}-{version}.dist-info/licenses/LICENSE") == (REPO / "LICENSE").read_bytes()
    lines = meta.splitlines()
    assert "License-Expression: MIT" in lines
    assert "License-File: LICENSE" in lines
    assert not any(line.startswith("Classifier: License ::") for line in lines), "PEP 639: the expression alone"
    textual = next(line for line in lines if line.startswith("Requires-Dist: textual") and "plotext" not in line)
    assert "<9" in textual and ">=1.0" in textual, textual
    assert "Provides-Extra: dev" in lines


def test_wheel_holds_every_run_time_file(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())

        def same(member: str, source: Path) -> None:
            assert member in names, f"{member} missing from {wheel.name}"
            assert zf.read(member) == source.read_bytes(), f"{member} differs from {source}"

        assert not any(".data/" in n for n in names), "run-time files are package data, not data-files"
        share = f"engine/{DATA}/"
        same(share + "mosquitto.conf", REPO / "mosquitto.conf")
        list_file = find_list_file(ASSETS)
        same(f"{share}assets/mnist_images/{list_file.name}", list_file)
        listed = [name for name, _ in parse_list(list_file.read_text(encoding="utf-8"))]
        assert len(listed) == len(list(ASSETS.glob("*.png"))) > 0
        for png in listed:
            same(f"{share}assets/mnist_images/{png}", ASSETS / png)
        same("engine/weights/lenet5.pt", DEFAULT_WEIGHTS)
        same("engine/weights/MODEL_CARD.md", MODEL_CARD)
        styles = sorted((REPO / "tui").rglob("*.tcss"))
        assert styles, "no .tcss found under tui/"
        for package in ("engine", "tui"):
            for source in [*(REPO / package).rglob("*.py"), *(REPO / package).rglob("*.tcss")]:
                if "__pycache__" not in source.parts:
                    assert source.relative_to(REPO).as_posix() in names, f"{source} missing from {wheel.name}"


# Runs in the fresh environment: the installed engine, its dependencies (if any get imported) from
# this interpreter's site-packages, appended last so they cannot shadow the installed packages.
PROBE = """
import json, sys
sys.path.extend(json.loads(sys.argv[1]))
import engine
from engine.mqtt.broker import default_config_path
from engine.datafiles import data_path
from engine.settings import DEFAULT_DATASET, DEFAULT_WEIGHTS
from engine.global_options import version
print(json.dumps({
    "version": version(),
    "engine": engine.__file__,
    "config": str(default_config_path()),
    "dataset": str(DEFAULT_DATASET),
    "assets": str(data_path("assets/mnist_images")),
    "weights": str(DEFAULT_WEIGHTS),
}))
"""


def test_installed_wheel_finds_its_files(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    done = subprocess.run(
        [str(python), "-c", PROBE, json.dumps(site.getsitepackages())],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = {key: Path(value) for key, value in json.loads(done.stdout).items()}
    assert str(found.pop("version")) == wheel.name.split("-")[1], "--version names the installed distribution"
    root = env_dir.resolve()
    share = Path(found["engine"]).resolve().parent / DATA  # inside the installed package
    assert found["engine"].resolve().is_relative_to(root), f"imported {found['engine']}, not the installed copy"
    assert not share.is_symlink() and not (share / "assets").is_symlink(), "copies, not links into the checkout"
    assert found["config"].resolve() == share / "mosquitto.conf"
    assert found["dataset"].resolve() == found["assets"].resolve() == share / "assets" / "mnist_images"
    assert (share / "mosquitto.conf").read_bytes() == (REPO / "mosquitto.conf").read_bytes()
    assert len(list((share / "assets" / "mnist_images").glob("*.png"))) == len(list(ASSETS.glob("*.png")))
    assert found["weights"].resolve().is_relative_to(root) and found["weights"].is_file()
