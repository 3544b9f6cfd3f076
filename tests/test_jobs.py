"""Clip jobs through Redis Streams: two `vlm-monitor worker --redis-url` processes share the
clips of 4 streams; one is SIGKILLed mid-job and its job is taken over; a job that always
fails ends in the dead-letter stream. The VLM is the OpenAI-wire fake (a paid API cannot be
reached here)."""

from __future__ import annotations

import base64
import json
import signal
import time

import cv2
import numpy as np
import pytest
import redis

from fake_vlm import FakeVlm
from vlm_monitor.testing import wait_until
from vlm_monitor.vlm.frames import REFERENCE_NOTE

JOBS, GROUP = "vlm-monitor:jobs:clip", "workers"


@pytest.fixture
def fake():
    server = FakeVlm()
    yield server
    server.close()


def provider(fake: FakeVlm) -> dict:
    return {"name": "fake", "kind": "openai", "base_url": fake.url + "/v1", "model": "fake-vl",
            "retries": 0, "breaker_failures": 100}  # fmt: skip


def backend(server, redis_server, fake: FakeVlm, n_streams: int, **clip_and_stream: object):
    """``clip_and_stream``: ``annotate`` goes to the clips, anything else to the streams."""
    extra = dict(clip_and_stream)
    clips = {"clip_seconds": 2, "frames_per_clip": 3, "input_fps": 3, "dispatch": "redis",
             "provider": "fake", "deadline_s": 60}  # fmt: skip
    if "annotate" in extra:
        clips["annotate"] = extra.pop("annotate")
    camera = {"url": "synthetic://?fps=5&size=320x180", "clips": clips, **extra}
    return server(
        {
            "bus": {"kind": "redis", "url": redis_server.url},
            "vlm": {"providers": [provider(fake)]},
            "streams": [{"id": f"cam{i}", **camera} for i in range(n_streams)],
        }
    )


@pytest.fixture
def worker(job_worker, fake):
    config = {"vlm": {"providers": [provider(fake)]}}
    return lambda name, *extra: job_worker(name, *extra, config=config)


def results(srv) -> list[dict]:
    with srv.client() as c:
        return c.get("/api/results", params={"limit": 500}).json()


def test_a_killed_workers_job_is_taken_over_nothing_lost_nothing_twice(
    server, redis_server, fake, worker
) -> None:
    fake.behaviours.extend([("slow", 1.5)] * 200)  # jobs stay in flight long enough to kill
    srv = backend(server, redis_server, fake, 4)
    w1 = worker("w1", "--claim-idle", "2")
    worker("w2", "--claim-idle", "2")
    client = redis.Redis.from_url(redis_server.url)

    def held_by(name: str) -> list:
        return client.xpending_range(JOBS, GROUP, "-", "+", 100, consumername=name)

    held = wait_until(lambda: held_by("w1"), 30, what="w1 holds a job")
    w1.proc.send_signal(signal.SIGKILL)
    w1.stop()
    taken = {h["message_id"] for h in held}
    # w2 takes the job over once idle for 2 s, answers it, acknowledges it.
    wait_until(lambda: not held_by("w1"), 30, what="w1's jobs reclaimed")
    wait_until(
        lambda: (
            not (taken & {p["message_id"] for p in held_by("w2")})
            and not (taken & {p["message_id"] for p in held_by("w1")})
        ),
        30,
        what="the reclaimed job acknowledged",
    )
    time.sleep(3)
    done = results(srv)
    assert done and all(r["error"] is None for r in done), [r["error"] for r in done if r["error"]]
    clip_ids = [r["video_info"]["clip_id"] for r in done]
    assert len(clip_ids) == len(set(clip_ids))  # no clip stored twice
    assert {r["stream"] for r in done} == {f"cam{i}" for i in range(4)}
    with srv.client() as c:
        status = c.get("/api/status").json()
    workers = status["jobs"]["workers"]
    assert workers["w2"]["done"] >= 1 and "last_heartbeat" in workers["w2"]
    with srv.client() as c:
        metrics = c.get("/metrics").text
    assert 'vlm_worker_jobs_total{outcome="done",worker="w2"}' in metrics
    assert 'vlm_jobs{queue="dead",state="queued"} 0.0' in metrics
    assert status["jobs"]["dead"] == 0
    for s in status["streams"]:
        assert s["clips"]["inference_errors"] == 0


