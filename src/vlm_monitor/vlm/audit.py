"""The VLM audit log: every call's question (prompt, schema, frames as JPEG) and answer, so
an answer can be explained later and the same questions put to another model or prompt
(``vlm-monitor replay``).

One JSON line per call in ``data_dir/audit/audit-YYYYMMDD.jsonl``; frames as JPEG files
beside it (640x360 at most: what the question was about, not an archive of the camera).
Oldest files go first when the directory grows past ``max_mb``."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vlm_monitor.vlm.base import VlmAnswer, VlmRequest

log = logging.getLogger("vlm_monitor.vlm")
FRAME_SIZE = (640, 360)
JPEG_QUALITY = 75


class AuditLog:
    def __init__(self, directory: Path, max_mb: float) -> None:
        self.dir = directory
        self.max_bytes = int(max_mb * 1024 * 1024)
        (self.dir / "frames").mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._written = 0

    def record(
        self,
        provider: str,
        request: VlmRequest,
        answer: VlmAnswer | None,
        error: str | None,
        seconds: float,
    ) -> None:
        """Called on the provider's thread after each call; never raises (an audit failure
        must not fail the call it records)."""
        try:
            self._record(provider, request, answer, error, seconds)
        except Exception:
            log.exception("audit record failed", extra={"fields": {"provider": provider}})

    def _record(
        self,
        provider: str,
        request: VlmRequest,
        answer: VlmAnswer | None,
        error: str | None,
        seconds: float,
    ) -> None:
        call_id = f"{int(time.time() * 1000)}-{uuid.uuid4().hex[:8]}"
        frames = []
        for i, frame in enumerate(request.frames):
            name = f"frames/{call_id}-{i}.jpg"
            h, w = frame.shape[:2]
            scale = min(1.0, FRAME_SIZE[0] / w, FRAME_SIZE[1] / h)
            small = cv2.resize(frame, (round(w * scale), round(h * scale))) if scale < 1 else frame
            ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if ok:
                (self.dir / name).write_bytes(buf.tobytes())
                frames.append(name)
                self._written += len(buf)
        doc: dict[str, Any] = {
            "id": call_id,
            "ts": time.time(),
            "stream": request.stream,
            "provider": provider,
            "prompt": request.prompt,
            "schema": request.schema,
            "frames": frames,
            "timestamps": request.timestamps,
            "latency_s": round(seconds, 3),
            "error": error,
            "answer": None if answer is None else answer.text,
            "structured": None if answer is None else answer.structured,
            "model": None if answer is None else answer.model,
            "tokens": 0 if answer is None else answer.tokens,
            "repairs": None if answer is None else answer.extra.get("repairs"),
        }
        line = json.dumps(doc) + "\n"
        path = self.dir / time.strftime("audit-%Y%m%d.jsonl")
        with self._lock:
            with path.open("a") as f:
                f.write(line)
            self._written += len(line)
            if self._written > self.max_bytes // 20:  # look at the disk now and then
                self._written = 0
                self._prune()

    def _prune(self) -> None:
        files = sorted(
            (p for p in self.dir.rglob("*") if p.is_file()), key=lambda p: p.stat().st_mtime
        )
        total = sum(p.stat().st_size for p in files)
        for p in files:
            if total <= self.max_bytes:
                break
            total -= p.stat().st_size
            p.unlink(missing_ok=True)


def load_request(directory: Path, doc: dict[str, Any]) -> VlmRequest:
    """The recorded question, frames read back from their JPEG files."""
    frames: list[np.ndarray] = []
    for name in doc["frames"]:
        img = cv2.imread(str(directory / name), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"audit record {doc['id']}: frame {name} is gone (pruned?)")
        frames.append(img)
    return VlmRequest(
        doc["stream"], doc["prompt"], frames, list(doc["timestamps"]), schema=doc.get("schema")
    )
