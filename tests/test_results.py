"""End to end: camera -> backend -> clip processor -> provider -> SQLite, /api/results, events."""

from __future__ import annotations

import asyncio
import json
import time

import av
import httpx
import pytest
import websockets

from fake_vlm import OPENAI_PATH, FakeVlm
from vlm_monitor.broadcast.bus import CLIENT_QUEUE_EVENTS, EventBus
from vlm_monitor.testing import wait_until
from vlm_monitor.types import Event


def results(c: httpx.Client, stream: str, n: int, timeout: float = 40) -> list[dict]:
    return wait_until(
        lambda: len(r := c.get("/api/results", params={"stream": stream}).json()) >= n and r,
        timeout,
        what=f"{n} results",
    )


def test_camera_to_local_provider_results(camera, server, tmp_path) -> None:
    cam = camera(size="1280x720", fps=15, single_client=True)
    srv = server(
        {
            "vlm": {"providers": [{"name": "offline", "kind": "local"}]},
            "streams": [
                {
                    "id": "cam",
                    "url": cam.url,
                    "clips": {"clip_seconds": 2, "frames_per_clip": 6, "provider": "offline"},
                }
            ],
        }
    )

    async def first_result_event() -> dict:
        async with websockets.connect(srv.url.replace("http", "ws") + "/ws/events") as ws:
            while True:
                ev = json.loads(await asyncio.wait_for(ws.recv(), 40))
                if ev["type"] == "result":
                    return ev

    event = asyncio.run(first_result_event())
    assert event["stream"] == "cam" and event["error"] is None and event["id"] >= 1
    assert "motion" in event["result"] and event["provider"] == "offline"
    assert event["structured"]["motion_level"] > 0  # the ball moves
    with srv.client() as c:
        got = results(c, "cam", 2)
        assert [r["id"] for r in got] == sorted((r["id"] for r in got), reverse=True)
        one = c.get(f"/api/results/{event['id']}").json()
        info = one["video_info"]
        # the first clip may hold fewer frames (start-up burst); then all of them are used
        assert info["frame_count"] == min(6, info["sampling_info"]["buffered"])
        assert info["sampling_info"]["strategy"] == "time"
        assert got[0]["video_info"]["frame_count"] == 6
        clip = c.get(f"/api/results/{event['id']}/clip")
        assert clip.status_code == 200 and clip.headers["content-type"] == "video/mp4"
        path = tmp_path / "clip.mp4"
        path.write_bytes(clip.content)
        with av.open(str(path)) as container:
            assert len(list(container.decode(video=0))) == info["frame_count"]
        assert c.get("/api/results/999999").status_code == 404
        assert c.get("/api/results", params={"limit": 0}).status_code == 422
        st = c.get("/api/streams/cam").json()
        assert st["clips"]["videos_created"] >= 2 and st["clips"]["frames_dropped"] == 0
        assert 'vlm_clips_total{counter="videos_created",stream="cam"}' in c.get("/metrics").text
    assert cam.connections() == 1


