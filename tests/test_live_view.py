"""The live view scaled down and slowed down (``?width=&fps=``), as a wall of thumbnails
uses it: the size asked for, frames shared by every viewer of that size, bad input refused."""

from __future__ import annotations

import asyncio
import json
import math

import cv2
import httpx
import numpy as np
import pytest
import websockets

from test_api import SYN, live
from vlm_monitor.hub import wire

BOUNDARY = b"--vlmframe\r\n"


async def read_parts(client: httpx.AsyncClient, url: str, count: int) -> list[tuple[dict, bytes]]:
    """The first ``count`` parts of a multipart MJPEG answer: (headers, JPEG)."""
    parts: list[tuple[dict, bytes]] = []
    buf = b""
    async with client.stream("GET", url) as r:
        assert r.status_code == 200, r.status_code
        async for chunk in r.aiter_bytes():
            buf += chunk
            while True:
                start = buf.find(BOUNDARY)
                head_end = buf.find(b"\r\n\r\n", start)
                if start < 0 or head_end < 0:
                    break
                lines = buf[start + len(BOUNDARY) : head_end].decode().split("\r\n")
                headers = dict(line.split(": ", 1) for line in lines)
                end = head_end + 4 + int(headers["Content-Length"])
                if len(buf) < end:
                    break
                parts.append((headers, buf[head_end + 4 : end]))
                buf = buf[end:]
            if len(parts) >= count:
                return parts[:count]
    return parts


def test_scaled_jpeg_and_shared_slow_mjpeg(server) -> None:
    srv = server({"streams": [{"id": "cam", "url": SYN}]})
    with srv.client() as c:
        live(c, "cam")
        r = c.get("/api/streams/cam/frame.jpg", params={"width": 160})
        assert r.status_code == 200 and r.headers["X-Frame-Width"] == "160"
        small = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
        assert small.shape == (90, 160, 3)
        # Never upscaled: a width beyond the frame's is the full-size picture.
        r = c.get("/api/streams/cam/frame.jpg", params={"width": 1920})
        assert r.headers["X-Frame-Width"] == "640"

    async def two_viewers() -> list[list[tuple[dict, bytes]]]:
        url = "/api/streams/cam/mjpeg?fps=2&width=160"
        async with httpx.AsyncClient(base_url=srv.url, timeout=20) as client:
            return await asyncio.gather(read_parts(client, url, 5), read_parts(client, url, 5))

    a, b = asyncio.run(two_viewers())
    for parts in (a, b):
        assert all(h["X-Frame-Width"] == "160" and h["X-Frame-Height"] == "90" for h, _ in parts)
        # One frame per half-second slot of the wall clock: the rate asked for.
        slots = [math.floor(float(h["X-Frame-Timestamp"]) / 0.5) for h, _ in parts]
        assert slots == sorted(set(slots)), slots
    # Both viewers take the same frames, so each is encoded once and sent to both as is.
    seen_a = {h["X-Frame-Seq"]: body for h, body in a}
    common = [(body, seen_a[h["X-Frame-Seq"]]) for h, body in b if h["X-Frame-Seq"] in seen_a]
    assert len(common) >= 3, ([h["X-Frame-Seq"] for h, _ in a], [h["X-Frame-Seq"] for h, _ in b])
    assert all(x == y for x, y in common)


def test_live_view_refuses_bad_sizes_rates_and_unknown_streams(server) -> None:
    srv = server({"streams": [{"id": "cam", "url": SYN}]})
    with srv.client() as c:
        for path in ("/api/streams/cam/frame.jpg", "/api/streams/cam/mjpeg"):
            for width in (0, 63, 3841, "wide"):
                r = c.get(path, params={"width": width})
                assert r.status_code == 422 and "width" in r.json()["error"], (path, width)
        for fps in (0, 0.1, 61, "fast"):
            r = c.get("/api/streams/cam/mjpeg", params={"fps": fps, "width": 160})
            assert r.status_code == 422 and "fps" in r.json()["error"], fps
        for path in ("/api/streams/nope/frame.jpg", "/api/streams/nope/mjpeg"):
            r = c.get(path, params={"width": 160})
            assert r.status_code == 404 and "nope" in r.json()["error"], path


def test_wall_channel_sends_the_streams_asked_for_and_refuses_bad_input(server) -> None:
    srv = server({"streams": [{"id": "cam", "url": SYN}, {"id": "other", "url": SYN}]})
    with srv.client() as c:
        live(c, "cam")
        live(c, "other")
    base = srv.url.replace("http", "ws") + "/ws/wall"

    async def talk() -> tuple[list[dict], list[wire.FrameMessage]]:
        for bad in ("?width=10", "?width=4000", "?fps=0.1", "?fps=100"):
            with pytest.raises(websockets.InvalidStatus):
                async with websockets.connect(base + bad):
                    pass
        errors: list[dict] = []
        frames: list[wire.FrameMessage] = []
        async with websockets.connect(base + "?fps=4&width=160") as ws:
            for bad in ("nope", '{"streams": "cam"}', '{"streams": [1]}', "[]"):
                await ws.send(bad)
                errors.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            await ws.send(json.dumps({"streams": ["cam", "ghost"]}))
            while len(frames) < 4:
                msg = await asyncio.wait_for(ws.recv(), 10)
                if isinstance(msg, str):
                    errors.append(json.loads(msg))
                else:
                    frames.append(wire.unpack(msg))
            # A stream removed and added again: asked for anew, its pictures come again.
            async with httpx.AsyncClient(base_url=srv.url) as http:
                assert (await http.delete("/api/streams/cam")).status_code == 200
                created = await http.post("/api/streams", json={"id": "cam", "url": SYN})
                assert created.status_code == 201
            await ws.send(json.dumps({"streams": ["cam"]}))
            while True:  # until a frame of the new source, which counts from 1 again
                msg = await asyncio.wait_for(ws.recv(), 20)
                if isinstance(msg, bytes) and wire.unpack(msg).seq < frames[-1].seq:
                    break
        return errors, frames

    errors, frames = asyncio.run(talk())
    assert [e["type"] for e in errors] == ["error"] * 5
    assert "streams" in errors[1]["message"] and errors[4]["unknown"] == ["ghost"]
    # Only the stream asked for, at the width asked for.
    assert {f.stream for f in frames} == {"cam"}
    assert all((f.width, f.height) == (160, 90) for f in frames)
    pixels = cv2.imdecode(np.frombuffer(frames[0].jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert pixels.shape == (90, 160, 3)
    seqs = [f.seq for f in frames]
    assert seqs == sorted(set(seqs))
