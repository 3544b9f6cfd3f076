"""Model files shipped inside vlm-monitor's own package (``vlm_monitor/models/``).

They are copied from the PyPI packages that publish them by ``scripts/vendor-models.py`` (those
packages would pull in TensorFlow or torch, and the server must download nothing at run time);
``models/README.md`` names each file's source, sha256 and licence.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def model_file(name: str) -> Path:
    resource = resources.files("vlm_monitor").joinpath("models", name)
    if not resource.is_file():
        raise RuntimeError(
            f"model file {name!r} is missing from vlm_monitor/models/: this installation of "
            "vlm-monitor is incomplete (reinstall it; a source checkout has the files in git, "
            "and scripts/vendor-models.py fetches them again)"
        )
    # The runtimes (LiteRT, onnxruntime) open a path themselves, so an installation whose
    # files are not on the file system (a zip import) cannot run the models.
    if not isinstance(resource, Path):
        raise RuntimeError(f"model file {name!r} is inside {resource}, not on the file system")
    return resource
