"""/health is liveness (200 while the process answers); /health/ready is 503 with reasons while
the server cannot do all its work, so probes route around it without restarting it."""

from __future__ import annotations

import httpx

from vlm_monitor.testing import free_port, wait_until

CAM = {"id": "cam", "url": "synthetic://?fps=5&size=160x90"}


def ready(c: httpx.Client) -> tuple[int, dict]:
    r = c.get("/health/ready")
    return r.status_code, r.json()


def test_ready_names_a_failed_stream_and_a_clip_disk_too_full(server, tmp_path) -> None:
    srv = server({"vlm": {"providers": [{"name": "offline", "kind": "local"}]}, "streams": [CAM]})
    with srv.client() as c:
        assert ready(c) == (200, {"status": "ready"})

        # Nothing listens there; one failed attempt and the stream gives up.
        dead = {"id": "dead", "url": f"tcp://127.0.0.1:{free_port()}",
                "reconnect": {"max_attempts": 1, "initial_s": 0.1}}  # fmt: skip
        assert c.post("/api/streams", json=dead).status_code == 201
        wait_until(lambda: c.get("/api/streams/dead").json()["state"] == "failed", 20)
        status, body = ready(c)
        assert status == 503 and body["status"] == "not ready"
        assert body["reasons"] == ["stream dead failed"]
        assert c.get("/health").json() == {"status": "ok"}  # alive all the same

        assert c.delete("/api/streams/dead").status_code in (200, 204)
        assert ready(c) == (200, {"status": "ready"})

        # A clip store that wants more free space than any disk has refuses to write.
        greedy = {"id": "greedy", "url": CAM["url"], "analyzers": [],
                  "clips": {"provider": "offline", "min_free_mb": 1e12}}  # fmt: skip
        assert c.post("/api/streams", json=greedy).status_code == 201
        status, body = ready(c)
        assert status == 503
        (reason,) = body["reasons"]
        assert reason.startswith("stream greedy clips: only ") and "needs 1000000000000" in reason


def test_ready_is_503_while_redis_is_unreachable(server) -> None:
    closed = free_port()
    srv = server({"bus": {"kind": "redis", "url": f"redis://127.0.0.1:{closed}/0"}})
    with srv.client() as c:
        status, body = ready(c)
        assert status == 503 and body["reasons"] == ["redis unreachable (bus)"]
        assert c.get("/health").status_code == 200
