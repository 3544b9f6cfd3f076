"""``vlm-monitor worker``: the separate inference service. For now it measures what it gets:
per-frame latency (backend decode -> here) and counts; analyzers plug in here later."""

from __future__ import annotations

import asyncio
import json
import logging
import time

from vlm_monitor.stats import percentile
from vlm_monitor.worker.client import BackendVideoClient

log = logging.getLogger("vlm_monitor.worker")


class LatencyStats:
    def __init__(self) -> None:
        self.frames = 0
        self.latencies_ms: list[float] = []
        self.started = time.monotonic()
        self.last_seq = 0
        self.gaps = 0  # frames skipped by the latest-frame policy (seq jumps)

    def add(self, seq: int, ts: float) -> None:
        self.frames += 1
        self.latencies_ms.append((time.time() - ts) * 1000)
        if self.last_seq and seq > self.last_seq + 1:
            self.gaps += seq - self.last_seq - 1
        self.last_seq = seq

    def summary(self) -> dict[str, object]:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        lat = self.latencies_ms[-10000:]
        return {
            "frames": self.frames,
            "fps": round(self.frames / elapsed, 2),
            "latency_p50_ms": percentile(lat, 50, 2),
            "latency_p99_ms": percentile(lat, 99, 2),
            "last_seq": self.last_seq,
            "skipped": self.gaps,
        }


async def run_worker(
    backend_url: str,
    stream: str,
    frame_rate: float | None,
    name: str,
    duration: float | None,
    report_every: float = 5.0,
    token: str | None = None,
) -> dict[str, object]:
    stats = LatencyStats()
    async with BackendVideoClient(backend_url, stream, name, frame_rate, token=token) as client:

        async def consume() -> None:
            next_report = time.monotonic() + report_every
            async for msg in client.frames():
                stats.add(msg.seq, msg.ts)
                if time.monotonic() >= next_report:
                    next_report += report_every
                    log.info(
                        "worker frames", extra={"fields": {"stream": stream, **stats.summary()}}
                    )

        try:
            await asyncio.wait_for(consume(), duration)
        except TimeoutError:
            pass
    summary = {"stream": stream, "name": name, **stats.summary(), "reconnects": client.reconnects}
    print(json.dumps({"worker_summary": summary}), flush=True)
    return summary
