"""The frame budget, annotation and reference picture, checked on what reaches an
OpenAI-protocol server: how many pictures, how large, drawn on, in which order."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from fake_vlm import FakeVlm
from vlm_monitor.config import ConfigError, VlmProviderConfig, load_config
from vlm_monitor.testing import wait_until
from vlm_monitor.vlm.base import ProviderError, VlmRequest
from vlm_monitor.vlm.frames import REFERENCE_NOTE, pixel_tokens, text_tokens
from vlm_monitor.vlm.registry import build_provider

GREEN = (0, 200, 0)  # BGR of the reference picture


@pytest.fixture
def fake():
    server = FakeVlm()
    yield server
    server.close()


def provider(fake: FakeVlm, **kw):
    cfg = VlmProviderConfig(name="q", kind="openai", base_url=fake.url + "/v1", model="m", **kw)
    return build_provider(cfg)


def clip(n: int = 8, base: int = 10, **kw) -> VlmRequest:
    """Uniform 640x360 frames whose grey level says which they are: base, base + 20, ..."""
    frames = [np.full((360, 640, 3), base + 20 * i, np.uint8) for i in range(n)]
    return VlmRequest("cam", "What happens?", frames, [1e9 + i for i in range(n)], **kw)


def sent(fake: FakeVlm, index: int = -1) -> tuple[str, list[np.ndarray]]:
    """The prompt and the pictures of a request the server got (default: the last)."""
    content = fake.requests[index]["json"]["messages"][0]["content"]
    images = []
    for part in content[1:]:
        raw = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
        images.append(cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR))
    return content[0]["text"], images


def test_frames_and_size_fit_the_context(fake: FakeVlm) -> None:
    provider(fake).analyze(clip())  # no budget: every frame as the clip has it
    _, images = sent(fake)
    assert len(images) == 8 and all(i.shape[:2] == (360, 640) for i in images)

    # 320x180 = 12x7 tokens + 2 = 86 per picture; room for 4 of them beside the text.
    text = text_tokens("What happens?")
    context = 100 + text + 64 + 4 * 86 + 50
    provider(fake, context_tokens=context, max_tokens=100, max_pixels=320 * 180).analyze(clip())
    _, images = sent(fake)
    assert len(images) == 4
    assert all(i.shape[0] * i.shape[1] <= 320 * 180 for i in images)
    assert abs(images[0].shape[1] / images[0].shape[0] - 16 / 9) < 0.02  # aspect kept
    greys = [int(i.mean()) for i in images]
    assert greys[0] == pytest.approx(10, abs=3) and greys[-1] == pytest.approx(150, abs=3)
    assert sum(pixel_tokens((i.shape[1], i.shape[0])) for i in images) <= context - 100 - text

    # A fixed cost per picture (OpenAI's 85 at detail low): as many as the tokens allow.
    provider(fake, context_tokens=1000, max_tokens=500, image_tokens=85).analyze(clip())
    _, images = sent(fake)
    assert len(images) == (1000 - 500 - text - 64) // 85
    assert images[0].shape[:2] == (360, 640)  # no max_pixels: the size is left alone

    # Counted from pixels, a context too small for 2 frames gets 2 smaller ones.
    provider(fake, context_tokens=700, max_tokens=400).analyze(clip())
    _, images = sent(fake)
    assert len(images) == 2 and sum(pixel_tokens(i.shape[1::-1]) for i in images) <= 700 - 400


def test_a_request_that_cannot_fit_is_refused_before_it_is_sent(fake: FakeVlm) -> None:
    guarded = provider(fake, context_tokens=600, max_tokens=500, image_tokens=85)
    with pytest.raises(ProviderError, match="context_tokens 600 leaves"):
        guarded.analyze(clip())
    assert fake.requests == [] and not guarded.breaker_open


def test_annotation_and_reference_go_with_the_frames(fake: FakeVlm) -> None:
    reference = np.full((360, 640, 3), GREEN, np.uint8)
    box = [0.25, 0.5, 0.5, 0.25]  # x, y, w, h of the picture
    request = clip(3, 100, annotate=True, boxes=[[box], [], [box]], reference=reference)
    provider(fake, max_pixels=320 * 180).analyze(request)
    prompt, images = sent(fake)
    assert prompt.startswith(REFERENCE_NOTE) and prompt.endswith("What happens?")
    assert len(images) == 4
    assert np.abs(images[0].reshape(-1, 3).mean(0) - GREEN).max() < 6  # the reference first
    assert images[0].shape[0] * images[0].shape[1] <= 320 * 180

    first, middle = images[1], images[2]
    # The caption band: black across the top, with white text in it; the frame was grey 100.
    assert first[:12, 250:].mean() < 5 and first[:12].max() > 200
    assert np.abs(first[20:60].astype(int) - 100).max() < 8  # the scene below it is untouched
    # The box, in the picture's pixels: its left edge is red; the middle frame has none.
    x, y = round(0.25 * 320), round(0.5 * 180)
    edge = first[y + 10 : y + 30, x - 2 : x + 3].astype(int)
    assert (edge[..., 2] - edge[..., 1]).max() > 150
    assert np.abs(middle[40:].astype(int) - 120).max() < 8  # no box: the scene as it was


def test_annotated_clip_with_reference_end_to_end(server, tmp_path: Path) -> None:
    ref = tmp_path / "empty.png"
    cv2.imwrite(str(ref), np.full((360, 640, 3), GREEN, np.uint8))
    fake = FakeVlm()
    try:
        srv = server(
            {
                "vlm": {
                    "providers": [
                        {"name": "qwen", "kind": "openai", "base_url": fake.url + "/v1",
                         "model": "qwen-vl-max", "context_tokens": 900, "max_tokens": 200,
                         "max_pixels": 320 * 180},
                    ]
                },
                "streams": [
                    {"id": "cam", "url": "synthetic://?fps=10&size=640x360",
                     "analyzers": ["motion"], "reference_frame": str(ref),
                     "clips": {"clip_seconds": 2, "frames_per_clip": 8, "provider": "qwen",
                               "annotate": True}},
                ],
            }
        )  # fmt: skip
        # The second clip: the first may start before motion has reported anything.
        wait_until(lambda: len(fake.requests) >= 2, 30, what="two clips sent to the VLM")
        prompt, images = sent(fake)
        with srv.client() as c:
            budget = c.get("/api/streams/cam").json()["clips"]["frames_sent"]["qwen"]
            # Over the API, like a file:// source: only a picture inside server.media_dir.
            body = {"id": "cam2", "url": "synthetic://", "reference_frame": str(ref)}
            refused = c.post("/api/streams", json=body)
            assert refused.status_code == 422 and "media_dir" in refused.json()["error"]
            asked = c.post("/api/streams/cam/ask", json={"question": "Anyone?"}).json()
        # A question goes the same way: the reference first, then the frames it counts.
        texts = [sent(fake, i)[0] for i in range(len(fake.requests))]
        question, pictures = sent(fake, next(i for i, t in enumerate(texts) if "Anyone?" in t))
        assert question.startswith(REFERENCE_NOTE) and len(pictures) == 1 + asked["frames"]
        assert np.abs(pictures[0].reshape(-1, 3).mean(0) - GREEN).max() < 6

        assert prompt.startswith(REFERENCE_NOTE)
        assert np.abs(images[0].reshape(-1, 3).mean(0) - GREEN).max() < 6
        frames = images[1:]
        assert 2 <= len(frames) == budget["frames"] < 8 and budget["reference"] is True
        assert all((f.shape[1], f.shape[0]) == (budget["width"], budget["height"]) for f in frames)
        assert all(f.shape[0] * f.shape[1] <= 320 * 180 for f in frames)
        # Caption band across the top (the scene there is bright in blue and red).
        assert all(f[:4, f.shape[1] // 2 :].mean() < 10 for f in frames)
        # Motion's boxes (the moving bar at the bottom): pure red, which the scene's lower
        # third never is.
        lows = [f[f.shape[0] * 2 // 3 :].astype(int) for f in frames]
        reds = [((x[..., 2] - x[..., 1] > 170) & (x[..., 2] - x[..., 0] > 170)).sum() for x in lows]
        assert max(reds) > 50, reds
    finally:
        fake.close()


def test_a_bad_reference_frame_stops_the_server_naming_the_key(tmp_path: Path) -> None:
    not_a_picture = tmp_path / "empty.png"
    not_a_picture.write_text("not a picture")
    for path in (tmp_path / "missing.png", not_a_picture):
        config = tmp_path / "config.yaml"
        config.write_text(
            f"streams: [{{id: cam, url: 'synthetic://', reference_frame: '{path}'}}]\n"
        )
        with pytest.raises(ConfigError, match=r"streams\.cam\.reference_frame"):
            load_config(config)
    run = subprocess.run(
        [sys.executable, "-m", "vlm_monitor", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and "streams.cam.reference_frame" in run.stderr
