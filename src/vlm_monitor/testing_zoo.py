"""A camera zoo: the kinds of camera users have, encoded and served by FFmpeg and GStreamer.

Each ``Variant`` says what a camera is (shape as displayed, codec, rate, a face pulsing at a
known rate or a test pattern) and how it is served; ``Zoo.start(name)`` makes its media (once,
into a cache directory) and starts its peer (``testing_peers``). Faces come from our own
scene code as raw pixels, and are encoded by the ``ffmpeg`` command line, never by ours.
Broken variants come with ``recover()``: the camera fixed, the same URL working again.
"""

from __future__ import annotations

import os
import random
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from vlm_monitor.camera.scene import make_scene
from vlm_monitor.testing import free_port
from vlm_monitor.testing_peers import (
    ByteCamera,
    FfmpegCamera,
    GstRtspCamera,
    HlsCamera,
    HttpCamera,
    paced,
    read_jpegs,
)

USER, PASSWORD = "admin", "zoo-s3cret-pw"  # the cameras' credentials (digest/basic)
FACE_BPM = 72.0
# Encoders smooth away a 0.6 % skin pulse (the live scene's default); 2 % survives H.264.
FACE_PULSE = 0.02
TS_PACKET = 188


@dataclass(frozen=True)
class Variant:
    name: str
    serve: str  # file | tcp | mjpeg | hls | rtsp | bytes
    shape: tuple[int, int]  # (width, height) as displayed
    codec: str = "h264"  # FFmpeg's decoder name
    fps: float = 15
    media: str = ""  # the file it is made from (in the zoo's cache)
    face: bool = False  # the packaged face, pulsing at FACE_BPM
    stored: tuple[int, int] | None = None  # the stored shape when a display rotation turns it
    broken: str | None = None  # what the camera does wrong (None: a good camera)
    gst: bool = False  # needs GStreamer's RTSP server
    rtsp: dict[str, object] = field(default_factory=dict)  # GstRtspCamera arguments


GOOD = [
    Variant("h264_4x3", "file", (640, 480), media="face_4x3.mp4", face=True),
    Variant("square", "file", (480, 480), media="face_square.mp4", face=True),
    Variant("portrait", "file", (360, 640), media="face_portrait.mp4", face=True),
    Variant("rotated", "file", (360, 640), media="rotated.mp4", stored=(640, 360)),
    Variant("hevc_tcp", "tcp", (640, 360), "hevc", media="hevc.ts"),
    Variant("mjpeg_http", "mjpeg", (640, 480), "mjpeg", media="face_mjpeg", face=True),
    Variant("hls", "hls", (640, 360), media="h264.mp4"),
    Variant("fps5", "file", (640, 360), fps=5, media="fps5.mp4"),
    Variant("uhd10", "file", (3840, 2160), fps=10, media="uhd10.mp4"),
    Variant("bframes", "tcp", (640, 360), media="bframes.ts"),
    Variant("vfr", "file", (640, 360), fps=30, media="vfr.mkv"),
    Variant("video_audio", "tcp", (640, 360), media="video_audio.ts"),
    Variant("hevc_rtsp", "rtsp", (640, 360), "hevc", gst=True, rtsp={"codec": "h265"}),
    Variant("rtsp_digest", "rtsp", (640, 360), gst=True,
            rtsp={"audio": True, "auth": "digest", "user": USER, "password": PASSWORD}),
    Variant("rtsp_basic", "rtsp", (640, 360), gst=True,
            rtsp={"auth": "basic", "user": USER, "password": PASSWORD}),
]  # fmt: skip
BROKEN = [
    Variant("truncated", "file", (640, 360), broken="the file is cut short (no index)"),
    Variant("garbage", "bytes", (640, 360), broken="junk bytes between packets"),
    Variant("stall", "bytes", (640, 360), broken="goes silent after its first keyframe"),
    Variant("resize", "bytes", (1280, 720), broken="changes resolution mid-stream"),
    Variant("audio_only", "bytes", (640, 360), broken="sends audio only"),
    Variant("comes_back_changed", "tcp", (1280, 720), "hevc",
            broken="restarts as 1280x720 H.265 (was 640x480 H.264)"),
    Variant("mjpeg_wrong_password", "mjpeg", (640, 480), "mjpeg", media="face_mjpeg",
            broken="wrong password"),
    Variant("rtsp_wrong_password", "rtsp", (640, 360), gst=True, broken="wrong password",
            rtsp={"auth": "digest", "user": USER, "password": PASSWORD}),
]  # fmt: skip
VARIANTS = {v.name: v for v in GOOD + BROKEN}


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def testsrc(size: str, fps: float, seconds: float) -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}", "-t", str(seconds)]


