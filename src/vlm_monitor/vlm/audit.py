"""The VLM audit log: every call's question (prompt, schema, frames as JPEG) and answer, so
an answer can be explained later and the same questions put to another model or prompt
(``vlm-monitor replay``).

One JSON line per call in ``data_dir/audit/audit-YYYYMMDD.jsonl``; frames as JPEG files
beside it (640x360 at most: what the question was about, not an archive of the camera).
Oldest files go first when the directory grows past ``max_mb``, and files older than
``keep_days`` go."""

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
# A provider's settings that shape its answers, recorded with each call.
AUDITED_PARAMS = {
    "kind",
    "model",
    "base_url",
    "mode",
    "max_tokens",
    "structured",
    "jpeg_quality",
    "context_tokens",
    "image_tokens",
    "max_pixels",
}
FRAME_SIZE = (640, 360)
JPEG_QUALITY = 75


class AuditLog:
    def __init__(
        self,
        directory: Path,
        max_mb: float,
        keep_days: float | None = None,
        params: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """``params``: each provider's request parameters (model, max_tokens, ...), recorded
        with its calls so a replay knows what the answer was asked with."""
        self.dir = directory
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.keep_s = None if keep_days is None else keep_days * 86400
        self.params = params or {}
        (self.dir / "frames").mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._written = 0
        self._pruned_at = time.monotonic()

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
        frames = [self._jpeg(f"frames/{call_id}-{i}.jpg", f) for i, f in enumerate(request.frames)]
        reference = request.reference
        doc: dict[str, Any] = {
            "id": call_id,
            "ts": time.time(),
            "stream": request.stream,
            "provider": provider,
            "prompt": request.prompt,
            "schema": request.schema,
            "frames": [name for name in frames if name is not None],
            "timestamps": request.timestamps,
            "reference": None
            if reference is None
            else self._jpeg(f"frames/{call_id}-ref.jpg", reference),
            "annotate": request.annotate,
            "boxes": request.boxes,
            "clip": Path(request.video_path).stem if request.video_path else None,
            "request": {
                **self.params.get(provider, {}),
                "frames": len(request.frames),
                "frame_size": list(request.frames[0].shape[1::-1]) if request.frames else None,
            },
            "latency_s": round(seconds, 3),
            "error": error,
            "answer": None if answer is None else answer.text,
            "structured": None if answer is None else answer.structured,
            "model": None if answer is None else answer.model,
            "tokens": 0 if answer is None else answer.tokens,
            "prompt_tokens": 0 if answer is None else answer.prompt_tokens,
            "completion_tokens": 0 if answer is None else answer.completion_tokens,
            "cost": 0.0 if answer is None else round(answer.cost, 6),
            "repairs": None if answer is None else answer.extra.get("repairs"),
            "response": None if answer is None else answer.extra.get("response"),
        }
        line = json.dumps(doc) + "\n"
        path = self.dir / time.strftime("audit-%Y%m%d.jsonl")
        with self._lock:
            with path.open("a") as f:
                f.write(line)
            self._written += len(line)
            now = time.monotonic()
            # Look at the disk now and then: after a twentieth of max_mb, or an hour.
            if self._written > self.max_bytes // 20 or now - self._pruned_at > 3600:
                self._written, self._pruned_at = 0, now
                self._prune()

    def _jpeg(self, name: str, frame: np.ndarray) -> str | None:
        h, w = frame.shape[:2]
        scale = min(1.0, FRAME_SIZE[0] / w, FRAME_SIZE[1] / h)
        small = cv2.resize(frame, (round(w * scale), round(h * scale))) if scale < 1 else frame
        ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            return None
        (self.dir / name).write_bytes(buf.tobytes())
        self._written += len(buf)
        return name

    def _prune(self) -> None:
        files = sorted(
            (p for p in self.dir.rglob("*") if p.is_file()), key=lambda p: p.stat().st_mtime
        )
        total = sum(p.stat().st_size for p in files)
        too_old = time.time() - self.keep_s if self.keep_s is not None else 0.0
        for p in files:
            if total <= self.max_bytes and p.stat().st_mtime >= too_old:
                break
            total -= p.stat().st_size
            p.unlink(missing_ok=True)


def load_request(directory: Path, doc: dict[str, Any]) -> VlmRequest:
    """The recorded question, frames (and the reference picture) read back from their JPEGs."""

    def read(name: str) -> np.ndarray:
        img = cv2.imread(str(directory / name), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"audit record {doc['id']}: frame {name} is gone (pruned?)")
        return img

    reference = doc.get("reference")
    return VlmRequest(
        doc["stream"],
        doc["prompt"],
        [read(name) for name in doc["frames"]],
        list(doc["timestamps"]),
        schema=doc.get("schema"),
        annotate=bool(doc.get("annotate")),
        boxes=doc.get("boxes") or [],
        reference=read(reference) if reference else None,
    )
