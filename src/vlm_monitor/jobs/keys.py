"""Names in Redis, shared by the server and its workers (both sides must agree on them)."""

from __future__ import annotations

from typing import Any

import redis

GROUP = "workers"  # the consumer group of every job stream
ANSWER_TTL_S = 600  # an answer nobody picked up (its server gone) expires


def keys(channel: str) -> dict[str, str]:
    return {
        "jobs": f"{channel}:jobs:clip",
        "dead": f"{channel}:jobs:dead",
        "workers": f"{channel}:workers",
    }


def answer_key(channel: str, job_id: str) -> str:
    return f"{channel}:answer:{job_id}"


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


def decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