def x264(fps: float, *extra: str) -> list[str]:
    gop = str(max(1, round(fps)))  # a keyframe a second: segments and reconnects start soon
    return ["-c:v", "libx264", "-preset", "veryfast", "-g", gop, "-pix_fmt", "yuv420p", *extra]


def scene_frames(
    kind: str,
    shape: tuple[int, int],
    fps: float,
    seconds: float,
    turn: int | None = None,
    marker: bool = False,
) -> Iterator[np.ndarray]:
    """Our scene at media time i/fps; ``marker`` puts a white block in the displayed top-left
    corner (to tell which way is up); ``turn`` (a cv2.ROTATE_* code) turns it for storage."""
    scene = make_scene(shape[0], shape[1], kind, FACE_BPM, FACE_PULSE)
    for i in range(round(fps * seconds)):
        image = scene.render(i + 1, i / fps)
        if marker:
            cv2.rectangle(image, (0, 0), (shape[0] // 4, shape[1] // 6), (255, 255, 255), -1)
        yield image if turn is None else cv2.rotate(image, turn)


def encode_frames(frames: Iterable[np.ndarray], fps: float, out: list[str]) -> None:
    """Raw BGR frames piped into the ffmpeg command line, encoded with ``out`` arguments."""
    first = next(iter(frames := iter(frames)))
    h, w = first.shape[:2]
    args = ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
            "-s", f"{w}x{h}", "-r", str(fps), "-i", "-", *out]  # fmt: skip
    proc = subprocess.Popen(args, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(first.tobytes())
    for image in frames:
        proc.stdin.write(image.tobytes())
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError(f"ffmpeg failed: {' '.join(args)}")


# A face loop of 20 s holds whole pulse (72 bpm) and sway (0.2 Hz) periods: seamless.
FACE_SECONDS = 20.0


def _face(shape: tuple[int, int], seconds: float) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        frames = scene_frames("face", shape, 15, seconds)
        encode_frames(frames, 15, [*x264(15, "-crf", "23"), str(path)])

    return make


def _rotated(path: Path) -> None:
    # Stored turned clockwise; the display matrix (90 degrees counter-clockwise) turns it back.
    plain = path.with_name(f"{path.name}.plain.mp4")
    frames = scene_frames("moving", (360, 640), 15, 4, cv2.ROTATE_90_CLOCKWISE, marker=True)
    encode_frames(frames, 15, [*x264(15), str(plain)])
    ffmpeg("-i", str(plain), "-c", "copy", "-metadata:s:v:0", "rotate=90", "-f", "mp4", str(path))
    plain.unlink()


def _mjpeg(path: Path) -> None:
    path.mkdir()
    frames = scene_frames("face", (640, 480), 15, FACE_SECONDS)
    encode_frames(frames, 15, ["-c:v", "mjpeg", "-q:v", "3", str(path / "%04d.jpg")])


def _src(size: str, fps: float, seconds: float, *out: str) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        ffmpeg(*testsrc(size, fps, seconds), *out, str(path))

    return make


SINE = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "4"]
AAC_TS = ["-c:a", "aac", "-f", "mpegts"]


def _with_audio(path: Path) -> None:
    ffmpeg(*testsrc("640x360", 15, 4), *SINE, *x264(15), *AAC_TS, str(path))


def _audio(path: Path) -> None:
    ffmpeg(*SINE, *AAC_TS, str(path))


def _vfr(path: Path) -> None:
    drop = "select='not(eq(mod(n\\,5)\\,1))*not(eq(mod(n\\,7)\\,3))'"  # irregular gaps
    ffmpeg(*testsrc("640x360", 30, 4), "-vf", drop, "-fps_mode", "vfr", *x264(30), str(path))


def _resize(path: Path) -> None:
    """MPEG-TS files joined byte for byte: one stream whose resolution changes at the joint."""
    parts = [path.parent / "h264_480.ts", path.parent / "h264_720.ts"]
    path.write_bytes(b"".join(p.read_bytes() for p in parts))


# Closed GOPs, as cameras send: a client joining (or a loop restarting) at any keyframe decodes.
HEVC = ["-c:v", "libx265", "-x265-params", "log-level=error:open-gop=0", "-preset", "veryfast"]
HEVC += ["-g", "15", "-pix_fmt", "yuv420p"]
TS = ["-f", "mpegts"]
MEDIA: dict[str, Callable[[Path], None]] = {
    "face_4x3.mp4": _face((640, 480), FACE_SECONDS),
    "face_square.mp4": _face((480, 480), FACE_SECONDS),
    "face_portrait.mp4": _face((360, 640), FACE_SECONDS),
    "rotated.mp4": _rotated,
    "face_mjpeg": _mjpeg,
    "hevc.ts": _src("640x360", 15, 4, *HEVC, *TS),
    "h264.mp4": _src("640x360", 15, 4, *x264(15)),
    "h264.ts": _src("640x360", 15, 4, *x264(15), *TS),
    "fps5.mp4": _src("640x360", 5, 4, *x264(5)),
    "uhd10.mp4": _src("3840x2160", 10, 2, *x264(10, "-preset", "ultrafast")),
    "bframes.ts": _src("640x360", 15, 4, *x264(15, "-bf", "2", "-g", "30"), *TS),
    "vfr.mkv": _vfr,
    "video_audio.ts": _with_audio,
    "audio.ts": _audio,
    "h264_480.ts": _src("640x480", 15, 3, *x264(15), *TS),
    "h264_720.ts": _src("1280x720", 15, 3, *x264(15), *TS),
    "hevc_720.ts": _src("1280x720", 15, 4, *HEVC, *TS),
    "resize.ts": _resize,
}
NEEDS = {"resize.ts": ("h264_480.ts", "h264_720.ts")}
Producer = Callable[[], Iterable[bytes]]


class Peer:
    """A running camera: ``url`` to give a stream; ``recover()`` for broken ones."""

    def __init__(
        self, url: str, stops: list[Callable[[], None]], recover: Callable[[], None] | None = None
    ) -> None:
        self.url, self._stops, self._recover = url, stops, recover

    def recover(self) -> None:
        if self._recover is None:
            raise RuntimeError("this camera has nothing to recover from")
        self._recover()

    def stop(self) -> None:
        for stop in self._stops:
            stop()


class Zoo:
    """``cache``: where media are made once (shared by a test session or a benchmark run);
    ``workdir``: logs and per-run files; ``rtsp_script``: tests/support/rtsp_server.py."""

    def __init__(self, cache: Path, workdir: Path, rtsp_script: Path | None = None) -> None:
        self.cache, self.workdir, self.rtsp_script = cache, workdir, rtsp_script
        cache.mkdir(parents=True, exist_ok=True)
        workdir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._making: dict[str, threading.Lock] = {}

    def media(self, name: str) -> Path:
        """Made once per cache, also when cameras start from several threads at once."""
        path = self.cache / name
        with self._lock:
            making = self._making.setdefault(name, threading.Lock())
        with making:
            if not path.exists():
                for need in NEEDS.get(name, ()):
                    self.media(need)
                tmp = path.with_name(f".{os.getpid()}.{name}")
                MEDIA[name](tmp)
                tmp.rename(path)  # whole or absent, for other processes sharing the cache
        return path

    def start(self, name: str) -> Peer:
        v = VARIANTS[name]
        starter = getattr(self, f"_start_{v.name}", None) or getattr(self, f"_serve_{v.serve}")
        peer: Peer = starter(v)
        return peer

    # Good cameras, by how they are served.

    def _serve_file(self, v: Variant) -> Peer:
        return Peer(f"file://{self.media(v.media)}", [])

    def _serve_tcp(self, v: Variant) -> Peer:
        cam = FfmpegCamera(self.media(v.media), self.workdir)
        cam.wait_listening()
        return Peer(cam.url, [cam.stop])

    def _serve_mjpeg(self, v: Variant) -> Peer:
        cam = HttpCamera(read_jpegs(self.media(v.media)), 15, user=USER, password=PASSWORD)
        url = cam.url("mjpeg", USER, "not-the-password" if v.broken else PASSWORD)
        return Peer(url, [cam.close])

    def _serve_hls(self, v: Variant) -> Peer:
        cam = HlsCamera(self.media(v.media), self.workdir)
        cam.wait_ready()
        return Peer(cam.url, [cam.stop])

    def _serve_rtsp(self, v: Variant) -> Peer:
        if self.rtsp_script is None:
            raise RuntimeError("RTSP variants need rtsp_script (tests/support/rtsp_server.py)")
        cam = GstRtspCamera(self.rtsp_script, self.workdir, v.name, **v.rtsp)  # type: ignore[arg-type]
        cam.wait_ready()
        url = cam.url(USER, "not-the-password") if v.broken else cam.url()
        return Peer(url, [cam.stop])

    # Broken cameras, each with its recovery.

    def _start_truncated(self, v: Variant) -> Peer:
        whole = self.media("h264.mp4").read_bytes()  # its index (moov) is at the end
        path = self.workdir / f"truncated-{free_port()}.mp4"  # a fresh name per camera
        path.write_bytes(whole[: len(whole) // 2])

        def recover() -> None:
            tmp = path.with_name(f".{path.name}")
            tmp.write_bytes(whole)
            tmp.rename(path)

        return Peer(f"file://{path}", [lambda: path.unlink(missing_ok=True)], recover)

    def _bytes(self, produce: Producer, recover: Producer | None = None) -> Peer:
        cam = ByteCamera(produce)

        def fixed() -> None:
            if recover is not None:
                cam.switch(recover)

        return Peer(cam.url, [cam.stop], fixed if recover else None)

    def _start_garbage(self, v: Variant) -> Peer:
        data = with_garbage(self.media("h264.ts").read_bytes())
        return self._bytes(lambda: paced(data, 4.0))

    def _start_stall(self, v: Variant) -> Peer:
        data = self.media("h264.ts").read_bytes()
        head = data[: len(data) // 4 // TS_PACKET * TS_PACKET]  # its first second

        def stall() -> Iterator[bytes]:
            yield from paced(head, 1.0, loop=False)
            while True:
                yield b""  # connected, silent

        return self._bytes(stall, lambda: paced(data, 4.0))

    def _start_resize(self, v: Variant) -> Peer:
        data = self.media("resize.ts").read_bytes()
        return self._bytes(lambda: paced(data, 6.0))

    def _start_audio_only(self, v: Variant) -> Peer:
        audio, both = self.media("audio.ts").read_bytes(), self.media("video_audio.ts").read_bytes()
        return self._bytes(lambda: paced(audio, 4.0), lambda: paced(both, 4.0))

    def _start_comes_back_changed(self, v: Variant) -> Peer:
        cam = FfmpegCamera(self.media("h264_480.ts"), self.workdir)
        cam.wait_listening()
        changed = self.media("hevc_720.ts")
        return Peer(cam.url, [cam.stop], lambda: cam.replace(changed))


def with_garbage(data: bytes, every: int = 40, seed: int = 0) -> bytes:
    """MPEG-TS with random junk (17..400 bytes) between packets every ``every`` packets."""
    rng = random.Random(seed)
    out = bytearray()
    step = every * TS_PACKET
    for i in range(0, len(data), step):
        out += data[i : i + step]
        out += rng.randbytes(rng.randrange(17, 400))
    return bytes(out)
