"""Clip jobs over Redis Streams: the backend publishes, ``vlm-monitor worker --redis-url``
processes, on any machine.

- A job (``{channel}:jobs:clip``, consumer group ``workers``) carries the sampled frames as
  JPEG, the prompt, the JSON schema and the provider names: workers need no shared disk.
- The backend's clip processor waits (in its inference thread) for the job's answer on
  ``{channel}:answer:{job_id}`` and stores it itself, once: a job done twice (a worker died
  after answering, before acknowledging) cannot write twice.
- At-least-once: a job is acknowledged and deleted only after its answer is pushed. Jobs of a
  worker that died are taken over with XAUTOCLAIM once idle for ``claim_idle_s``. A job
  delivered ``max_attempts`` times goes to ``{channel}:jobs:dead`` with the reason, and the
  clip gets an error result.
- Backlog: with ``max_backlog`` jobs waiting, a new clip is not queued; it gets an error
  result saying so (clip jobs are never dropped silently).
"""

from __future__ import annotations

import base64
import collections
import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import redis

from vlm_monitor.config import ClipsConfig, VlmProviderConfig
from vlm_monitor.vlm.base import ProviderError, VlmAnswer, VlmRequest
from vlm_monitor.vlm.registry import ProviderSet

log = logging.getLogger("vlm_monitor.jobs")
GROUP = "workers"
ANSWER_TTL_S = 600


def keys(channel: str) -> dict[str, str]:
    return {
        "jobs": f"{channel}:jobs:clip",
        "dead": f"{channel}:jobs:dead",
        "workers": f"{channel}:workers",
    }


def analysis_keys(channel: str, stream: str = "*") -> dict[str, str]:
    return {
        "streams": f"{channel}:analyze:streams",  # hash: stream -> registration
        "jobs": f"{channel}:jobs:analyze:{stream}",
        "lease": f"{channel}:lease:{stream}",
    }


def ensure_group(client: redis.Redis, stream: str) -> None:
    try:
        client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class RedisClipDispatcher:
    """The processor's analyze call when ``clips.dispatch`` is ``redis``. Blocking: runs in
    the processor's inference threads."""

    def __init__(self, url: str, channel: str, clips: ClipsConfig, max_backlog: int) -> None:
        self.timeout_s = clips.deadline_s
        # The read timeout must outlast BLPOP's own wait (redis-py otherwise reuses the
        # connect timeout for reads).
        self.client = redis.Redis.from_url(
            url, socket_connect_timeout=3, socket_timeout=self.timeout_s + 10
        )
        self.channel, self.clips, self.max_backlog = channel, clips, max_backlog
        self.keys = keys(channel)

    def __call__(self, request: VlmRequest) -> tuple[str, VlmAnswer]:
        try:
            ensure_group(self.client, self.keys["jobs"])
            waiting = int(self.client.xlen(self.keys["jobs"]))
            if waiting >= self.max_backlog:
                raise ProviderError(f"job backlog full ({waiting} clip jobs wait for workers)")
            job_id = uuid.uuid4().hex
            self.client.xadd(self.keys["jobs"], {"job": json.dumps(self._job(job_id, request))})
            got = self.client.blpop([f"{self.channel}:answer:{job_id}"], timeout=self.timeout_s)
        except redis.RedisError as exc:
            raise ProviderError(f"redis: {exc}", retryable=True) from None
        if got is None:
            raise ProviderError(f"no worker answered within {self.timeout_s:g} s")
        answer = json.loads(got[1])
        if answer.get("error"):
            raise ProviderError(f"worker: {answer['error']}")
        return answer["provider"], VlmAnswer(
            text=answer["text"],
            model=answer.get("model"),
            tokens=answer.get("tokens", 0),
            structured=answer.get("structured"),
        )

    def _job(self, job_id: str, request: VlmRequest) -> dict[str, Any]:
        frames = [
            base64.b64encode(
                cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
            ).decode()
            for f in request.frames
        ]
        provider = self.clips.provider
        return {
            "job_id": job_id,
            "stream": request.stream,
            "prompt": request.prompt,
            "frames": frames,
            "timestamps": request.timestamps,
            "motion": request.motion,
            "schema": request.schema,
            "provider": provider,
            "strategy": self.clips.strategy,
            "created_at": time.time(),
        }


