"""Two backend nodes sharing a real redis-server (started here on a free port): events and
Socket.IO results produced on node A reach clients of node B, and Redis restarting is
survived."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import httpx
import socketio
import websockets

from vlm_monitor.testing import wait_until

FACE = "synthetic://?fps=10&size=640x360&scene=face"
PLAIN = "synthetic://?fps=5&size=320x180"


def result(stream: str, text: str) -> dict:
    now = time.time()
    return {
        "stream": stream,
        "result": text,
        "video_info": {"clip_id": f"c{now}"},
        "inference_start_time": now - 1,
        "inference_end_time": now,
    }


def node(server, redis_server, name: str, streams: list | None = None):
    return server(
        {
            "bus": {"kind": "redis", "url": redis_server.url, "node_id": name},
            "streams": streams or [],
        }
    )


class Watcher:
    """A /ws/events client and a Socket.IO client, both on one node."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.events: list[dict] = []
        self.emotions: list[dict] = []
        self.sio = socketio.AsyncClient(reconnection=True)

        @self.sio.on("video_emotion_result", namespace="/monitor")
        async def on_emotion(data: dict) -> None:
            self.emotions.append(data)

    async def run(self, seconds: float) -> None:
        await self.sio.connect(self.url, namespaces=["/monitor"], transports=["websocket"])
        try:
            async with websockets.connect(self.url.replace("http", "ws") + "/ws/events") as ws:
                try:
                    async with asyncio.timeout(seconds):
                        async for message in ws:
                            self.events.append(json.loads(message))
                except TimeoutError:
                    pass
        finally:
            await self.sio.disconnect()


def test_results_from_node_a_reach_clients_of_node_b(server, redis_server) -> None:
    a = node(server, redis_server, "A", [{"id": "cam-a", "url": FACE, "analyzers": ["emotion"]}])
    b = node(server, redis_server, "B")
    watcher = Watcher(b.url)

    async def run() -> None:
        task = asyncio.create_task(watcher.run(8))
        await asyncio.sleep(2)
        async with httpx.AsyncClient(base_url=a.url) as c:
            posted = await c.post("/api/results", json=result("cam-a", "a person waves"))
            assert posted.status_code == 201, posted.text
        await task

    asyncio.run(run())
    analysis = [e for e in watcher.events if e["type"] == "analysis"]
    assert analysis and all(e["stream"] == "cam-a" and e["node"] == "A" for e in analysis)
    results = [e for e in watcher.events if e["type"] == "result"]
    assert results and results[0]["node"] == "A" and results[0]["result"] == "a person waves"
    assert watcher.emotions, "Socket.IO client on B got A's emotion results"
    assert {d["stream_name"] for d in watcher.emotions} == {"cam-a"}
    counts = Counter(d["video_timestamp"] for d in watcher.emotions)
    assert max(counts.values()) == 1, "each result once (B does not re-emit A's results)"
    status = httpx.get(b.url + "/api/status").json()["bus"]
    assert status["kind"] == "redis" and status["connected"] and status["received"] > 0
    assert "vlm_bus_connected 1.0" in httpx.get(b.url + "/metrics").text


def test_nodes_survive_a_redis_restart(server, redis_server) -> None:
    a = node(server, redis_server, "A", [{"id": "cam-a", "url": PLAIN}])
    b = node(server, redis_server, "B")
    with httpx.Client(base_url=a.url) as c:
        redis_server.stop()
        wait_until(lambda: not httpx.get(b.url + "/api/status").json()["bus"]["connected"], 20)
        # The nodes keep working on their own while Redis is away.
        assert c.post("/api/results", json=result("cam-a", "while down")).status_code == 201
        assert c.get("/health").json() == {"status": "ok"}
        redis_server.start()
        wait_until(
            lambda: all(
                httpx.get(n.url + "/api/status").json()["bus"]["connected"] for n in (a, b)
            ),
            20,
            what="both nodes reconnected",
        )

        async def after() -> list[dict]:
            seen: list[dict] = []
            async with websockets.connect(b.url.replace("http", "ws") + "/ws/events") as ws:
                await ws.recv()  # hello
                async with httpx.AsyncClient(base_url=a.url) as ac:
                    await ac.post("/api/results", json=result("cam-a", "after restart"))
                async with asyncio.timeout(10):
                    while not any(e.get("result") == "after restart" for e in seen):
                        seen.append(json.loads(await ws.recv()))
            return seen

        seen = asyncio.run(after())
    assert any(e.get("node") == "A" and e.get("result") == "after restart" for e in seen)
    assert httpx.get(b.url + "/api/status").json()["bus"]["reconnects"] >= 1
