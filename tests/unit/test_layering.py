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


def test_no_test_folder_shadows_a_package_of_the_product() -> None:
    """pytest puts the test folders on sys.path; a folder named like `engine` or `tui` there would make
    that name an empty namespace package under pytest (its __init__ never run, its resources the tests')."""
    import engine
    import tui

    assert engine.__file__ is not None and tui.__file__ is not None, (list(engine.__path__), list(tui.__path__))