def test_remote_provider_requests_and_errors(server, monkeypatch) -> None:
    fake = FakeVlm(answer='{"alert": false, "reason": "all quiet"}')
    monkeypatch.setenv("FAKE_DASHSCOPE_KEY", "sk-e2e")
    try:
        srv = server(
            {
                "vlm": {
                    "providers": [
                        {
                            "name": "qwen",
                            "kind": "openai",
                            "base_url": fake.url + "/v1",
                            "model": "qwen-vl-max",
                            "api_key_env": "FAKE_DASHSCOPE_KEY",
                            "retries": 0,
                            "breaker_failures": 4,
                            "breaker_reset_s": 2,
                        }
                    ]
                },
                "streams": [
                    {
                        "id": "s",
                        "url": "synthetic://?fps=15&size=640x360",
                        "clips": {
                            "clip_seconds": 1,
                            "frames_per_clip": 3,
                            "provider": "qwen",
                            "prompt": "Is anything wrong?",
                            "schema": {
                                "type": "object",
                                "required": ["alert", "reason"],
                                "properties": {"alert": {"type": "boolean"}},
                            },
                        },
                    }
                ],
            }
        )
        with srv.client() as c:
            ok = results(c, "s", 1)[0]
            assert ok["error"] is None and ok["structured"] == {
                "alert": False,
                "reason": "all quiet",
            }
            assert ok["tokens"] == 120 and ok["model"] == "fake-vl"
            req = fake.requests[0]
            assert req["path"] == OPENAI_PATH
            assert req["headers"]["Authorization"] == "Bearer sk-e2e"
            content = req["json"]["messages"][0]["content"]
            assert content[0] == {"type": "text", "text": "Is anything wrong?"}
            assert len(content) == 4 and req["json"]["response_format"] == {
                "type": "json_schema",
                "json_schema": {
                    "name": "answer",
                    "schema": {
                        "type": "object",
                        "required": ["alert", "reason"],
                        "properties": {"alert": {"type": "boolean"}},
                    },
                    "strict": True,
                },
            }
            fake.behaviours.extend(["500"] * 3 + ["badjson"] * 3 + [("text", "not json")] * 3)
            first_bad = ok["id"]

            def after_faults() -> list[dict]:
                got = c.get("/api/results", params={"stream": "s", "limit": 100}).json()
                new = [r for r in got if r["id"] > first_bad]
                # the pipeline goes on: a good result comes again after all the faults
                return new if new and new[0]["error"] is None and not fake.behaviours else []

            new = wait_until(after_faults, 40, what="recovery after faults")
            errors = [r["error"] for r in new if r["error"]]
            assert any("HTTP 500" in e for e in errors)
            assert any("circuit open" in e for e in errors)  # 4 failures in a row opened it
            assert any("not JSON" in e for e in errors)
            assert any("no JSON object" in e for e in errors)  # even after the repair retry
    finally:
        fake.close()


def test_missing_provider_gives_error_results(server) -> None:
    srv = server(
        {
            "streams": [
                {
                    "id": "s",
                    "url": "synthetic://?fps=15&size=640x360",
                    "clips": {"clip_seconds": 1, "frames_per_clip": 2},
                }
            ]
        }
    )
    with srv.client() as c:
        r = results(c, "s", 1)[0]
        assert "no VLM provider" in r["error"] and r["result"] == ""


def test_events_resume_with_since_seq(server) -> None:
    srv = server()
    ws_url = srv.url.replace("http", "ws") + "/ws/events"

    async def run() -> tuple[list[int], list[int]]:
        async with websockets.connect(ws_url) as ws:
            hello = json.loads(await ws.recv())
            start = hello["seq"]
        async with httpx.AsyncClient(base_url=srv.url) as c:  # events while disconnected
            for i in range(3):
                await c.post(
                    "/api/streams", json={"id": f"r{i}", "url": "synthetic://?fps=5&size=320x180"}
                )
        await asyncio.sleep(1.0)
        async with websockets.connect(f"{ws_url}?since_seq={start}") as ws:
            hello = json.loads(await ws.recv())
            assert hello["resumed"] and hello["complete"]
            missed = []
            while len(missed) < 6:
                missed.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        return [e["seq"] for e in missed], [start]

    seqs, (start,) = asyncio.run(run())
    assert seqs == list(range(start + 1, start + 7))


async def test_slow_listener_is_cut_off_others_unaffected() -> None:
    bus = EventBus()
    bus.bind(asyncio.get_running_loop())
    slow, _ = bus.listen()
    fast, _ = bus.listen()
    for i in range(CLIENT_QUEUE_EVENTS + 10):
        bus.publish(Event("tick", None, {"i": i}))
        if not fast.queue.empty():
            await fast.get()
    assert slow.overflowed.is_set() and not fast.overflowed.is_set()
    assert bus.cut_off == 1
    resumed, complete = bus.listen(since_seq=CLIENT_QUEUE_EVENTS)
    assert complete and resumed.queue.qsize() == 10


