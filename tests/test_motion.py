import numpy as np

from vlm_monitor.analyzers.motion import MotionDetector


def scene(x: int) -> np.ndarray:
    img = np.full((360, 640, 3), 90, np.uint8)
    img[100:180, x : x + 80] = 230  # a bright square
    return img


def test_still_scene_with_noise_is_not_motion() -> None:
    det = MotionDetector()
    rng = np.random.default_rng(0)
    readings = [
        det.update(np.clip(scene(100) + rng.normal(0, 4, (360, 640, 3)), 0, 255).astype(np.uint8))
        for _ in range(10)
    ]
    assert all(r.level < 0.001 and r.boxes == [] for r in readings)


def test_moving_square_gives_level_and_box_where_it_moves() -> None:
    det = MotionDetector()
    det.update(scene(100))
    reading = det.update(scene(300))
    assert 0.01 < reading.level < 0.2
    # boxes cover where the square was (x 100..180) and where it is now (x 300..380)
    for left in (100, 300):
        assert any(
            x <= left + 5 and x + w >= left + 75 and y <= 105 and y + h >= 175
            for x, y, w, h in reading.boxes
        ), reading.boxes


def test_slow_light_change_fades_into_background() -> None:
    det = MotionDetector()
    levels = [det.update(np.full((360, 640, 3), 90 + i, np.uint8)).level for i in range(30)]
    assert max(levels) == 0.0
