"""Paths built from outside input, confined to their directory."""

from __future__ import annotations

from pathlib import Path


def inside(base: Path, *parts: str) -> Path | None:
    """``base/parts...`` resolved (symbolic links followed), or None when that lands
    outside ``base``: ``..``, absolute parts and links out are all refused."""
    root = base.resolve()
    try:
        path = root.joinpath(*parts).resolve()
    except (OSError, ValueError):  # NUL bytes, loops
        return None
    return path if path.is_relative_to(root) and path != root else None


def opens_inside(path: str, base: str) -> bool:
    """Whether ``path``, opened as given (relative to the working directory, links
    followed), is inside ``base`` and is a regular file, or nothing yet (a file still to
    come; never a directory, device or pipe). Blocking (file system)."""
    try:
        target = Path(path).resolve()
        if not target.is_relative_to(Path(base).resolve()):
            return False
        return target.is_file() or not target.exists()
    except (OSError, ValueError):
        return False
