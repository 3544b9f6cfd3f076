"""A source reads its one input and nothing else, at most in real time, against a real server:
file:// never becomes an FFmpeg protocol nor leaves server.media_dir (API-added streams),
tcp:// listens only when the stream says ``listen: true``, and files are paced whatever their
timestamps."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from vlm_monitor.sources.url import parse_source_url, parse_stream_source, redact_url
from vlm_monitor.testing import ChildProcess, free_port, wait_until
from vlm_monitor.testing_peers import HttpCamera

SYN = "synthetic://?fps=15&size=640x360"


def make_video(ffmpeg: str, path: Path, *args: str, rate: int = 10, seconds: float = 1) -> Path:
    subprocess.run(
        [ffmpeg, "-v", "error", "-y", "-f", "lavfi",
         "-i", f"testsrc2=size=320x240:rate={rate}", "-t", str(seconds), *args, str(path)],
        check=True,
    )  # fmt: skip
    return path


@pytest.fixture
def dirs(tmp_path: Path, ffmpeg: str) -> tuple[Path, Path]:
    """``media`` (server.media_dir) holding ok.ts, and ``outside`` with what must stay unseen."""
    media, outside = tmp_path / "media", tmp_path / "outside"
    media.mkdir()
    outside.mkdir()
    make_video(ffmpeg, media / "ok.ts", "-c:v", "libx264", "-f", "mpegts")
    make_video(ffmpeg, outside / "secret.png", "-frames:v", "1")
    make_video(ffmpeg, outside / "clip.ts", "-c:v", "libx264", "-f", "mpegts")
    return media, outside


def stream_state(c: httpx.Client, sid: str) -> dict:
    r = c.get(f"/api/streams/{sid}")
    assert r.status_code == 200, r.text
    return r.json()


def wait_state(c: httpx.Client, sid: str, state: str, timeout: float = 15) -> dict:
    return wait_until(
        lambda: (s := stream_state(c, sid))["state"] == state and s,
        timeout,
        what=f"{sid} {state}",
    )


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_api_file_urls_are_plain_files_inside_media_dir(server, dirs) -> None:
    media, outside = dirs
    # As a path the text resolves inside media_dir; FFmpeg would read it as protocols.
    up = "/.." * 40
    concat = f"concat:{outside}/secret.png|{up}{media}/ok.ts"
    attacks = [
        f"file://{concat}",
        f"file://subfile,,start,0,end,0,,:{concat}",
        f"file:{concat}",
    ]
    (media / "link.png").symlink_to(outside / "secret.png")
    srv = server({"server": {"media_dir": str(media)}})
    with srv.client() as c:
        for url in attacks:
            r = c.post("/api/streams", json={"id": "x", "url": url})
            assert r.status_code == 422, (url, r.text)
            assert "protocol syntax" in r.json()["error"]
        r = c.post("/api/streams", json={"id": "x", "url": f"file://{media}/link.png"})
        assert r.status_code == 422 and "inside server.media_dir" in r.json()["error"]
        r = c.post("/api/streams", json={"id": "x", "url": f"file://{media}/ok.ts?x=1"})
        assert r.status_code == 422 and "no ?query" in r.json()["error"]
        r = c.post("/api/rtsp/start", json={"stream_name": "x", "rtsp_url": f"file://{outside}"})
        assert r.status_code == 422 and "inside server.media_dir" in r.json()["error"]
        assert c.get("/api/streams").json() == []
        assert c.get("/api/streams/x/frame.jpg").status_code == 404

        r = c.post("/api/streams", json={"id": "ok", "url": f"file://{media}/ok.ts"})
        assert r.status_code == 201, r.text
        wait_state(c, "ok", "live")
        assert c.get("/api/streams/ok/frame.jpg").status_code == 200


def test_playlist_inside_media_dir_is_refused_not_followed(server, dirs) -> None:
    """An HLS playlist is a regular file inside media_dir, but it names another file to read."""
    media, outside = dirs
    playlist = media / "list.m3u8"
    playlist.write_text(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n"
        f"#EXTINF:1.0,\n{outside}/clip.ts\n#EXT-X-ENDLIST\n"
    )
    srv = server({"server": {"media_dir": str(media)}})
    with srv.client() as c:
        body = {"id": "pl", "url": f"file://{playlist}", "reconnect": {"initial_s": 0.1}}
        assert c.post("/api/streams", json=body).status_code == 201
        st = wait_state(c, "pl", "failed")
        assert st["frames_in"] == 0 and "hls input refused" in st["last_error"]
        assert c.get("/api/streams/pl/frame.jpg").status_code != 200


def test_tcp_url_options_never_make_the_server_listen(server, tmp_path: Path) -> None:
    port = free_port()
    for url in (
        f"tcp://127.0.0.1:{port}?listen=1",
        f"tcp://127.0.0.1:{port}?listen_timeout=1000&listen=2",
        f"tcp://127.0.0.1:{port}#?listen=1",
        f"tcp://127.0.0.1:{port}/?listen=1",
    ):
        with pytest.raises(ValueError, match=r"listen: true|#fragment"):
            parse_source_url(url)
    for url in ("rtsp://cam/s?rtsp_flags=listen", "rtsp://cam/s?a=1?listen", "rtsp://cam/s?http"):
        with pytest.raises(ValueError, match="FFmpeg"):
            parse_source_url(url)
    assert parse_source_url("rtsp://cam/s?channel=1&subtype=0").url.endswith("subtype=0")
    with pytest.raises(ValueError, match="only for tcp"):
        parse_stream_source("rtsp://cam/s", listen=True)

    srv = server()
    with srv.client() as c:
        r = c.post("/api/streams", json={"id": "x", "url": f"tcp://127.0.0.1:{port}?listen=1"})
        assert r.status_code == 422 and "listen: true" in r.json()["error"]
        r = c.post("/api/streams", json={"id": "x", "url": SYN, "listen": True})
        assert r.status_code == 422 and "only for tcp" in r.json()["error"]
        time.sleep(1)
        assert not listening(port)
    config = tmp_path / "listener.json"
    stream = {"id": "x", "url": f"tcp://127.0.0.1:{port}?listen=1"}
    config.write_text(json.dumps({"server": {"port": free_port()}, "streams": [stream]}))
    run = subprocess.run(
        [sys.executable, "-m", "vlm_monitor", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "VLM_MONITOR_LOG_DIR": str(tmp_path / "logs")},
    )
    assert run.returncode != 0 and "listen: true" in run.stdout + run.stderr
    assert not listening(port)


def test_files_without_usable_timestamps_play_in_real_time(server, ffmpeg, tmp_path) -> None:
    """Raw H.264 has no timestamps (10 fps in its SPS); a looped image repeats time 0."""
    raw = make_video(ffmpeg, tmp_path / "raw.h264", "-c:v", "libx264", "-f", "h264")
    png = make_video(ffmpeg, tmp_path / "one.png", "-frames:v", "1")
    srv = server(
        {"streams": [{"id": "raw", "url": f"file://{raw}"}, {"id": "png", "url": f"file://{png}"}]}
    )
    with srv.client() as c:
        wait_state(c, "raw", "live")
        wait_state(c, "png", "live")
        time.sleep(2.5)
        raw_st, png_st = stream_state(c, "raw"), stream_state(c, "png")
    assert 7 <= raw_st["fps_in"] <= 13, raw_st
    assert 18 <= png_st["fps_in"] <= 32, png_st  # FFmpeg's image rate: 25
    assert raw_st["frames_in"] < 60 and png_st["frames_in"] < 120


@pytest.fixture
def pusher() -> Iterator[list[ChildProcess]]:
    started: list[ChildProcess] = []
    yield started
    for proc in started:
        proc.stop()


def test_listen_stream_waits_for_the_camera_to_connect(
    server, ffmpeg: str, tmp_path: Path, pusher: list[ChildProcess]
) -> None:
    port = free_port()
    camera = [ffmpeg, "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10",
              "-t", "30", "-c:v", "libx264", "-tune", "zerolatency", "-f", "mpegts",
              f"tcp://127.0.0.1:{port}"]  # fmt: skip
    cam = {"id": "cam", "url": f"tcp://127.0.0.1:{port}", "listen": True, "open_timeout_s": 1}
    srv = server({"streams": [cam]})
    with srv.client() as c:
        time.sleep(2.5)  # listen windows with nobody connecting: waiting, not failing
        st = stream_state(c, "cam")
        assert st["state"] == "connecting" and st["reconnects"] == 0, st

        def push() -> bool:
            if stream_state(c, "cam")["state"] == "live":
                return True
            if not pusher or not pusher[-1].alive():  # refused between two listen windows
                pusher.append(ChildProcess(camera, tmp_path / f"push{len(pusher)}.out"))
            return False

        wait_until(push, 15, interval=0.3, what="camera pushed and live")
        time.sleep(2)
        st = stream_state(c, "cam")
        assert st["state"] == "live" and 6 <= st["fps_in"] <= 14, st
        assert (st["width"], st["height"]) == (320, 240)
        assert c.get("/api/streams/cam/frame.jpg").status_code == 200


def test_http_urls_name_one_scheme() -> None:
    spec = parse_source_url("HTTP://cam.local/axis-cgi/mjpg/video.cgi?resolution=640x480")
    assert spec.scheme == "http" and spec.url.startswith("http://cam.local/")
    assert parse_source_url("https://cam.local/live/index.m3u8").scheme == "https"
    for url in (
        "hls+http://cam.local/live.m3u8",  # FFmpeg would pick the demuxer from the URL
        "cache:http://cam.local/live.m3u8",
        "crypto+https://cam.local/seg.ts",
        "http:///live.m3u8",
        "http://cam.local/live.m3u8#x",
    ):
        with pytest.raises(ValueError):
            parse_source_url(url)
    assert redact_url("https://admin:pw@cam/a.m3u8") == "https://admin:***@cam/a.m3u8"


def test_http_playlist_reads_http_segments_only(server, dirs, tmp_path: Path) -> None:
    """An HLS playlist over http(s) may name its segments; only over HTTP(S), never file:."""
    _, outside = dirs
    web = tmp_path / "web"
    web.mkdir()
    (web / "seg.ts").write_bytes((outside / "clip.ts").read_bytes())
    head = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n"
    (web / "good.m3u8").write_text(f"{head}#EXTINF:1.0,\nseg.ts\n#EXT-X-ENDLIST\n")
    (web / "evil.m3u8").write_text(
        f"{head}#EXTINF:1.0,\nfile:{outside}/clip.ts\n#EXTINF:1.0,\nfile://{outside}/clip.ts\n"
        "#EXT-X-ENDLIST\n"
    )
    cam = HttpCamera(root=web)
    try:
        srv = server()
        with srv.client() as c:
            for sid in ("good", "evil"):
                body = {"id": sid, "url": cam.url(f"{sid}.m3u8"), "reconnect": {"initial_s": 0.2}}
                assert c.post("/api/streams", json=body).status_code == 201
            st = wait_state(c, "good", "live")
            assert (st["width"], st["height"], st["transport"]) == (320, 240, "http")
            time.sleep(3)
            st = stream_state(c, "evil")
            assert st["frames_in"] == 0 and st["state"] == "reconnecting", st
            assert c.get("/api/streams/evil/frame.jpg").status_code != 200
    finally:
        cam.close()
