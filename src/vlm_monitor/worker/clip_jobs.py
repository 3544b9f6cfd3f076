"""Clip jobs: a worker's side of ``clips.dispatch: redis`` (the queue and its guarantees are
described in ``vlm_monitor.jobs.clips``)."""

from __future__ import annotations

import json
import logging
from typing import Any

from vlm_monitor.config import BudgetConfig, ClipsConfig, VlmProviderConfig
from vlm_monitor.jobs.clips import decode_frames
from vlm_monitor.jobs.keys import ANSWER_TTL_S, GROUP, answer_key, decode, ensure_group
from vlm_monitor.vlm.base import BudgetSpent, VlmRequest
from vlm_monitor.vlm.registry import ProviderSet
from vlm_monitor.worker.process import WorkerProcess

log = logging.getLogger("vlm_monitor.jobs")


class JobWorker:
    """Clip jobs: one at a time from ``{channel}:jobs:clip``."""

    def __init__(
        self,
        process: WorkerProcess,
        providers: list[VlmProviderConfig],
        claim_idle_s: float = 30.0,
        max_attempts: int = 3,
        budget: BudgetConfig | None = None,
    ) -> None:
        self.process, self.client, self.name = process, process.client, process.name
        self.channel, self.keys = process.channel, process.keys
        self.providers = ProviderSet(providers, budget)
        self.claim_idle_ms = int(claim_idle_s * 1000)
        self.max_attempts = max_attempts

    def run(self, deadline: float | None = None) -> None:
        try:
            self.process.loop(self._step, deadline)
        finally:
            self.providers.close()

    def _step(self) -> None:
        ensure_group(self.client, self.keys["jobs"])
        entry = self._claim() or self._read()
        if entry is not None:
            self._handle(*entry)

    def _claim(self) -> tuple[str, dict[str, Any]] | None:
        _, claimed, *_ = self.client.xautoclaim(
            self.keys["jobs"], GROUP, self.name, self.claim_idle_ms, "0-0", count=1
        )
        for entry_id, fields in claimed:
            return decode(entry_id), fields
        return None

    def _read(self) -> tuple[str, dict[str, Any]] | None:
        streams: Any = {self.keys["jobs"]: ">"}
        got: Any = self.client.xreadgroup(GROUP, self.name, streams, count=1, block=1000)
        for _, entries in got or []:
            for entry_id, fields in entries:
                return decode(entry_id), fields
        return None

    def _handle(self, entry_id: str, fields: dict[Any, Any]) -> None:
        raw: Any = fields.get(b"job") or fields.get("job")
        try:
            job = json.loads(raw)
        except (TypeError, ValueError):
            self._finish(entry_id, None, None, dead="not a job")
            return
        attempts = self.process.pending_attempts(self.keys["jobs"], GROUP, entry_id)
        if attempts > self.max_attempts:
            self._finish(entry_id, job, None, dead=f"failed {attempts - 1} times")
            return
        try:
            answer = self._process(job)
        except Exception as exc:  # left pending: retried after claim_idle_s, then dead
            self.process.counts["failed"] += 1
            log.warning("job failed", extra={"fields": {"job": job["job_id"], "error": str(exc)}})
            return
        self._finish(entry_id, job, answer)
        self.process.counts["done"] += 1

    def _process(self, job: dict[str, Any]) -> dict[str, Any]:
        frames = decode_frames(job["frames"])
        reference = job.get("reference")
        clips = ClipsConfig(
            provider=job.get("provider"),
            strategy=job.get("strategy", "fallback"),
            budget=BudgetConfig.model_validate(job.get("budget") or {}),
        )
        request = VlmRequest(
            stream=job["stream"], prompt=job["prompt"], frames=frames,
            timestamps=job["timestamps"], motion=job.get("motion", 0.0), schema=job.get("schema"),
            annotate=bool(job.get("annotate")), boxes=job.get("boxes") or [],
            reference=decode_frames([reference])[0] if reference else None,
        )  # fmt: skip
        try:
            provider, answer = self.providers.analyzer(clips)(request)
        except BudgetSpent as exc:  # an answer, not a failure: retrying is refused again
            return {"error": str(exc), "skipped": "budget"}
        return {
            "provider": provider,
            "text": answer.text,
            "model": answer.model,
            "tokens": answer.tokens,
            "structured": answer.structured,
            "worker": self.name,
        }

    def _finish(
        self, entry_id: str, job: dict[str, Any] | None, answer: dict[str, Any] | None,
        dead: str | None = None,
    ) -> None:  # fmt: skip
        pipe = self.client.pipeline()
        if dead is not None:
            self.process.dead_letter(pipe, job, dead)
            answer = {"error": f"job dead-lettered: {dead}"}
        if job is not None and answer is not None:
            key = answer_key(self.channel, job["job_id"])
            pipe.rpush(key, json.dumps(answer))
            pipe.expire(key, ANSWER_TTL_S)
        pipe.xack(self.keys["jobs"], GROUP, entry_id)
        pipe.xdel(self.keys["jobs"], entry_id)
        pipe.execute()
