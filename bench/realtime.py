"""Realtime (/ws/video) benchmark: prints one JSON object on stdout (progress on stderr).

A real backend process and the test provider (tests/fake_realtime.py, DashScope protocol) on
this machine; clients send espeak-ng speech as 100 ms PCM chunks at real time and 640x480
JPEG frames at 4 fps (the server forwards 2 fps).

- ``audio_forward_ms``: client send -> provider receives that chunk (same monotonic clock),
  p50/p99, for chunks sent while the user is speaking (the pre-roll before an onset is held
  until the VAD confirms speech, by design): the latency the server adds per forwarded chunk
  (goal p99 <= 5 ms, 1 session);
- ``vad_ms_per_chunk``: Silero VAD per 32 ms chunk, in-process;
- ``onset_to_speech_started_ms``: real-time speech onset sent -> ``speech.started`` received
  (goal <= 300 ms; VAD needs min_speech_ms = 250 ms of speech by design);
- ``capacity``: sessions at once with audio at real time and video: a step passes when no
  error comes back and 99 % of audio chunks are forwarded within one chunk period (100 ms),
  i.e. nothing queues up (goal >= 50). Clients run in their own process.

Run: .venv/bin/python bench/realtime.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import psutil
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fake_realtime import FakeRealtime
from vlm_monitor.realtime.vad import Vad
from vlm_monitor.stats import percentile
from vlm_monitor.testing import ServerProcess

CHUNK = 3200  # 100 ms of 16 kHz s16le


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def make_speech(tmp: Path) -> bytes:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise SystemExit("espeak-ng missing: run make test (scripts/install-os-deps.sh)")
    wav = tmp / "s.wav"
    text = "Hello, can you tell me what you see on the camera right now?"
    subprocess.run([espeak, "-v", "en", "-s", "160", "-w", str(wav), text], check=True)
    out = subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-i",
            str(wav),
            "-ar",
            "16000",
            "-ac",
            "1",
            "-f",
            "s16le",
            "-",
        ],
        check=True,
        capture_output=True,
    )
    return out.stdout


def vad_cost(speech: bytes) -> dict:
    vad = Vad()
    audio = speech * 5
    t0 = time.perf_counter()
    vad.feed(audio)
    per_chunk = (time.perf_counter() - t0) / (len(audio) // 1024) * 1000
    return {"ms_per_32ms_chunk": round(per_chunk, 3), "share_of_one_core": round(per_chunk / 32, 4)}


async def session(
    url: str, speech: bytes, frame: str, seconds: float, record: dict, tag: int = 0
) -> None:
    """One client at real time: silence, speech, silence, ... and 4 fps video."""
    sent: dict[str, float] = {}
    onsets: list[float] = []
    errors: list[dict] = []
    audio = bytes(16000) + speech + bytes(32000 * 2)  # 0.5 s silence, speech, 2 s silence
    async with websockets.connect(url, max_size=None) as ws:
        await ws.recv()  # ready
        start = time.monotonic()
        speech_sent_at: list[float] = []
        started_at: list[float] = []

        speaking = False

        async def reader() -> None:
            nonlocal speaking
            async for message in ws:
                event = json.loads(message)
                if event["type"] == "speech.started":
                    started_at.append(time.monotonic())
                    speaking = True
                elif event["type"] == "speech.stopped":
                    speaking = False
                elif event["type"] == "error":
                    errors.append(event)

        async def video() -> None:
            while time.monotonic() - start < seconds:
                await ws.send(json.dumps({"type": "video", "data": frame}))
                await asyncio.sleep(0.25)

        async def talk() -> None:
            n = 0
            while time.monotonic() - start < seconds:
                for i in range(0, len(audio), CHUNK):
                    if i == 16000:  # the onset is at 0.5 s
                        speech_sent_at.append(time.monotonic())
                    # Two marker samples make every chunk unique, to match it at the provider.
                    marker = np.array([tag, n % 32768], "<i2").tobytes()
                    data = base64.b64encode(marker + audio[i + 4 : i + CHUNK]).decode()
                    if speaking:  # forwarded as it comes (pre-roll waits for the onset)
                        sent[f"{tag}:{n % 32768}"] = time.monotonic()
                    await ws.send(json.dumps({"type": "audio", "data": data}))
                    n += 1
                    await asyncio.sleep(max(0.0, start + n * 0.1 - time.monotonic()))

        read = asyncio.create_task(reader())
        await asyncio.gather(video(), talk())
        await asyncio.sleep(0.5)
        read.cancel()
        for spoke in speech_sent_at:
            after = [t for t in started_at if t >= spoke]
            if after:
                onsets.append(after[0] - spoke)
    record["sent"], record["onsets"], record["errors"] = sent, onsets, len(errors)


def forward_latencies(fake: FakeRealtime, records: list[dict]) -> list[float]:
    arrived = {}
    for event in fake.of("input_audio_buffer.append"):
        tag, n = np.frombuffer(base64.b64decode(event["audio"])[:4], "<i2")
        arrived[f"{tag}:{n}"] = event["_at"]
    return [
        (arrived[key] - at) * 1000
        for record in records
        for key, at in record["sent"].items()
        if key in arrived
    ]


def clients(url: str, n: int, seconds: float, speech: bytes, frame: str) -> list[dict]:
    """The load runs in its own process, so the clients do not share a GIL with the fake
    provider whose receive times are measured."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "speech.pcm").write_bytes(speech)
        (Path(tmp) / "frame.b64").write_text(frame)
        out = subprocess.run(
            [sys.executable, __file__, "--clients", str(n), "--seconds", str(seconds),
             "--url", url, "--inputs", tmp],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
    records: list[dict] = json.loads(out.stdout)
    return records


async def run_sessions(url: str, n: int, speech: bytes, frame: str, seconds: float) -> list[dict]:
    records: list[dict] = [{} for _ in range(n)]
    await asyncio.gather(
        *(session(url, speech, frame, seconds, r, tag) for tag, r in enumerate(records))
    )
    return records


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--clients", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--inputs", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.clients:
        inputs = Path(args.inputs)
        speech, frame = (inputs / "speech.pcm").read_bytes(), (inputs / "frame.b64").read_text()
        recs = asyncio.run(run_sessions(args.url, args.clients, speech, frame, args.seconds))
        print(json.dumps(recs))
        return 0
    seconds = 8.0 if args.quick else 15.0
    report: dict = {"cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        speech = make_speech(tmp)
        report["vad"] = vad_cost(speech)
        log(f"vad: {report['vad']}")
        img = np.full((480, 640, 3), 120, np.uint8)
        cv2.putText(img, "bench", (200, 240), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
        frame = base64.b64encode(cv2.imencode(".jpg", img)[1].tobytes()).decode()
        os.environ["BENCH_RT_KEY"] = "sk-bench"
        fake = FakeRealtime(delta_interval=0.05)
        config = {
            "realtime": {
                "providers": [
                    {
                        "kind": "dashscope",
                        "url": fake.url("dashscope"),
                        "api_key_env": "BENCH_RT_KEY",
                    }
                ],
                "max_sessions": 1000,
            }
        }
        srv = ServerProcess(tmp, config, name="server")
        url = srv.url.replace("http", "ws") + "/ws/video"
        proc = psutil.Process(srv.proc.pid)
        try:
            records = clients(url, 1, seconds, speech, frame)
            lat = forward_latencies(fake, records)
            report["one_session"] = {
                "audio_forward_ms_p50": percentile(lat, 50, 2),
                "audio_forward_ms_p99": percentile(lat, 99, 2),
                "onset_to_speech_started_ms": [round(o * 1000) for o in records[0]["onsets"]],
                "goal_forward_p99_le_5ms": (percentile(lat, 99) or 99) <= 5,
            }
            log(f"one session: {report['one_session']}")
            steps = []
            best = 0
            for n in (10, 25, 50, 75, 100):
                fake.events.clear()
                proc.cpu_percent()
                me = psutil.Process()
                me.cpu_percent()
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.monotonic()
                records = clients(url, n, seconds, speech, frame)
                cpu = proc.cpu_percent() / 100
                wall = time.monotonic() - t0
                fake_cpu = me.cpu_percent() / 100
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
                lat = forward_latencies(fake, records)
                errors = sum(r["errors"] for r in records)
                onsets = [o for r in records for o in r["onsets"]]
                row = {
                    "sessions": n,
                    "server_cpu_cores": round(cpu, 2),
                    "clients_cpu_cores": round(used / wall, 2),
                    "fake_provider_cpu_cores": round(fake_cpu, 2),
                    "audio_forward_ms_p50": percentile(lat, 50, 2),
                    "audio_forward_ms_p99": percentile(lat, 99, 2),
                    "onset_to_started_ms_p50": round((percentile(onsets, 50) or 0) * 1000),
                    "errors": errors,
                }
                # Keeping up: no error, and 99 % of chunks forwarded within one chunk period
                # (100 ms); beyond that, audio queues up.
                row["keeps_up"] = errors == 0 and (percentile(lat, 99) or 999) <= 100
                log(f"capacity: {row}")
                steps.append(row)
                if not row["keeps_up"]:
                    break
                best = n
            report["capacity"] = {
                "sessions_that_keep_up": best,
                "goal_ge_50": best >= 50,
                "steps": steps,
            }
        finally:
            srv.stop()
            fake.close()
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
