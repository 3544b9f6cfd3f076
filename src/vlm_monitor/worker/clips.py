"""``vlm-monitor worker --clips``: the clip processor out of process.

Frames come through the BackendVideoClient at ``--frame-rate``; results go back to the backend
with ``POST /api/results`` (Bearer ``api_token`` when the backend has one), which stores and
broadcasts them like its own. Clip files stay on the worker's disk (their path is recorded).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import cv2
import httpx
import numpy as np

from vlm_monitor.clips.processor import AsyncVideoProcessor
from vlm_monitor.clips.store import ClipStore
from vlm_monitor.clips.types import ResultData
from vlm_monitor.config import ClipsConfig, VlmProviderConfig, parse_size
from vlm_monitor.geometry import fit_budget
from vlm_monitor.vlm.registry import ProviderSet
from vlm_monitor.worker.client import BackendVideoClient

log = logging.getLogger("vlm_monitor.worker")


def _decode(jpeg: bytes, budget: tuple[int, int]) -> np.ndarray | None:
    """The backend's full-size JPEG within the clips' pixel budget, its shape kept."""
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return None
    size = fit_budget(image.shape[1], image.shape[0], *budget)
    if size == (image.shape[1], image.shape[0]):
        return image
    resized: np.ndarray = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return resized


async def run_clip_worker(
    backend_url: str,
    stream: str,
    frame_rate: float,
    clips: ClipsConfig,
    providers: list[VlmProviderConfig],
    data_dir: Path,
    api_token: str | None,
    duration: float | None,
) -> int:
    headers = {"Authorization": f"Bearer {api_token}"} if api_token else {}
    http = httpx.Client(base_url=backend_url.rstrip("/"), headers=headers, timeout=30)
    posted = 0

    def post(result: ResultData) -> None:  # inference thread
        nonlocal posted
        resp = http.post("/api/results", json=result.to_json())
        if resp.status_code >= 400:
            log.error(
                "backend refused a result",
                extra={"fields": {"status": resp.status_code, "body": resp.text[:200]}},
            )
            return
        posted += 1

    provider_set = ProviderSet(providers)
    analyze = provider_set.analyzer(clips)
    store = ClipStore(
        data_dir / "clips" / stream, clips.max_age_s, clips.max_total_mb, clips.min_free_mb
    )
    processor = AsyncVideoProcessor(stream, clips, store, analyze, post)
    size = parse_size(clips.size)
    processor.start()
    try:
        async with BackendVideoClient(
            backend_url, stream, "clips-worker", frame_rate, token=api_token
        ) as client:

            async def consume() -> None:
                async for msg in client.frames():
                    image = await asyncio.to_thread(_decode, msg.jpeg, size)
                    if image is None:
                        log.warning("undecodable frame skipped", extra={"fields": {"seq": msg.seq}})
                        continue
                    processor.add_frame(image, msg.ts, msg.seq, msg.capture_ts)

            try:
                await asyncio.wait_for(consume(), duration)
            except TimeoutError:
                pass
    finally:
        await asyncio.to_thread(processor.stop)
        provider_set.close()
        await asyncio.to_thread(http.close)
    log.info(
        "clip worker done",
        extra={"fields": {"stream": stream, "posted": posted, **processor.get_statistics()}},
    )
    return posted
