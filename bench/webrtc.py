"""WebRTC benchmark: prints one JSON object on stdout (progress on stderr).

An aiortc publisher in this process sends 720p15 frames of the synthetic scene (with the
timestamp strip) over WHIP to a real backend on loopback; the strip gives glass-to-glass
latency (same clock, same machine):

- ``whip_to_hub_ms``: publisher capture -> the frame as a hub subscriber gets it (read with
  ``/internal/video/latest-frame?after_seq=``, so it includes that JPEG encode);
- ``whip_to_webrtc_viewer_ms``: publisher capture -> a WHEP viewer in this process (VP8 twice);
- ``cpu_whip_vs_tcp``: backend CPU for one 720p15 stream published over WHIP vs the same
  picture from the test camera over MPEG-TS/TCP (ratio).

Run: .venv/bin/python bench/webrtc.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import sys
import tempfile
import time
from pathlib import Path

import aioice.ice
import cv2
import httpx
import numpy as np
import psutil
from aiortc import RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from av import VideoFrame

from vlm_monitor.camera import strip
from vlm_monitor.camera.scene import SyntheticScene
from vlm_monitor.stats import percentile
from vlm_monitor.testing import CameraProcess, ServerProcess

WIDTH, HEIGHT, FPS = 1280, 720, 15


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


class SceneTrack(VideoStreamTrack):
    def __init__(self) -> None:
        super().__init__()
        self.scene = SyntheticScene(WIDTH, HEIGHT)
        self.seq = 0
        self.start = time.monotonic()

    async def recv(self) -> VideoFrame:
        self.seq += 1
        await asyncio.sleep(max(0.0, self.start + self.seq / FPS - time.monotonic()))
        frame = VideoFrame.from_ndarray(self.scene.render(self.seq, time.time()), format="bgr24")
        frame.pts, frame.time_base = self.seq * 6000, fractions.Fraction(1, 90000)
        return frame


async def negotiate(pc: RTCPeerConnection, url: str) -> None:
    await pc.setLocalDescription(await pc.createOffer())
    async with httpx.AsyncClient(timeout=20) as c:
        r = await c.post(
            url, content=pc.localDescription.sdp, headers={"Content-Type": "application/sdp"}
        )
    r.raise_for_status()
    await pc.setRemoteDescription(RTCSessionDescription(r.text, "answer"))


async def measure(base: str, seconds: float) -> dict:
    publisher = RTCPeerConnection()
    publisher.addTrack(SceneTrack())
    await negotiate(publisher, f"{base}/whip/pub")
    viewer = RTCPeerConnection()
    viewer.addTransceiver("video", direction="recvonly")
    viewer_lat: list[float] = []

    @viewer.on("track")
    def on_track(track) -> None:  # type: ignore[no-untyped-def]
        async def read() -> None:
            while True:
                frame = await track.recv()
                got = strip.read(frame.to_ndarray(format="bgr24"))
                if got:
                    viewer_lat.append((time.time() - got[1]) * 1000)

        tasks.add(asyncio.ensure_future(read()))

    tasks: set[asyncio.Task[None]] = set()
    await asyncio.sleep(2)  # the stream goes live
    await negotiate(viewer, f"{base}/whep/pub")
    hub_lat: list[float] = []
    deadline = time.monotonic() + seconds
    seq = 0
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        while time.monotonic() < deadline:
            r = await c.get(
                "/internal/video/latest-frame",
                params={"stream": "pub", "after_seq": seq, "timeout": 2},
            )
            if r.status_code != 200:
                continue
            now = time.time()
            seq = int(r.headers["x-frame-seq"])
            got = strip.read(cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR))
            if got:
                hub_lat.append((now - got[1]) * 1000)
    for task in tasks:
        task.cancel()
    await viewer.close()
    await publisher.close()
    return {
        "whip_to_hub_ms": {
            "p50": percentile(hub_lat, 50, 1),
            "p99": percentile(hub_lat, 99, 1),
            "n": len(hub_lat),
        },
        "whip_to_webrtc_viewer_ms": {
            "p50": percentile(viewer_lat[30:], 50, 1),
            "p99": percentile(viewer_lat[30:], 99, 1),
            "n": len(viewer_lat),
        },
    }


async def publish_for(base: str, seconds: float) -> None:
    publisher = RTCPeerConnection()
    publisher.addTrack(SceneTrack())
    await negotiate(publisher, f"{base}/whip/pub")
    await asyncio.sleep(seconds)
    await publisher.close()


def cpu_of(proc: psutil.Process, run) -> float:  # type: ignore[no-untyped-def]
    before = proc.cpu_times()
    t0 = time.monotonic()
    run()
    after = proc.cpu_times()
    return (after.user + after.system - before.user - before.system) / (time.monotonic() - t0)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]  # loopback only
    report: dict = {"size": f"{WIDTH}x{HEIGHT}", "fps": FPS}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        srv = ServerProcess(
            tmp,
            {
                "streams": [{"id": "pub", "url": "whip://"}],
                "webrtc": {"ice_addresses": ["127.0.0.1"]},
            },
        )
        try:
            report.update(asyncio.run(measure(srv.url, args.seconds)))
            log(f"latency: {report}")
            proc = psutil.Process(srv.proc.pid)
            time.sleep(3)  # the previous publish's teardown
            whip_cpu = cpu_of(proc, lambda: asyncio.run(publish_for(srv.url, args.seconds)))
        finally:
            srv.stop()
        cam = CameraProcess(tmp, fps=FPS, size=f"{WIDTH}x{HEIGHT}")
        srv = ServerProcess(tmp, {"streams": [{"id": "tcp", "url": cam.url}]}, name="server2")
        try:
            time.sleep(3)
            tcp_cpu = cpu_of(psutil.Process(srv.proc.pid), lambda: time.sleep(args.seconds))
        finally:
            srv.stop()
            cam.stop()
    report["cpu_cores"] = {"whip": round(whip_cpu, 3), "tcp": round(tcp_cpu, 3)}
    report["cpu_whip_vs_tcp"] = round(whip_cpu / tcp_cpu, 2) if tcp_cpu else None
    log(f"cpu: {report['cpu_cores']}")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
