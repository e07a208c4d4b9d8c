"""Where the files read at run time live: package data of `engine`, found with importlib.resources.

`mosquitto.conf` (the embedded broker's config) and `assets/mnist_images/` (the bundled digits) sit at the
top of the repository, where the design card puts them and where operators and `make_assets` look. The
package reaches them through `engine/data/`, whose two entries are relative symbolic links to those files:

    engine/data/mosquitto.conf -> ../../mosquitto.conf
    engine/data/assets         -> ../../assets

A checkout or an editable install reads the top-level files through the links; a wheel carries copies of
them as package data of `engine.data` (`[tool.setuptools.package-data]` in pyproject.toml: setuptools copies what a link
points to), so an installed engine finds them inside itself, from any directory. The model weights
(engine/weights/) and the styles (tui/*.tcss) are package data too, found next to the code that reads them.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["DATA", "data_path"]

DATA = "data"  # engine.data: the package that holds (or links to) the run-time files


def data_path(name: str) -> Path:
    """The run-time file or folder `name` ("mosquitto.conf", "assets/mnist_images") as a path on disk.

    Links are resolved, so a checkout names its top-level files (in errors too). A name that does not
    exist is returned all the same, for the caller's error to name.
    """
    # The anchor is engine.data itself, a regular package: `engine` would be seen as a namespace package if
    # a folder of that name came first on sys.path (none does now; tests/ keeps no such folder).
    resource = resources.files(f"engine.{DATA}")
    for part in name.split("/"):
        resource = resource.joinpath(part)
    path = resource if isinstance(resource, Path) else Path(str(resource))
    return path.resolve()
