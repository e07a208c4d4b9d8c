"""The engine works without a screen: importing every engine module never loads textual."""

import subprocess
import sys

import pytest

CHECK = """
import importlib, pkgutil, sys
import engine
for info in pkgutil.walk_packages(engine.__path__, "engine."):
    if info.name.endswith("__main__"):
        continue
    importlib.import_module(info.name)
loaded = sorted(m for m in sys.modules if m == "textual" or m.startswith("textual.") or m.startswith("tui"))
print(",".join(loaded))
"""


@pytest.mark.slow
def test_engine_never_imports_textual() -> None:
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"engine pulled in: {done.stdout.strip()}"


def test_headless_cli_path_never_imports_textual() -> None:
    code = (
        "import sys; from tui.cli import main\n"
        "try:\n    main(['run', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(any(m == 'textual' or m.startswith('textual.') for m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("False"), done.stdout
