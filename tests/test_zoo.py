"""Contract tests over a camera zoo: every kind of camera users have, encoded and served by
FFmpeg and GStreamer (``vlm_monitor.testing_zoo``), read by a real server.

Good cameras go live with the right shape, codec and picture, without decode errors; the face
cameras give the emotion and heart-rate analyzers a face and its pulse. Broken cameras give a
clear state and error, never crash the server, and come back when the camera does. Each group
of cameras runs at once in one server, so the suite stays short.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from vlm_monitor.testing import ServerProcess, wait_until
from vlm_monitor.testing_peers import gst_available
from vlm_monitor.testing_zoo import BROKEN, FACE_BPM, GOOD, PASSWORD, Peer, Variant, Zoo

SUPPORT = Path(__file__).parent / "support"
FACES = [v.name for v in GOOD if v.face]
FAST_RECONNECT = {"initial_s": 0.2, "max_s": 1.0}


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Zoo:
    return Zoo(
        tmp_path_factory.mktemp("zoo-media"),
        tmp_path_factory.mktemp("zoo-run"),
        SUPPORT / "rtsp_server.py",
    )


def stream_config(v: Variant, url: str) -> dict:
    cfg: dict = {"id": v.name, "url": url, "reconnect": FAST_RECONNECT, "open_timeout_s": 5}
    cfg["stall_timeout_s"] = 2 if v.broken else 4
    if v.face:
        cfg["analyzers"] = ["emotion", {"name": "heart_rate", "params": {"window_s": 8}}]
    if v.name == "comes_back_changed":
        cfg["analyzers"] = [{"name": "motion", "fps": 5}]  # a consumer across the change
    return cfg


class Cameras:
    """Peers for some variants, started in parallel, and one server reading them all."""

    def __init__(self, zoo: Zoo, variants: list[Variant], workdir: Path) -> None:
        self.variants = {v.name: v for v in variants}
        with ThreadPoolExecutor(4) as pool:
            started = {v.name: pool.submit(zoo.start, v.name) for v in variants}
        self.peers: dict[str, Peer] = {
            name: f.result() for name, f in started.items() if f.exception() is None
        }
        try:
            for f in started.values():
                f.result()  # the first camera that failed to start, once all have tried
            streams = [stream_config(v, self.peers[v.name].url) for v in variants]
            self.server = ServerProcess(workdir, {"streams": streams})
        except BaseException:
            for peer in self.peers.values():
                peer.stop()
            raise
        self.client = self.server.client()

    def status(self, name: str) -> dict:
        r = self.client.get(f"/api/streams/{name}")
        assert r.status_code == 200, r.text
        return r.json()

    def wait(self, name: str, what: str, predicate, timeout: float = 30) -> dict:
        def check() -> dict | None:
            st = self.status(name)
            return st if predicate(st) else None

        try:
            return wait_until(check, timeout, 0.2, f"{name}: {what}")
        except TimeoutError:
            raise AssertionError(f"{name}: {what} not met; status {self.status(name)}") from None

    def healthy(self) -> None:
        assert self.server.alive(), self.server.output()[-3000:]
        assert self.client.get("/health").json() == {"status": "ok"}

    def frame(self, name: str) -> tuple[np.ndarray, httpx.Headers]:
        r = self.client.get(f"/api/streams/{name}/frame.jpg")
        assert r.status_code == 200, r.text
        image = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
        return image, r.headers

    def close(self) -> None:
        self.client.close()
        self.server.stop()
        for peer in self.peers.values():
            peer.stop()


def cameras(zoo: Zoo, tmp: pytest.TempPathFactory, variants: list[Variant]) -> Iterator[Cameras]:
    cams = Cameras(zoo, variants, tmp.mktemp("zoo-server"))
    try:
        yield cams
    finally:
        cams.close()


@pytest.fixture(scope="class")
def plain(zoo: Zoo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cameras]:
    yield from cameras(zoo, tmp_path_factory, [v for v in GOOD if not v.gst])


@pytest.fixture(scope="class")
def broken(zoo: Zoo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cameras]:
    yield from cameras(zoo, tmp_path_factory, [v for v in BROKEN if not v.gst])


@pytest.fixture(scope="class")
def rtsp(zoo: Zoo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cameras]:
    if not gst_available():
        pytest.fail("GStreamer RTSP server missing: run `make test` (scripts/install-os-deps.sh)")
    yield from cameras(zoo, tmp_path_factory, [v for v in GOOD + BROKEN if v.gst])


# ---------------------------------------------------------------- what a good camera gives


def check_format(v: Variant, status: dict) -> None:
    """Shape as displayed (turned upright), codec and display rotation."""
    assert (status["width"], status["height"]) == v.shape, status
    assert status["codec"] == v.codec, status
    assert status["rotation"] == (90 if v.stored else 0), status


def check_way_up(image: np.ndarray) -> None:
    """The rotated camera's picture has a white block in its displayed top-left corner."""
    h, w = image.shape[:2]
    corners = {
        "top-left": image[: h // 6, : w // 4],
        "top-right": image[: h // 6, w - w // 4 :],
        "bottom-left": image[h - h // 6 :, : w // 4],
        "bottom-right": image[h - h // 6 :, w - w // 4 :],
    }
    brightest = max(corners, key=lambda k: float(corners[k].mean()))
    assert brightest == "top-left" and corners["top-left"].mean() > 220, {
        k: round(float(c.mean())) for k, c in corners.items()
    }


def check_good(cams: Cameras, v: Variant) -> None:
    st = cams.wait(v.name, "live", lambda s: s["state"] == "live", 40)
    before, errors = st["frames_in"], st["decode_errors"]
    st = cams.wait(v.name, "frames advancing", lambda s: s["frames_in"] >= before + 3, 10)
    assert st["state"] == "live", st
    check_format(v, st)
    # A broken camera, recovered, may have counted errors before: none once it works.
    assert st["decode_errors"] == (errors if v.broken else 0), st
    image, headers = cams.frame(v.name)
    assert (image.shape[1], image.shape[0]) == v.shape
    assert (int(headers["X-Frame-Width"]), int(headers["X-Frame-Height"])) == v.shape
    if v.stored is not None:
        check_way_up(image)


def analyses(cams: Cameras, name: str, analyzer: str) -> list[dict]:
    r = cams.client.get("/api/analyses", params={"stream": name, "analyzer": analyzer})
    return [row["result"] for row in r.json()]


# ---------------------------------------------------------------- broken cameras


def secrets_hidden(cams: Cameras, name: str) -> None:
    docs = [cams.client.get(p).text for p in ("/api/status", f"/api/streams/{name}", "/metrics")]
    logs = [cams.server.output()] + [
        p.read_text(errors="replace") for p in cams.server.config_path.parent.rglob("*.log")
    ]
    for text in docs + logs:
        assert "not-the-password" not in text and PASSWORD not in text


def check_wrong_password(cams: Cameras, name: str) -> None:
    st = cams.wait(name, "an error", lambda s: s["last_error"] is not None)
    assert st["last_error"] == "401 Unauthorized: wrong camera user or password", st
    assert st["state"] == "reconnecting" and st["frames_in"] == 0, st
    assert ":***@" in st["url"] and st["config"]["url"] == st["url"], st
    secrets_hidden(cams, name)
    cams.healthy()


class TestGoodCameras:
    @pytest.mark.parametrize("name", [v.name for v in GOOD if not v.gst])
    def test_good_camera(self, plain: Cameras, name: str) -> None:
        check_good(plain, plain.variants[name])

    @pytest.mark.parametrize("name", FACES)
    def test_face_camera_gives_emotion_and_heart_rate(self, plain: Cameras, name: str) -> None:
        """The face pulses at 72 bpm in media time; the camera plays it in real time."""
        cams = plain
        check_good(cams, cams.variants[name])

        def readings() -> list[float] | None:
            bpm = [r["bpm"] for r in analyses(cams, name, "heart_rate") if r.get("bpm") is not None]
            return bpm[:3] if len(bpm) >= 3 else None

        recent = wait_until(readings, 60, 0.5, f"{name}: three heart-rate readings")
        assert all(abs(b - FACE_BPM) <= 3 for b in recent), recent
        emotions = analyses(cams, name, "emotion")
        assert emotions and emotions[0]["face_detected"], emotions[:1]
        assert emotions[0]["dominant_emotion"] == "happy", emotions[0]


class TestBrokenCameras:
    def test_truncated_file_says_so_and_plays_once_whole(self, broken: Cameras) -> None:
        st = broken.wait("truncated", "an error", lambda s: s["last_error"] is not None)
        assert st["state"] in ("connecting", "reconnecting") and st["frames_in"] == 0, st
        assert "damaged, truncated" in st["last_error"], st
        broken.healthy()
        broken.peers["truncated"].recover()
        check_good(broken, broken.variants["truncated"])

    def test_garbage_between_packets_is_skipped(self, broken: Cameras) -> None:
        st = broken.wait("garbage", "live", lambda s: s["state"] == "live")
        before = st["frames_in"]
        time.sleep(2)
        st = broken.status("garbage")
        assert st["state"] == "live" and st["frames_in"] >= before + 20, st  # ~15 fps kept
        assert (st["width"], st["height"]) == (640, 360)
        broken.healthy()

    def test_camera_stalling_after_first_keyframe_is_reconnected(self, broken: Cameras) -> None:
        st = broken.wait("stall", "a reconnect", lambda s: s["reconnects"] >= 1)
        assert st["frames_in"] > 0, st  # it was live, then stalled
        assert st["last_error"] in ("no data from the camera for 2.0 s", "stream ended"), st
        broken.healthy()
        broken.peers["stall"].recover()
        broken.wait("stall", "live", lambda s: s["state"] == "live")
        reconnects = broken.status("stall")["reconnects"]
        time.sleep(3)  # longer than the stall timeout: it stays
        st = broken.status("stall")
        assert st["state"] == "live" and st["reconnects"] <= reconnects + 1, st

    def test_resolution_change_mid_stream(self, broken: Cameras) -> None:
        """640x480 for 3 s, then 1280x720 for 3 s, looped: frames follow, status counts it."""
        seen: set[tuple[int, int]] = set()

        def both_sizes(st: dict) -> bool:
            seen.add((st["width"], st["height"]))
            return {(640, 480), (1280, 720)} <= seen and st["format_changes"] >= 2

        st = broken.wait("resize", "both sizes", both_sizes, 30)
        assert st["state"] == "live", st
        image, headers = broken.frame("resize")
        assert (image.shape[1], image.shape[0]) == (
            int(headers["X-Frame-Width"]),
            int(headers["X-Frame-Height"]),
        )
        broken.healthy()

    def test_audio_only_camera_says_so_and_recovers(self, broken: Cameras) -> None:
        st = broken.wait("audio_only", "an error", lambda s: s["last_error"] is not None)
        assert st["last_error"] == "no video stream: the camera sends audio only", st
        assert st["frames_in"] == 0
        broken.healthy()
        broken.peers["audio_only"].recover()
        st = broken.wait("audio_only", "live", lambda s: s["state"] == "live")
        assert (st["width"], st["height"]) == (640, 360)

    def test_camera_coming_back_changed_keeps_stream_and_consumers(self, broken: Cameras) -> None:
        """A camera reconfigured (640x480 H.264 -> 1280x720 H.265): same stream id, same
        subscribers and viewers; the frames and the status change with it."""
        name = "comes_back_changed"
        st = broken.wait(name, "live", lambda s: s["state"] == "live" and s["frames_in"] > 5)
        assert (st["width"], st["height"]) == (640, 480), st
        subscribers = st["subscribers"]
        widths: list[int] = []
        done = threading.Event()

        def viewer() -> None:  # an MJPEG viewer connected throughout
            url = f"{broken.server.url}/api/streams/{name}/mjpeg"
            buffer = b""
            with httpx.stream("GET", url, timeout=30) as r:
                for chunk in r.iter_bytes():
                    buffer += chunk
                    found = list(re.finditer(rb"X-Frame-Width: (\d+)\r\n", buffer))
                    widths.extend(int(m[1]) for m in found)
                    buffer = buffer[found[-1].end() :] if found else buffer[-64:]
                    if done.is_set():
                        return

        thread = threading.Thread(target=viewer, daemon=True)
        thread.start()
        wait_until(lambda: len(widths) >= 3, 10, what="viewer frames before the change")
        subscribers = broken.status(name)["subscribers"]
        broken.peers[name].recover()
        st = broken.wait(name, "the new format", lambda s: s["width"] == 1280)
        done.set()
        wait_until(lambda: widths[-1] == 1280, 10, what="the viewer sees the new size")
        thread.join(10)
        assert st["format_changes"] >= 1 and st["reconnects"] >= 1, st
        check_format(broken.variants[name], st)
        assert st["subscribers"] == subscribers, st
        motion = broken.status(name)["analyzers"]["motion"]
        frames = motion["frames"]
        wait_until(lambda: broken.status(name)["analyzers"]["motion"]["frames"] > frames + 3, 10)
        assert broken.status(name)["analyzers"]["motion"]["errors"] == 0
        broken.healthy()

    def test_wrong_password(self, broken: Cameras) -> None:
        check_wrong_password(broken, "mjpeg_wrong_password")


@pytest.mark.rtsp
class TestRtspCameras:
    @pytest.mark.parametrize("name", [v.name for v in GOOD if v.gst])
    def test_good_rtsp_camera(self, rtsp: Cameras, name: str) -> None:
        v = rtsp.variants[name]
        check_good(rtsp, v)
        if "password" in v.rtsp:  # credentials work, and never show
            doc = rtsp.client.get("/api/status").text + rtsp.client.get(f"/api/streams/{name}").text
            assert PASSWORD not in doc and f"{v.rtsp['user']}:***@" in doc

    def test_wrong_password(self, rtsp: Cameras) -> None:
        check_wrong_password(rtsp, "rtsp_wrong_password")
