"""Clip jobs over Redis Streams: the server queues them, ``vlm-monitor worker --redis-url``
answers them, on any machine.

- A job (``{channel}:jobs:clip``, consumer group ``workers``) carries the sampled frames as
  JPEG, the prompt, the JSON schema and the provider names: workers need no shared disk.
- The server's clip processor waits (in its inference thread) for the job's answer on
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
import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import redis

from vlm_monitor.jobs.keys import answer_key, ensure_group, keys
from vlm_monitor.vlm.base import BudgetSpent

JPEG_QUALITY = 85


class JobError(Exception):
    """A clip job that got no answer; ``retryable`` when Redis itself failed."""

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


def encode_frames(frames: Sequence[np.ndarray]) -> list[str]:
    return [
        base64.b64encode(
            cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1].tobytes()
        ).decode()
        for f in frames
    ]


def decode_frames(encoded: Sequence[str]) -> list[np.ndarray]:
    """BGR pictures of a job; ValueError when one is not a JPEG."""
    frames: list[Any] = [
        cv2.imdecode(np.frombuffer(base64.b64decode(f), np.uint8), cv2.IMREAD_COLOR)
        for f in encoded
    ]
    if any(f is None for f in frames):
        raise ValueError("a frame of the job is not a JPEG")
    return frames


class ClipJobQueue:
    """The server's side: queue one job, wait for its answer. Blocking: runs in the clip
    processor's inference threads (the Redis client is thread-safe)."""

    def __init__(self, url: str, channel: str, max_backlog: int, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        # The read timeout must outlast BLPOP's own wait (redis-py otherwise reuses the
        # connect timeout for reads).
        self.client = redis.Redis.from_url(
            url, socket_connect_timeout=3, socket_timeout=timeout_s + 10
        )
        self.channel, self.max_backlog = channel, max_backlog
        self.keys = keys(channel)

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        """The worker's answer to ``job`` (``job_id`` and ``created_at`` are added here)."""
        try:
            ensure_group(self.client, self.keys["jobs"])
            waiting = int(self.client.xlen(self.keys["jobs"]))
            if waiting >= self.max_backlog:
                raise JobError(f"job backlog full ({waiting} clip jobs wait for workers)")
            job_id = uuid.uuid4().hex
            doc = {"job_id": job_id, **job, "created_at": time.time()}
            self.client.xadd(self.keys["jobs"], {"job": json.dumps(doc)})
            got = self.client.blpop([answer_key(self.channel, job_id)], timeout=self.timeout_s)
        except redis.RedisError as exc:
            raise JobError(f"redis: {exc}", retryable=True) from None
        if got is None:
            raise JobError(f"no worker answered within {self.timeout_s:g} s")
        answer: dict[str, Any] = json.loads(got[1])
        if answer.get("skipped") == "budget":
            raise BudgetSpent(f"worker: {answer['error']}")
        if answer.get("error"):
            raise JobError(f"worker: {answer['error']}")
        return answer