@pytest.mark.parametrize("since", ["-1", "abc"])
def test_since_seq_is_validated(server, since: str) -> None:
    srv = server()

    async def run() -> None:
        with pytest.raises(websockets.exceptions.InvalidStatus):
            async with websockets.connect(
                srv.url.replace("http", "ws") + f"/ws/events?since_seq={since}"
            ):
                pass

    asyncio.run(run())


def test_clip_worker_out_of_process_posts_results(server, tmp_path) -> None:
    import subprocess
    import sys

    srv = server(
        {
            "server": {"api_token": "s3cret-token"},
            "streams": [{"id": "cam", "url": "synthetic://?fps=15&size=640x360"}],
        }
    )
    cfg = tmp_path / "worker.json"
    cfg.write_text(
        json.dumps(
            {
                "server": {"api_token": "s3cret-token"},
                "vlm": {"providers": [{"name": "offline", "kind": "local"}]},
                "streams": [
                    {
                        "id": "cam",
                        "url": "synthetic://",
                        "clips": {"clip_seconds": 1, "frames_per_clip": 3, "provider": "offline"},
                    }
                ],
            }
        )
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "vlm_monitor",
            "worker",
            "--clips",
            "--config",
            str(cfg),
            "--backend-url",
            srv.url,
            "--stream",
            "cam",
            "--duration",
            "5",
            "--data-dir",
            str(tmp_path / "wd"),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    with srv.client("s3cret-token") as c:
        got = c.get("/api/results", params={"stream": "cam"}).json()
        assert len(got) >= 2 and all(r["provider"] == "offline" and r["error"] is None for r in got)
        assert (tmp_path / "wd" / "clips" / "cam").is_dir()
        body = {
            k: got[0][k]
            for k in (
                "stream",
                "result",
                "error",
                "video_info",
                "inference_start_time",
                "inference_end_time",
            )
        }
        assert httpx.post(srv.url + "/api/results", json=body).status_code == 401
        r = c.post("/api/results", json=body, headers={"Authorization": "Bearer s3cret-token"})
        assert r.status_code == 201 and r.json()["id"] > got[0]["id"]
        assert (
            c.post(
                "/api/results",
                json={**body, "stream": "nope"},
                headers={"Authorization": "Bearer s3cret-token"},
            ).status_code
            == 404
        )
        assert (
            c.post(
                "/api/results",
                json={"stream": "cam"},
                headers={"Authorization": "Bearer s3cret-token"},
            ).status_code
            == 422
        )


def test_streams_with_clips_come_and_go_through_the_api(server) -> None:
    srv = server({"vlm": {"providers": [{"name": "offline", "kind": "local"}]}})
    body = {
        "id": "dyn",
        "url": "synthetic://?fps=15&size=640x360",
        "clips": {"clip_seconds": 1, "frames_per_clip": 3, "provider": "offline"},
    }
    with srv.client() as c:
        for _ in range(2):  # added, analysed, removed, and the same id again
            assert c.post("/api/streams", json=body).status_code == 201
            first = results(c, "dyn", 1)[0]["id"]
            wait_until(lambda f=first: results(c, "dyn", 1)[0]["id"] > f, 20)
            t0 = time.monotonic()
            assert c.delete("/api/streams/dyn").status_code == 200
            assert time.monotonic() - t0 < 5
        exported = c.get("/api/config").json()
        assert exported["streams"] == []
        assert (
            c.post(
                "/api/streams",
                json={**body, "clips": {**body["clips"], "schema": {"type": "object"}}},
            ).status_code
            == 201
        )
        (stream,) = c.get("/api/config").json()["streams"]
        assert stream["clips"]["schema"] == {"type": "object"}  # re-importable as exported
