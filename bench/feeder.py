"""Many paced single-client TCP cameras from one cheap process, for capacity benchmarks.

`ffmpeg -re -stream_loop -1 ... -c copy` bursts at start and drifts at every loop (measured
here: 285 frames in 15.8 s for a 15 fps clip), which would be blamed on the ingest. This
feeder encodes a clip of the synthetic scene once, keeps it as one MPEG-TS chunk per frame and
replays it to every client on a shared wall-clock schedule: exact rate, almost no CPU.

``--scene face`` serves the face scene with a 72 bpm pulse over a 10 s loop (12 beats: the
loop has no seam), for the face analyzers' end-to-end capacity run.

Run: python bench/feeder.py --count N [--fps 15] [--size 1280x720] [--scene moving|face]
[--bitrate BPS]; prints the ports as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time

import av

from vlm_monitor.camera.scene import make_scene
from vlm_monitor.camera.server import ChunkSink


def encode_clip(
    width: int,
    height: int,
    fps: int,
    frames: int,
    scene_kind: str = "moving",
    bit_rate: int = 2_000_000,
) -> list[bytes]:
    sink = ChunkSink()
    out = av.open(sink, "w", format="mpegts", container_options={"omit_video_pes_length": "0"})
    stream = out.add_stream("libx264", rate=fps, options={"preset": "veryfast", "g": str(fps)})
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.bit_rate = bit_rate
    scene = make_scene(width, height, scene_kind)
    chunks: list[bytes] = []
    for i in range(frames):
        image = scene.render(i + 1, i / fps)  # clip time: the pulse loops with the clip
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = i
        for packet in stream.encode(frame):
            out.mux(packet)
            chunks.append(bytes(sink.buf))
            sink.buf.clear()
    for packet in stream.encode(None):
        out.mux(packet)
        chunks.append(bytes(sink.buf))
        sink.buf.clear()
    out.close()
    return [c for c in chunks if c]


async def serve(count: int, fps: int, chunks: list[bytes]) -> None:
    clients: dict[int, asyncio.StreamWriter | None] = {}
    servers = []
    for _ in range(count):
        slot: dict[str, int] = {}

        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter, slot=slot) -> None:
            if clients.get(slot["port"]) is not None:
                w.close()  # single client, like a real camera
                return
            clients[slot["port"]] = w
            with contextlib.suppress(ConnectionError):
                await w.wait_closed()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        slot["port"] = server.sockets[0].getsockname()[1]
        clients[slot["port"]] = None
        servers.append(server)
    print(json.dumps(list(clients)), flush=True)
    period = 1.0 / fps
    start = time.monotonic()
    tick = 0
    while True:
        chunk = chunks[tick % len(chunks)]
        for port, writer in list(clients.items()):
            if writer is None:
                continue
            if writer.is_closing():
                clients[port] = None
                continue
            writer.write(chunk)
        tick += 1
        await asyncio.sleep(max(0.0, start + tick * period - time.monotonic()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--scene", choices=["moving", "face"], default="moving")
    parser.add_argument("--bitrate", type=int, default=2_000_000, help="bits/s")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    seconds = 10 if args.scene == "face" else 4
    chunks = encode_clip(width, height, args.fps, args.fps * seconds, args.scene, args.bitrate)
    asyncio.run(serve(args.count, args.fps, chunks))


if __name__ == "__main__":
    main()
