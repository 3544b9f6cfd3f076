"""Analyzer jobs through Redis Streams (`analysis.dispatch: redis`): two
`vlm-monitor worker --redis-url` processes share the streams; one is SIGKILLed and the other
takes its streams over; a full backlog drops the OLDEST frames; a malformed job is
dead-lettered; Redis restarting mid-run is ridden out."""

from __future__ import annotations

import collections
import json
import signal
import time

import redis

from vlm_monitor.testing import wait_until

CHANNEL = "vlm-monitor"


def backend(server, redis_server, n_streams: int, **analysis):
    return server(
        {
            "bus": {"kind": "redis", "url": redis_server.url},
            "analysis": {"dispatch": "redis", **analysis},
            "streams": [
                {"id": f"cam{i}", "url": "synthetic://?fps=10&size=320x180",
                 "analyzers": [{"name": "motion", "fps": 5}]}
                for i in range(n_streams)
            ],
        }
    )  # fmt: skip


def status(srv) -> dict:
    with srv.client() as c:
        return c.get("/api/status").json()


def analyses(srv, limit: int = 1000) -> list[dict]:
    with srv.client() as c:
        return c.get("/api/analyses", params={"limit": limit}).json()


def holders(srv) -> dict[str, str | None]:
    return {sid: q["worker"] for sid, q in status(srv)["jobs"]["analysis"].items()}


def test_two_workers_share_streams_and_a_killed_ones_streams_are_taken_over(
    server, redis_server, job_worker
) -> None:
    srv = backend(server, redis_server, 4)
    w1 = job_worker("w1", "--jobs", "analyze", "--claim-idle", "2")
    job_worker("w2", "--jobs", "analyze", "--claim-idle", "2")

    def shared() -> bool:
        held = holders(srv)
        return len(held) == 4 and collections.Counter(held.values()) == {"w1": 2, "w2": 2}

    wait_until(shared, 30, what="4 streams shared 2 + 2")

    def every_stream_has_results() -> bool:
        per_stream = collections.Counter(a["stream"] for a in analyses(srv))
        return len(per_stream) == 4 and min(per_stream.values()) >= 3

    wait_until(every_stream_has_results, 30, what="motion results of every stream")

    w1.proc.send_signal(signal.SIGKILL)
    w1.stop()
    killed_at = time.time()
    wait_until(lambda: set(holders(srv).values()) == {"w2"}, 30, what="w2 holds all 4 streams")

    def fresh_everywhere() -> bool:
        after = [a for a in analyses(srv) if a["video_timestamp"] > killed_at + 1]
        return {a["stream"] for a in after} == {f"cam{i}" for i in range(4)}

    wait_until(fresh_everywhere, 30, what="results of every stream after the kill")

    docs = analyses(srv)
    keys = [(a["stream"], a["analyzer"], a["video_timestamp"]) for a in docs]
    assert len(keys) == len(set(keys)), "a frame stored twice"
    final = status(srv)
    for stream in final["streams"]:
        motion = stream["analyzers"]["motion"]
        assert motion["where"] == "redis" and motion["results"] > 0 and motion["errors"] == 0
        assert motion["latency_p50_s"] is not None
    assert final["jobs"]["workers"]["w2"]["frames"] > 0
    assert final["jobs"]["workers"]["w2"]["kinds"] == ["analyze"]
    link = final["bus"]["analysis_jobs"]
    assert link["connected"] and link["streams"] == 4 and link["last_error"] is None
    with srv.client() as c:
        metrics = c.get("/metrics").text
    assert 'vlm_jobs{queue="analyze:cam0",state="lag"}' in metrics
    assert 'vlm_worker_jobs_total{outcome="frames",worker="w2"}' in metrics


def test_a_full_backlog_drops_the_oldest_frames_then_a_worker_catches_up(
    server, redis_server, job_worker
) -> None:
    srv = backend(server, redis_server, 1, max_backlog=5)
    client = redis.Redis.from_url(redis_server.url)
    jobs = f"{CHANNEL}:jobs:analyze:cam0"

    wait_until(
        lambda: status(srv)["streams"][0]["analyzers"]["motion"]["dropped"] >= 10,
        30,
        what="frames dropped with no worker",
    )
    assert client.xlen(jobs) == 5
    queue = status(srv)["jobs"]["analysis"]["cam0"]
    assert queue["queued"] == 5 and queue["worker"] is None
    # The oldest frames are the ones dropped: what waits is always the last second or so.
    assert queue["oldest_s"] is not None and queue["oldest_s"] < 3.0

    started = time.time()
    job_worker("w", "--jobs", "analyze", "--claim-idle", "2")
    wait_until(
        lambda: [a for a in analyses(srv) if a["video_timestamp"] > started], 30,
        what="results once a worker runs",
    )  # fmt: skip
    wait_until(lambda: client.xlen(jobs) <= 2, 20, what="the backlog drained")

    # A malformed job on the stream is dead-lettered; the worker goes on.
    client.xadd(jobs, {"meta": b"{not json", "jpeg": b"x"})
    wait_until(lambda: client.xlen(f"{CHANNEL}:jobs:dead") >= 1, 20, what="a dead letter")
    reason = client.xrange(f"{CHANNEL}:jobs:dead", count=1)[0][1][b"reason"].decode()
    assert reason.startswith("bad job: JSONDecodeError"), reason

    # Redis restarts (and forgets everything): backend and worker find each other again.
    redis_server.stop()
    time.sleep(2)
    redis_server.start()
    restarted = time.time()
    wait_until(
        lambda: [a for a in analyses(srv) if a["video_timestamp"] > restarted], 40,
        what="results after the Redis restart",
    )  # fmt: skip
    print(json.dumps({"fault": "redis restart", "recovered_s": round(time.time() - restarted, 2)}))
    assert status(srv)["jobs"]["analysis"]["cam0"]["worker"] == "w"
