"""Geometry: analysis sizes are pixel budgets that keep the source's shape; boxes map back to
displayed source pixels; frames share one conversion per budget."""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import av
import cv2
import numpy as np
import pytest
import skimage.data

from vlm_monitor.analyzers.base import SharedModels, StreamContext
from vlm_monitor.analyzers.builtin import OcrAnalyzer
from vlm_monitor.camera.scene import make_scene
from vlm_monitor.clips.processor import AsyncVideoProcessor
from vlm_monitor.clips.service import StreamClips
from vlm_monitor.clips.store import ClipStore
from vlm_monitor.clips.types import ResultData
from vlm_monitor.config import AnalyzerConfig, ClipsConfig
from vlm_monitor.flows.executor import RunRecord, execute
from vlm_monitor.flows.manager import parse_flow
from vlm_monitor.flows.nodes.base import RunContext
from vlm_monitor.geometry import Placement, analysis_size, fit_budget
from vlm_monitor.hub import StreamHub
from vlm_monitor.pixels import to_bgr
from vlm_monitor.testing import wait_until
from vlm_monitor.types import Frame
from vlm_monitor.vlm.base import VlmAnswer, VlmRequest

BUDGET = (640, 360)  # 230,400 pixels


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ((1920, 1080), (640, 360)),  # 16:9
        ((1280, 720), (640, 360)),
        ((1280, 960), (554, 416)),  # 4:3
        ((640, 480), (554, 416)),
        ((1024, 1024), (480, 480)),  # 1:1
        ((512, 512), (480, 480)),
        ((1080, 1920), (360, 640)),  # 9:16
        ((720, 1280), (360, 640)),
    ],
)
def test_budget_keeps_the_shape(source: tuple[int, int], expected: tuple[int, int]) -> None:
    assert fit_budget(*source, *BUDGET) == expected


@pytest.mark.parametrize("source", [(320, 240), (480, 480), (640, 360), (100, 2000), (17, 9)])
def test_sources_within_the_budget_are_never_upscaled(source: tuple[int, int]) -> None:
    assert fit_budget(*source, *BUDGET) == source


