"""A stream's reference picture (``reference_frame``: the scene when nothing is happening),
read from its file. Blocking (disk, decoding): call at load time or from a thread."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def read_reference(path: str) -> np.ndarray:
    """BGR pixels of the picture at ``path``; ValueError saying why it cannot be used."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"{path!r} is not a file")
    # imdecode, not imread: imread says nothing about why it failed, and reads no non-ASCII
    # paths on some platforms.
    pixels = cv2.imdecode(np.fromfile(file, np.uint8), cv2.IMREAD_COLOR)
    if pixels is None:
        raise ValueError(f"{path!r} is not a picture OpenCV can decode (JPEG, PNG, ...)")
    return pixels
