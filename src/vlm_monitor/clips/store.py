"""Clip files: one directory per stream, MP4 written with PyAV, bounded by age and size.

Writing is refused (``DiskFullError``) while free space is under ``min_free_mb``; the
processor pauses and reports instead of crashing. Transient write errors are retried.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
import uuid
from fractions import Fraction
from pathlib import Path

import av

from vlm_monitor.clips.types import FrameData

log = logging.getLogger("vlm_monitor.clips")


class DiskFullError(OSError):
    pass


def require_free(root: Path, min_free_mb: float) -> None:
    """Raises ``DiskFullError``, saying how short, while the file system holding ``root`` has
    less than ``min_free_mb`` free. Blocking (statvfs)."""
    free = shutil.disk_usage(root).free / 1e6
    if free < min_free_mb:
        raise DiskFullError(
            f"disk short: only {free:.0f} MB free under {root}, "
            f"{min_free_mb:.0f} MB needed (min_free_mb)"
        )


def prune_oldest(files: list[Path], max_age_s: float, max_total_mb: float) -> list[Path]:
    """Deletes, from ``files`` (oldest first), those older than ``max_age_s`` and the oldest
    while all of them together are over ``max_total_mb``; returns those deleted. Files that
    vanish meanwhile (another pruner) are skipped. Blocking."""
    now = time.time()
    stats = {}
    for p in files:
        with contextlib.suppress(FileNotFoundError):
            stats[p] = p.stat()
    total = sum(st.st_size for st in stats.values()) / 1e6
    removed = []
    for p, st in stats.items():
        if now - st.st_mtime > max_age_s or total > max_total_mb:
            total -= st.st_size / 1e6
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


class ClipStore:
    """Thread-safe. Files are named ``<unix ms>-<id>.mp4`` so age is visible in the name."""

    def __init__(
        self,
        root: Path,
        max_age_s: float = 3600.0,
        max_total_mb: float = 500.0,
        min_free_mb: float = 200.0,
        retries: int = 2,
    ) -> None:
        self.root = root
        self.max_age_s, self.max_total_mb = max_age_s, max_total_mb
        self.min_free_mb, self.retries = min_free_mb, retries
        self._lock = threading.Lock()
        root.mkdir(parents=True, exist_ok=True)

    def write(self, frames: list[FrameData], fps: float) -> tuple[str, Path]:
        """Encode ``frames`` (BGR, same size) as H.264 MP4 at ``fps``; returns (clip id, path)."""
        if not frames:
            raise ValueError("a clip needs at least one frame")
        require_free(self.root, self.min_free_mb)
        clip_id = f"{int(time.time() * 1000)}-{uuid.uuid4().hex[:8]}"
        path = self.root / f"{clip_id}.mp4"
        for attempt in range(self.retries + 1):
            partial = path.with_suffix(".part")  # never a half-written .mp4, even on a crash
            try:
                _encode(partial, frames, fps)
                partial.rename(path)
                break
            except OSError as exc:
                partial.unlink(missing_ok=True)
                if attempt == self.retries:
                    raise
                log.warning(
                    "clip write failed; retrying",
                    extra={
                        "fields": {"path": str(path), "error": str(exc), "attempt": attempt + 1}
                    },
                )
                time.sleep(0.2 * (attempt + 1))
        self.enforce_retention()
        return clip_id, path

    def enforce_retention(self) -> int:
        """Delete clips older than ``max_age_s`` and the oldest beyond ``max_total_mb``."""
        with self._lock:
            files = sorted(self.root.glob("*.mp4"))  # names start with the creation time
            return len(prune_oldest(files, self.max_age_s, self.max_total_mb))

    def path_of(self, clip_id: str) -> Path | None:
        path = self.root / f"{clip_id}.mp4"
        return path if path.is_file() else None


def _encode(path: Path, frames: list[FrameData], fps: float) -> None:
    height, width = frames[0].frame.shape[:2]
    rate = Fraction(fps).limit_denominator(1000)
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=rate, options={"preset": "veryfast", "crf": "26"})
        stream.width, stream.height = width - width % 2, height - height % 2
        stream.pix_fmt = "yuv420p"
        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(f.frame, format="bgr24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