class WorkerProcess:
    """What one ``vlm-monitor worker --redis-url`` process shares between its job loops: the
    Redis client (thread-safe: each blocking call takes its own pooled connection), its name,
    the stop flag, and the counters of its heartbeat in ``{channel}:workers``."""

    def __init__(self, url: str, channel: str, name: str | None, kinds: list[str]) -> None:
        self.client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=10)
        self.channel, self.keys, self.kinds = channel, keys(channel), kinds
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.counts: collections.Counter[str] = collections.Counter()
        self.stop = threading.Event()

    def beat(self) -> None:
        doc = {"host": socket.gethostname(), "pid": os.getpid(), "last_heartbeat": time.time(),
               "kinds": self.kinds, **self.counts}  # fmt: skip
        self.client.hset(self.keys["workers"], self.name, json.dumps(doc))

    def loop(self, step: Callable[[], None], deadline: float | None) -> None:
        """Runs ``step`` until stopped, riding out Redis outages."""
        while not self.stop.is_set() and (deadline is None or time.monotonic() < deadline):
            try:
                self.beat()
                step()
            except redis.RedisError as exc:
                log.warning("redis unavailable; retrying", extra={"fields": {"error": str(exc)}})
                self.stop.wait(1.0)

    def live_workers(self, kind: str, within_s: float) -> int:
        now, live = time.time(), 0
        for doc in self.client.hgetall(self.keys["workers"]).values():
            with contextlib.suppress(ValueError, TypeError, KeyError):
                w = json.loads(doc)
                live += kind in w.get("kinds", ["clip"]) and now - w["last_heartbeat"] < within_s
        return max(live, 1)

    def pending_attempts(self, stream: str, group: str, entry_id: str) -> int:
        pending = self.client.xpending_range(stream, group, entry_id, entry_id, 1)
        return int(pending[0]["times_delivered"]) if pending else 1

    def dead_letter(self, pipe: Any, job: Any, reason: str) -> None:
        self.counts["dead"] += 1
        pipe.xadd(
            self.keys["dead"], {"job": json.dumps(job), "reason": reason, "worker": self.name}
        )


class JobWorker:
    """Clip jobs: one at a time from ``{channel}:jobs:clip``."""

    def __init__(
        self,
        process: WorkerProcess,
        providers: list[VlmProviderConfig],
        claim_idle_s: float = 30.0,
        max_attempts: int = 3,
    ) -> None:
        self.process, self.client, self.name = process, process.client, process.name
        self.channel, self.keys = process.channel, process.keys
        self.providers = ProviderSet(providers)
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
        frames: list[Any] = [
            cv2.imdecode(np.frombuffer(base64.b64decode(f), np.uint8), cv2.IMREAD_COLOR)
            for f in job["frames"]
        ]
        if any(f is None for f in frames):
            raise ValueError("a frame of the job is not a JPEG")
        clips = ClipsConfig(provider=job.get("provider"), strategy=job.get("strategy", "fallback"))
        request = VlmRequest(
            stream=job["stream"], prompt=job["prompt"], frames=frames,
            timestamps=job["timestamps"], motion=job.get("motion", 0.0), schema=job.get("schema"),
        )  # fmt: skip
        provider, answer = self.providers.analyzer(clips)(request)
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
            key = f"{self.channel}:answer:{job['job_id']}"
            pipe.rpush(key, json.dumps(answer))
            pipe.expire(key, ANSWER_TTL_S)
        pipe.xack(self.keys["jobs"], GROUP, entry_id)
        pipe.xdel(self.keys["jobs"], entry_id)
        pipe.execute()


def decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _queue(client: redis.Redis, key: str) -> dict[str, Any]:
    """Depth, lag (jobs no worker has read yet), in work (read, not acknowledged) and the
    age of the oldest job still there, from the job stream and its consumer group."""
    pipe = client.pipeline(transaction=False)
    pipe.xlen(key)
    pipe.xrange(key, count=1)
    queued, oldest = pipe.execute()
    try:
        group = next((g for g in client.xinfo_groups(key) if decode(g["name"]) == GROUP), {})
    except redis.ResponseError:  # no such stream yet
        group = {}
    lag = group.get("lag")
    age = None
    if oldest:
        age = round(max(0.0, time.time() - int(decode(oldest[0][0]).split("-")[0]) / 1000), 3)
    return {
        "queued": int(queued),
        # Redis cannot tell the lag once it has trimmed entries no one read: then every
        # queued job not in work is waiting.
        "lag": int(lag) if lag is not None else max(0, int(queued) - group.get("pending", 0)),
        "in_work": int(group.get("pending", 0)),
        "oldest_s": age,
    }


def queue_status(url: str, channel: str) -> dict[str, Any]:
    """Blocking: the clip queue, each analysed stream's queue and lease holder, the dead
    letters and the workers' heartbeats."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        k = keys(channel)
        workers = {decode(n): json.loads(d) for n, d in client.hgetall(k["workers"]).items()}
        analysis = {}
        for sid in sorted(decode(s) for s in client.hkeys(analysis_keys(channel)["streams"])):
            ak = analysis_keys(channel, sid)
            owner = client.get(ak["lease"])
            analysis[sid] = {
                **_queue(client, ak["jobs"]),
                "worker": None if owner is None else decode(owner),
            }
        return {
            **_queue(client, k["jobs"]),
            "dead": int(client.xlen(k["dead"])),
            "workers": workers,
            "analysis": analysis,
        }
    finally:
        client.close()