def test_a_job_that_always_fails_goes_to_the_dead_letter_stream(
    server, redis_server, fake, worker
) -> None:
    fake.behaviours.extend(["500"] * 500)
    srv = backend(server, redis_server, fake, 1)
    worker("w", "--claim-idle", "1", "--max-attempts", "2")
    client = redis.Redis.from_url(redis_server.url)
    wait_until(lambda: client.xlen("vlm-monitor:jobs:dead") >= 1, 40, what="a dead letter")
    dead = client.xrange("vlm-monitor:jobs:dead", count=1)[0][1]
    assert dead[b"reason"] == b"failed 2 times" and json.loads(dead[b"job"])["stream"] == "cam0"
    failed = wait_until(lambda: [r for r in results(srv) if r["error"]], 20, what="error result")
    assert "dead-lettered" in failed[0]["error"]


def test_a_full_backlog_refuses_clips_with_an_error_not_silently(
    server, redis_server, fake
) -> None:
    clips = {"clip_seconds": 1, "frames_per_clip": 2, "input_fps": 3, "dispatch": "redis",
             "provider": "fake", "deadline_s": 2, "max_backlog": 1}  # fmt: skip
    srv = server(
        {
            "bus": {"kind": "redis", "url": redis_server.url},
            "vlm": {"providers": [provider(fake)]},
            "streams": [{"id": "cam0", "url": "synthetic://?fps=5&size=320x180", "clips": clips}],
        }
    )  # no worker runs: the first job waits, unanswered, and fills the backlog

    def errors() -> set[str]:
        return {r["error"] for r in results(srv) if r["error"]}

    seen = wait_until(
        lambda: (e := errors()) and any("backlog full" in x for x in e) and e, 30, what="refusal"
    )
    assert any("no worker answered within 2 s" in e for e in seen)
    assert any("job backlog full (1 clip jobs wait for workers)" in e for e in seen)


def test_a_worker_survives_a_redis_restart(server, redis_server, fake, worker) -> None:
    srv = backend(server, redis_server, fake, 1)
    worker("w", "--claim-idle", "2")
    wait_until(lambda: [r for r in results(srv) if not r["error"]], 30, what="a first result")
    redis_server.stop()
    time.sleep(2)
    redis_server.start()  # empty: the group, the jobs and the heartbeats are gone
    before = {r["id"] for r in results(srv)}
    fresh = wait_until(
        lambda: [r for r in results(srv) if r["id"] not in before and not r["error"]],
        40,
        what="results after the restart",
    )
    assert fresh[0]["stream"] == "cam0"


def test_a_clip_job_carries_the_reference_picture_and_the_annotation(
    server, redis_server, fake, worker, tmp_path
) -> None:
    ref = tmp_path / "empty.png"
    cv2.imwrite(str(ref), np.full((180, 320, 3), (0, 200, 0), np.uint8))
    backend(server, redis_server, fake, 1, reference_frame=str(ref), annotate=True)
    worker("w")
    wait_until(lambda: fake.requests, 30, what="a clip job answered by the worker")
    content = fake.requests[0]["json"]["messages"][0]["content"]
    assert content[0]["text"].startswith(REFERENCE_NOTE) and len(content) == 1 + 1 + 3
    reference, *frames = (
        cv2.imdecode(
            np.frombuffer(base64.b64decode(p["image_url"]["url"].split(",", 1)[1]), np.uint8),
            cv2.IMREAD_COLOR,
        )
        for p in content[1:]
    )
    assert np.abs(reference.reshape(-1, 3).mean(0) - (0, 200, 0)).max() < 6  # sent first
    assert all(f[:4, f.shape[1] // 2 :].mean() < 10 for f in frames)  # the caption band
