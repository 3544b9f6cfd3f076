import random

import cv2
import numpy as np
import pytest

from vlm_monitor.camera import strip
from vlm_monitor.camera.scene import SyntheticScene


@pytest.mark.parametrize("size", [(640, 360), (1280, 720), (1920, 1080)])
def test_round_trip_through_jpeg(size: tuple[int, int]) -> None:
    rng = random.Random(7)
    scene = SyntheticScene(*size)
    for _ in range(20):
        seq, ts = rng.randrange(2**32), rng.uniform(1.6e9, 2.0e9)
        img = scene.render(seq, ts)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 50])
        assert ok
        decoded = strip.read(cv2.imdecode(buf, cv2.IMREAD_COLOR))
        assert decoded is not None
        assert decoded[0] == seq
        assert decoded[1] == pytest.approx(ts, abs=0.001)


def test_blocks_are_at_least_8px() -> None:
    assert strip.block_size(640) == 8
    assert strip.block_size(1920) == 24


def test_frame_without_strip_reads_as_none() -> None:
    rng = np.random.default_rng(1)
    assert strip.read(rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)) is None
    assert strip.read(np.zeros((360, 640, 3), np.uint8)) is None


def test_corrupted_bit_is_rejected() -> None:
    img = SyntheticScene(640, 360).render(1234, 1.7e9)
    img[0:8, 80:88] = 255 - img[0:8, 80:88]  # flip one payload block
    assert strip.read(img) is None


def test_too_small_frame_is_refused() -> None:
    with pytest.raises(ValueError):
        strip.draw(np.zeros((10, 640, 3), np.uint8), 1, 1.0)