@pytest.mark.parametrize(
    "source", [(1921, 1081), (999, 777), (641, 481), (40001, 9), (9, 40001), (12345, 6789)]
)
def test_odd_sources_give_even_sides_near_the_budget(source: tuple[int, int]) -> None:
    w, h = fit_budget(*source, *BUDGET)
    assert w % 2 == 0 and h % 2 == 0
    assert 2 <= w <= source[0] and 2 <= h <= source[1]
    if min(source) > 100:  # not limited by a thin side
        assert abs(w * h - 230_400) / 230_400 < 0.02
        assert abs(w / h - source[0] / source[1]) / (source[0] / source[1]) < 0.02


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ((640, 480), (640, 480)),  # a webcam: shrinking would cost more than it saves
        ((720, 480), (720, 480)),  # 1.5 times the budget, the most kept as it is
        ((722, 480), (588, 392)),  # just over: to the budget like any larger source
        ((1280, 720), (640, 360)),
        ((1280, 960), (640, 480)),  # halved: the cheap shrink
        ((1440, 1080), (554, 416)),  # its half is over: to the budget
        ((1920, 1080), (640, 360)),
        ((320, 240), (320, 240)),
    ],
)
def test_analysis_frames_keep_sources_near_the_budget(
    source: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert analysis_size(*source, BUDGET) == expected
    assert analysis_size(*source, None) == source


def test_budget_is_computed_once_per_shape() -> None:
    fit_budget.cache_clear()
    for _ in range(100):
        fit_budget(1280, 960, *BUDGET)
    info = fit_budget.cache_info()
    assert info.misses == 1 and info.hits == 99


def test_a_frame_converts_once_per_budget_size() -> None:
    frame = Frame("s", 1, 0.0, np.zeros((960, 1280, 3), np.uint8))
    assert frame.fit(BUDGET) == (554, 416) and frame.fit(None) == (1280, 960)
    first = frame.bgr_fit(BUDGET)
    assert first.shape == (416, 554, 3)
    assert frame.bgr_fit(BUDGET) is first  # every consumer of this budget shares it
    assert frame.bgr((554, 416)) is first  # keyed by the resulting size
    assert frame.source_size == (1280, 960)


def test_placement_maps_boxes_both_ways() -> None:
    place = Placement((1280, 960), (554, 416))
    box = place.to_source((100, 50, 40, 30))
    assert box == (231, 115, 92, 70)
    assert place.normalise(box) == [0.1805, 0.1198, 0.0719, 0.0729]
    assert place.to_image(box) == (100, 50, 40, 30)
    fields = place.box_fields((100, 50, 40, 30))
    assert fields == {"box": [231, 115, 92, 70], "box_norm": [0.1805, 0.1198, 0.0719, 0.0729]}
    assert place.box_fields(None) == {"box": None, "box_norm": None}


def test_placement_of_a_crop_and_of_boxes_past_the_edge() -> None:
    crop = Placement((1280, 720), (640, 360)).cropped(320, 180)
    assert crop.to_source((0, 0, 10, 10)) == (640, 360, 20, 20)  # relative to the frame
    assert crop.to_image((640, 360, 20, 20)) == (0, 0, 10, 10)
    assert crop.to_image((0, 0, 100, 100)) == (0, 0, 0, 0)  # outside the crop: empty
    assert crop.to_source((300, 150, 100, 100)) == (1240, 660, 40, 60)  # cut at the edge
    many = crop.boxes_fields([(0, 0, 10, 10)])
    assert many == {"boxes": [[640, 360, 20, 20]], "boxes_norm": [[0.5, 0.5, 0.0156, 0.0278]]}


# End to end: real files, a real server.


def _encode(ffmpeg: str, image: np.ndarray, path: Path, rotate: int | None = None) -> Path:
    """A looped still as a 4 s H.264 MP4 at 15 fps, maybe stored with a display rotation."""
    png = path.with_suffix(".png")
    cv2.imwrite(str(png), image)
    plain = path.with_name(path.stem + "-plain.mp4") if rotate is not None else path
    subprocess.run(
        [ffmpeg, "-loglevel", "error", "-y", "-loop", "1", "-i", str(png), "-t", "4", "-r", "15",
         "-c:v", "libx264", "-pix_fmt", "yuv420p", str(plain)],
        check=True,
    )  # fmt: skip
    if rotate is not None:
        # How phones store their recordings: the pixels as the sensor saw them, plus a tag.
        subprocess.run(
            [ffmpeg, "-loglevel", "error", "-y", "-i", str(plain), "-c", "copy",
             "-metadata:s:v:0", f"rotate={rotate}", str(path)],
            check=True,
        )  # fmt: skip
    return path


def _astronaut() -> np.ndarray:
    rgb = skimage.data.astronaut()  # 512x512, a real frontal face
    return np.ascontiguousarray(rgb[:, :, ::-1])


def _portrait(square: np.ndarray) -> np.ndarray:
    """360x640: the face's middle of the square, on a dark band above and below."""
    out = np.full((640, 360, 3), 30, np.uint8)
    out[64 : 64 + 512] = square[:, 76 : 76 + 360]
    return out


def test_square_and_portrait_cameras_find_the_face(server, ffmpeg, tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    square = _encode(ffmpeg, _astronaut(), media / "square.mp4")
    portrait = _encode(ffmpeg, _portrait(_astronaut()), media / "portrait.mp4")
    face = [{"name": "emotion", "fps": 5}, {"name": "heart_rate", "params": {"window_s": 4}}]
    srv = server(
        {
            "server": {"media_dir": str(media)},
            "streams": [
                {"id": "square", "url": f"file://{square}", "analyzers": face},
                {"id": "portrait", "url": f"file://{portrait}", "analyzers": face},
            ],
        }
    )
    with srv.client() as c:
        # The astronaut's face is centred near (223, 113) of the square picture.
        shapes = {"square": ((512, 512), (223, 113)), "portrait": ((360, 640), (147, 177))}
        for stream, ((w, h), (fx, fy)) in shapes.items():

            def rows(analyzer: str, stream: str = stream) -> list[dict]:
                params = {"stream": stream, "analyzer": analyzer}
                found: list[dict] = c.get("/api/analyses", params=params).json()
                return found

            emotion = wait_until(lambda: rows("emotion"), 15, what=f"{stream} emotion")
            result = emotion[0]["result"]
            assert result["face_detected"] is True, result
            x, y, bw, bh = result["box"]
            assert 0 <= x < x + bw <= w and 0 <= y < y + bh <= h and bw >= 40, result["box"]
            assert abs(x + bw / 2 - fx) < 25 and abs(y + bh / 2 - fy) < 25, result["box"]
            assert result["box_norm"] == pytest.approx([x / w, y / h, bw / w, bh / h], abs=1e-4)
            heart = wait_until(lambda: rows("heart_rate"), 15, what=f"{stream} heart rate")
            assert heart[0]["result"]["face_detected"] is True, heart[0]["result"]
            status = c.get(f"/api/streams/{stream}").json()
            assert (status["width"], status["height"], status["rotation"]) == (w, h, 0), status
            assert status["codec"] == "h264"


def test_rotated_recording_is_shown_upright(server, ffmpeg, tmp_path: Path) -> None:
    """A phone's portrait recording: stored as 320x180 pixels with a 90-degree display
    rotation. Upright it is 180x320, bright on top, dark below."""
    upright = np.zeros((320, 180, 3), np.uint8)
    upright[:160] = 255
    stored = cv2.rotate(upright, cv2.ROTATE_90_CLOCKWISE)  # what the sensor wrote
    assert stored.shape == (180, 320, 3)
    media = tmp_path / "media"
    media.mkdir()
    path = _encode(ffmpeg, stored, media / "phone.mp4", rotate=90)
    srv = server({"server": {"media_dir": str(media)}, "streams": [{"id": "phone",
                  "url": f"file://{path}"}]})  # fmt: skip
    with srv.client() as c:
        status = wait_until(
            lambda: (s := c.get("/api/streams/phone").json())["state"] == "live" and s,
            15,
            what="phone live",
        )
        assert (status["width"], status["height"]) == (180, 320), status
        assert status["rotation"] == 90 and status["codec"] == "h264", status
        r = c.get("/api/streams/phone/frame.jpg")
        assert r.status_code == 200
        assert (r.headers["x-frame-width"], r.headers["x-frame-height"]) == ("180", "320")
        grey = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_GRAYSCALE)
        assert grey.shape == (320, 180)
        assert grey[:140].mean() > 200 and grey[180:].mean() < 50, (
            grey[:140].mean(),
            grey[180:].mean(),
        )


async def test_flow_ocr_and_the_analyzer_agree_in_source_pixels() -> None:
    """A 1280x720 camera read by a flow (frame node scaled to the budget and cropped, ocr
    node with a region) and by the ocr analyzer: the same words at the same source boxes."""
    picture = np.full((720, 1280, 3), 255, np.uint8)
    cv2.putText(picture, "GATE 7 OPEN", (120, 420), cv2.FONT_HERSHEY_SIMPLEX, 3, (0, 0, 0), 6)
    cv2.putText(picture, "EXIT", (120, 150), cv2.FONT_HERSHEY_SIMPLEX, 3, (0, 0, 0), 6)
    hub = StreamHub()
    frame = Frame("cam", 1, time.time(), picture)
    hub.publish(frame)
    roi = [60, 300, 900, 200]
    doc = {
        "id": "read",
        "stream": "cam",
        "nodes": [
            {"id": "frame", "type": "frame", "params": {"crop": [0, 240, 1280, 480]}},
            {"id": "ocr", "type": "ocr", "params": {"roi": roi}},
        ],
        "edges": [["frame", "ocr"]],
    }
    _, graph = parse_flow(doc)
    record = RunRecord.new(graph, "test")
    services = SimpleNamespace(hub=hub)
    with ThreadPoolExecutor(2) as pool:
        ctx = RunContext(services, graph.flow, record.run_id, None, pool)  # type: ignore[arg-type]
        await execute(graph, ctx, record, lambda run, node: None)
    assert record.status == "succeeded", {n: r.error for n, r in record.nodes.items()}
    assert record.nodes["frame"].output["size"] == "640x240"  # budget, then the crop
    flow = record.nodes["ocr"].output
    config = AnalyzerConfig.model_validate({"name": "ocr", "params": {"roi": roi}})
    analyzer = OcrAnalyzer(config, StreamContext("cam", SharedModels()))
    direct = analyzer.analyze(frame.bgr_fit(BUDGET), frame)
    assert flow["text"] == direct["text"] and "GATE" in flow["text"] and "EXIT" not in flow["text"]
    for a, b in zip(flow["words"], direct["words"], strict=True):
        assert a["box"] == b["box"] and a["box_norm"] == b["box_norm"]
    x, y, w, _ = flow["words"][0]["box"]
    assert 100 <= x <= 140 and 340 <= y <= 380 and w > 150, flow["words"][0]


def test_clips_keep_the_shape(tmp_path: Path) -> None:
    """A square camera's clips (the MP4 and the frames the VLM sees) stay square."""
    hub = StreamHub()
    config = ClipsConfig(clip_seconds=1.0, frames_per_clip=4, min_free_mb=0)
    shapes: list[tuple[int, ...]] = []

    def analyze(request: VlmRequest) -> tuple[str, VlmAnswer]:
        shapes.extend(f.shape for f in request.frames)
        return "fake", VlmAnswer("ok", model="m", tokens=1)

    results: list[ResultData] = []
    store = ClipStore(tmp_path, min_free_mb=0)
    clips = StreamClips("sq", config, hub, AsyncVideoProcessor("sq", config, store, analyze,
                                                                results.append))  # fmt: skip
    clips.start()
    try:
        for i in range(1, 41):
            shade = np.full((1024, 1024, 3), i * 6, np.uint8)
            hub.publish(Frame("sq", i, time.time(), shade))
            time.sleep(0.05)
        wait_until(lambda: results, 10, what="a clip result")
    finally:
        clips.stop(5)
    assert results[0].error is None, results[0].error
    assert shapes and all(s == (480, 480, 3) for s in shapes), shapes
    with av.open(results[0].video_path) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (480, 480)


def _decoded_face(width: int, height: int) -> av.VideoFrame:
    """A frame of the face scene as a camera sends it: H.264, decoded."""
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.time_base = Fraction(1, 15)
    picture = av.VideoFrame.from_ndarray(make_scene(width, height, "face").render(1, 0.0), "bgr24")
    packets = codec.encode(picture.reformat(format="yuv420p")) + codec.encode(None)
    decoder = av.CodecContext.create("h264", "r")
    frames = [f for p in packets for f in decoder.decode(p)] + list(decoder.decode(None))
    return frames[0]


@pytest.mark.parametrize("size", [(640, 360), (1280, 720)])  # halved, as it is
def test_opencv_conversions_of_a_camera_frame_match_swscale(size: tuple[int, int]) -> None:
    frame = _decoded_face(1280, 720)
    reference = frame.to_ndarray(
        width=size[0], height=size[1], format="bgr24", interpolation="AREA"
    )
    halved = to_bgr(frame, size)
    assert halved.shape == reference.shape == (size[1], size[0], 3)
    difference = np.abs(halved.astype(int) - reference.astype(int))
    assert difference.mean() < 1.5 and np.percentile(difference, 99) <= 4
    means = halved.reshape(-1, 3).mean(axis=0) - reference.reshape(-1, 3).mean(axis=0)
    assert np.all(np.abs(means) < 2)  # the colours heart rate reads: the same to a level


@pytest.mark.parametrize(("colorspace", "color_range"), [(1, 1), (2, 2)])  # BT.709, full range
@pytest.mark.parametrize("size", [(640, 360), (1280, 720)])
def test_frames_opencv_would_read_wrong_go_to_swscale(
    colorspace: int, color_range: int, size: tuple[int, int]
) -> None:
    frame = _decoded_face(1280, 720)
    frame.colorspace, frame.color_range = colorspace, color_range
    reference = frame.to_ndarray(
        width=size[0], height=size[1], format="bgr24", interpolation="AREA"
    )
    assert np.array_equal(to_bgr(frame, size), reference)
