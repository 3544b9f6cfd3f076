"""OCR with Tesseract (the OS package), through its command line: one process per call keeps
a crash or hang in Tesseract out of the server, and at OCR's low rate the ~0.1 s start-up
does not matter."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from vlm_monitor.geometry import Placement


class OcrUnavailableError(RuntimeError):
    pass


@dataclass(frozen=True)
class Word:
    text: str
    confidence: float  # 0..100
    box: tuple[int, int, int, int]  # x, y, width, height in the image Tesseract read


def tesseract_path() -> str:
    path = shutil.which("tesseract")
    if path is None:
        raise OcrUnavailableError(
            "the ocr analyzer needs Tesseract: apt install tesseract-ocr (make test installs it)"
        )
    return path


def read_words(
    image: np.ndarray, lang: str = "eng", psm: int = 6, timeout_s: float = 10.0
) -> list[Word]:
    """Words Tesseract finds in a BGR image, in reading order. Blocking."""
    ok, png = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    proc = subprocess.run(
        [tesseract_path(), "stdin", "stdout", "-l", lang, "--psm", str(psm), "tsv"],
        input=png.tobytes(),
        capture_output=True,
        timeout=timeout_s,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"tesseract failed: {proc.stderr.decode(errors='replace').strip()}")
    words = []
    rows = csv.DictReader(io.StringIO(proc.stdout.decode()), delimiter="\t", quoting=csv.QUOTE_NONE)
    for row in rows:
        text = (row.get("text") or "").strip()
        if not text or row.get("level") != "5":
            continue
        box = (int(row["left"]), int(row["top"]), int(row["width"]), int(row["height"]))
        words.append(Word(text, float(row["conf"]), box))
    return words


def read_text(
    image: np.ndarray,
    placement: Placement,
    roi: tuple[int, int, int, int] | None = None,
    *,
    lang: str = "eng",
    psm: int = 6,
    timeout_s: float = 10.0,
    min_confidence: float = 0.0,
) -> dict[str, Any]:
    """The ``ocr`` payload of the analyzer and the flow node alike: ``text, confidence,
    words[{text, confidence, box, box_norm}]``. ``roi`` and the boxes are in displayed source
    pixels (boxes relative to the whole picture, not to the region). Blocking."""
    if roi is not None:
        x, y, w, h = placement.to_image(roi)
        if w == 0 or h == 0:
            sw, sh = placement.source
            raise ValueError(f"ocr roi {list(roi)} is outside the {sw}x{sh} picture")
        image = image[y : y + h, x : x + w]
        placement = placement.cropped(x, y)
    words = [w for w in read_words(image, lang, psm, timeout_s) if w.confidence >= min_confidence]
    return {
        "text": " ".join(w.text for w in words),
        "confidence": round(sum(w.confidence for w in words) / len(words), 1) if words else 0.0,
        "words": [
            {"text": w.text, "confidence": w.confidence, **placement.box_fields(w.box)}
            for w in words
        ],
    }
