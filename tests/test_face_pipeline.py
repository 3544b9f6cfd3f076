"""The face pipeline on real faces: BlazeFace detection (short and full range), Face Mesh
landmarks, head pose, gaze, the shared per-stream tracking and the rPPG skin region."""

from __future__ import annotations

import math
from importlib import resources

import cv2
import numpy as np
import pytest

from vlm_monitor.analyzers.face_detect import BlazeFace, FaceDetector, anchors, weighted_nms
from vlm_monitor.analyzers.face_geometry import aligned_face, gaze, head_pose
from vlm_monitor.analyzers.face_mesh import Iris, roi_from_detection
from vlm_monitor.analyzers.faces import FaceModels, FaceTracking, iou
from vlm_monitor.analyzers.rppg import SkinTrace, heart_rate, skin_mask

MODELS = FaceModels()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[:, :, ::-1])  # RGB -> BGR


@pytest.fixture(scope="module")
def packaged_face() -> np.ndarray:
    data = (resources.files("vlm_monitor.camera") / "face.jpg").read_bytes()
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def on_canvas(face: np.ndarray, size: tuple[int, int], scale: float, x: int, y: int) -> np.ndarray:
    w, h = size
    canvas = np.full((h, w, 3), 110, np.uint8)
    small = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    fh, fw = small.shape[:2]
    canvas[y : y + fh, x : x + fw] = small
    return canvas


def mesh_of(image: np.ndarray, kind: str = "short") -> np.ndarray:
    (found, *_) = MODELS.detector.detections(image, kind)  # type: ignore[arg-type]
    mesh = MODELS.mesh.run(image, roi_from_detection(found))
    assert mesh.score > 0.9
    return mesh.points


def turn_head(image: np.ndarray, yaw_deg: float) -> np.ndarray:
    """The face re-rendered turned about a vertical axis: its mesh (x, y, z) rotated in 3D,
    then the picture warped triangle by triangle from the old positions to the new ones."""
    points = mesh_of(image)
    centre = points.mean(axis=0)
    centre[2] += 0.6 * np.ptp(points[:, 0])  # the neck's axis, behind the face
    t = math.radians(yaw_deg)
    rot = np.array([[math.cos(t), 0, math.sin(t)], [0, 1, 0], [-math.sin(t), 0, math.cos(t)]])
    moved = (points - centre) @ rot.T + centre
    h, w = image.shape[:2]
    subdiv = cv2.Subdiv2D((0, 0, w, h))
    for x, y in points[:, :2]:
        subdiv.insert((float(x), float(y)))
    corners = subdiv.getTriangleList().reshape(-1, 2)
    nearest = np.argmin(((corners[:, None, :] - points[None, :, :2]) ** 2).sum(axis=2), axis=1)
    triangles = sorted(nearest.reshape(-1, 3).tolist(), key=lambda tri: -moved[tri, 2].mean())
    out = image.copy()
    for tri in triangles:  # far ones first: the near side of the face ends up on top
        src, dst = points[tri, :2].astype(np.float32), moved[tri, :2].astype(np.float32)
        warped = cv2.warpAffine(image, cv2.getAffineTransform(src, dst), (w, h))
        mask = np.zeros((h, w), np.uint8)
        cv2.fillConvexPoly(mask, np.round(dst).astype(np.int32), 255)
        out[mask > 0] = warped[mask > 0]
    return out


def mirrored(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image[:, ::-1])


def test_anchors_follow_mediapipe() -> None:
    short = anchors(128, (8, 16, 16, 16), True)
    full = anchors(192, (4,), False)
    assert short.shape == (896, 2) and full.shape == (2304, 2)
    # 16x16 cells with 2 anchors each, then 8x8 cells with 6 (three layers of stride 16)
    assert np.allclose(short[:2], [[0.5 / 16, 0.5 / 16]] * 2)
    assert np.allclose(short[512:518], [[0.5 / 8, 0.5 / 8]] * 6)
    assert np.allclose(short[-1], [7.5 / 8, 7.5 / 8]) and np.allclose(full[1], [1.5 / 48, 0.5 / 48])


def test_weighted_nms_averages_overlaps_and_keeps_the_rest() -> None:
    corners = np.array([[0.0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]])
    keypoints = np.zeros((3, 6, 2))
    keypoints[1] += 1
    merged = weighted_nms(corners, keypoints, np.array([0.9, 0.6, 0.8]))
    assert len(merged) == 2
    box, points, score = merged[0]
    assert score == 0.9 and np.allclose(box, [0.4, 0.4, 10.4, 10.4])  # 0.9/1.5 and 0.6/1.5
    assert np.allclose(points, 0.4)
    assert np.allclose(merged[1][0], [50, 50, 60, 60]) and merged[1][2] == 0.8


@pytest.mark.parametrize("scale", [0.4, 1.0, 2.5])
def test_astronaut_found_at_several_scales(astronaut, scale) -> None:
    side = round(512 * scale)
    frame = on_canvas(astronaut, (side * 3 // 2, side), scale, side // 4, 0)
    (found, *rest) = MODELS.detector.detections(frame, "short")
    assert not rest
    x, y, w, h = found.box
    nose = found.keypoints[2]
    assert x < nose[0] < x + w and y < nose[1] < y + h
    expected = 222 * scale + side // 4, 125 * scale  # the nose tip, placed
    assert np.hypot(*(nose - expected)) < 0.2 * w, (nose, expected)
    assert 0.12 < w / (512 * scale) < 0.3  # a face, not the whole portrait


def test_packaged_face_found_with_eyes_above_mouth(packaged_face) -> None:
    frame = on_canvas(packaged_face, (640, 360), 1.2, 200, 40)
    (found,) = MODELS.detector.detections(frame, "short")
    eyes, nose, mouth = found.keypoints[:2], found.keypoints[2], found.keypoints[3]
    assert eyes[0][0] < nose[0] < eyes[1][0] and max(eyes[:, 1]) < nose[1] < mouth[1]
    points = mesh_of(frame)
    x, y, w, h = found.box
    assert x < points[1, 0] < x + w and y < points[1, 1] < y + h  # nose tip in the box
    assert max(points[33, 1], points[263, 1]) < min(points[61, 1], points[291, 1])
    assert points[152, 1] > points[13, 1] > points[1, 1]  # chin below mouth below nose


@pytest.mark.parametrize("angle", [30, -30])
def test_rotated_face_found_upright_landmarks_and_roll(astronaut, angle) -> None:
    turn = cv2.getRotationMatrix2D((256, 256), angle, 1.0)  # degrees counter-clockwise
    frame = cv2.warpAffine(astronaut, turn, (512, 512))
    points = mesh_of(frame)
    pose = head_pose(points)
    assert pose is not None and abs(pose.roll + angle) < 8, pose  # roll is clockwise
    upright = head_pose(mesh_of(astronaut))
    assert upright is not None and abs(upright.yaw - pose.yaw) < 8


def test_two_faces_side_by_side(astronaut, packaged_face) -> None:
    frame = on_canvas(packaged_face, (640, 360), 1.1, 40, 60)
    right = cv2.resize(astronaut[40:300, 120:330], None, fx=1.0, fy=1.0)
    frame[60 : 60 + right.shape[0], 400 : 400 + right.shape[1]] = right[: 360 - 60]
    found = MODELS.detector.detections(frame, "short")
    assert len(found) == 2
    assert sorted(d.box[0] < 320 for d in found) == [False, True]
    assert len(FaceDetector().detect(frame)) == 2


def test_small_face_in_4k_needs_the_full_range_model(astronaut) -> None:
    portrait = astronaut[20:260, 110:340]
    frame = on_canvas(portrait, (3840, 2160), 3.3, 1500, 900)  # a face ~10 % of the width
    assert BlazeFace("short").detect(frame) == []
    (found,) = BlazeFace("full").detect(frame)
    x, y, w, _ = found.box
    assert 1500 < x < 1500 + 230 * 3.3 and 900 < y < 900 + 240 * 3.3 and w > 150
    tracking = FaceTracking(lambda: MODELS, detect_every_s=1.0)  # auto
    seen = [tracking.update(frame, t) for t in (0.0, 1.0, 2.0, 3.0)]
    assert seen[0].main is None and seen[-1].main is not None  # two misses, then full range
    assert seen[-1].detector == "full" and seen[-1].faces == 1


def test_no_face_in_a_plain_picture() -> None:
    assert FaceDetector().detect(np.full((360, 640, 3), 128, np.uint8)) == []


def test_head_pose_frontal_turned_and_mirrored(astronaut) -> None:
    frontal = head_pose(mesh_of(astronaut))
    assert frontal is not None
    assert abs(frontal.yaw) < 8 and abs(frontal.pitch) < 15 and abs(frontal.roll) < 8, frontal
    turned = turn_head(astronaut, -30)  # the face turns towards the picture's right
    right = head_pose(mesh_of(turned))
    left = head_pose(mesh_of(mirrored(turned)))
    assert right is not None and left is not None
    assert right.yaw > 15 and left.yaw < -15, (right, left)
    assert abs(right.yaw + left.yaw) < 8 and abs(right.roll + left.roll) < 6


def test_gaze_follows_the_iris(astronaut) -> None:
    points = mesh_of(astronaut)
    iris = Iris()
    ahead = gaze(points, *iris.centres(astronaut, points))
    assert abs(ahead.x) < 0.3 and abs(ahead.y) < 0.5, ahead
    looks = {}
    for dx in (-3, 3):  # move what is inside each eye opening sideways, corners stay
        shifted = astronaut.copy()
        for contour in ((33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160,
                         161, 246), (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384,
                                     385, 386, 387, 388, 466)):  # fmt: skip
            mask = np.zeros(astronaut.shape[:2], np.uint8)
            cv2.fillConvexPoly(mask, np.round(points[list(contour), :2]).astype(np.int32), 255)
            moved = np.roll(astronaut, dx, axis=1)
            shifted[mask > 0] = moved[mask > 0]
        looks[dx] = gaze(points, *iris.centres(shifted, points)).x
    assert looks[-3] < ahead.x - 0.1 < ahead.x + 0.1 < looks[3], (looks, ahead)


def test_emotion_on_the_upright_crop_of_a_tilted_face(astronaut) -> None:
    from vlm_monitor.analyzers.emotion import EmotionModel

    model = EmotionModel()
    turn = cv2.getRotationMatrix2D((256, 256), 30, 1.0)
    tilted = cv2.warpAffine(astronaut, turn, (512, 512))
    points = mesh_of(tilted)
    crop = aligned_face(tilted, points)
    assert crop.shape == (64, 64)
    result = model.predict(tilted, (0, 0, 1, 1), landmarks=points)
    assert result["dominant_emotion"] == "happy" and result["confidence"] > 0.9


def test_tracking_is_shared_per_frame_and_keeps_a_stable_box(astronaut) -> None:
    frame = on_canvas(astronaut, (640, 360), 0.7, 150, 0)
    tracking = FaceTracking(lambda: MODELS, detect_every_s=1.0, look=True)
    seen = []
    for i in range(30):  # 2 s at 15 fps, the head swaying 2 px
        ts = i / 15
        image = np.roll(frame, round(2 * math.sin(2 * math.pi * 0.5 * ts)), axis=1)
        first = tracking.update(image, ts)
        assert tracking.update(image, ts) is first  # the second analyzer gets the same work
        seen.append(first)
    assert tracking.detections == 2  # once a second, landmarks in between
    faces = [s.main for s in seen]
    assert all(f is not None and f.landmarks is not None for f in faces)
    assert all(iou(f.box, faces[0].box) > 0.8 for f in faces)  # type: ignore[union-attr]
    last = faces[-1]
    assert last is not None and last.pose is not None and last.gaze is not None
    assert seen[-1].faces == 1 and seen[-1].detector == "short"
    blank = np.full_like(frame, 110)
    later = [tracking.update(blank, 2 + i / 15).main for i in range(40)]
    assert later[-1] is None  # the face left: released after the hold


@pytest.mark.parametrize("landmarks_fps", [None, 8.0])
def test_landmarks_follow_a_quick_move_between_detections(astronaut, landmarks_fps) -> None:
    """The head moves by most of its width in two thirds of a second: the landmarks keep up
    (heart rate keeps its window), also when the mesh runs on every other frame only, and
    the next detection brings the box along."""
    tracking = FaceTracking(lambda: MODELS, detect_every_s=1.0, landmarks_fps=landmarks_fps)
    frames = [on_canvas(astronaut, (640, 360), 0.7, 100 + min(i, 10) * 8, 0) for i in range(20)]
    seen = [tracking.update(f, i / 15).main for i, f in enumerate(frames)]
    assert all(f is not None and f.landmarks is not None for f in seen)
    meshes = len({id(f.landmarks) for f in seen if f is not None})
    # Every moving frame (or every other one), then the detection at 1 s: the still face of
    # frames 11-19 keeps its landmarks.
    assert meshes == (12 if landmarks_fps is None else 7), meshes
    nose_moved = seen[12].landmarks[1, 0] - seen[0].landmarks[1, 0]  # type: ignore[union-attr]
    assert 70 < nose_moved < 90, nose_moved
    assert iou(seen[-1].box, seen[0].box) < 0.5 and seen[-1].box[0] > seen[0].box[0] + 30


def test_a_still_face_keeps_its_landmarks_until_it_moves(astronaut) -> None:
    """Between detections the mesh runs again only when the face moves: the pulse's colour
    change and sensor noise are not a move, a two-pixel shift is."""
    rng = np.random.default_rng(3)
    # Detections 5 s apart: longer than the 2 s the tracker holds a face it is not told of.
    tracking = FaceTracking(lambda: MODELS, detect_every_s=5.0, look=True)

    def shot(x: int, gain: float) -> np.ndarray:
        image = on_canvas(astronaut, (640, 360), 0.7, x, 0).astype(np.float32) * gain
        return np.clip(image + rng.normal(0, 2, image.shape), 0, 255).astype(np.uint8)

    pulse = [shot(100, 1 + 0.006 * math.sin(2 * math.pi * 1.2 * i / 15)) for i in range(45)]
    still = [tracking.update(f, i / 15).main for i, f in enumerate(pulse)]
    assert all(f is not None and f.landmarks is not None for f in still)  # 3 s: still there
    assert len({id(f.landmarks) for f in still if f is not None}) == 1  # the first frame's
    before = still[-1].landmarks  # type: ignore[union-attr]
    moved = tracking.update(shot(102, 1.0), 45 / 15).main
    assert moved is not None and moved.landmarks is not None
    assert moved.landmarks is not before
    assert 1.0 < moved.landmarks[1, 0] - before[1, 0] < 3.0  # the nose followed


def test_skin_region_is_skin_and_misses_eyes_and_mouth(astronaut) -> None:
    points = mesh_of(astronaut)
    from vlm_monitor.analyzers.face_geometry import skin_polygons

    keep, drop = skin_polygons(points)
    mask = np.zeros(astronaut.shape[:2], np.uint8)
    cv2.fillPoly(mask, keep, 255)
    cv2.fillPoly(mask, drop, 0)
    for index in (1, 13, 33, 133, 263, 362, 105, 334, 61, 291):  # nose, mouth, eyes, brows
        x, y = np.round(points[index, :2]).astype(int)
        assert mask[y, x] == 0, index
    for index in (151, 50, 280, 199):  # forehead, cheeks, chin
        x, y = np.round(points[index, :2]).astype(int)
        assert mask[y, x] == 255, index
    assert skin_mask(astronaut, keep, drop) is not None
    assert skin_mask(astronaut, [], []) is None


def test_heart_rate_through_the_face_pipeline_with_sway() -> None:
    """Heavy sensor noise (24 grey levels a pixel) and a swaying, rolling head: the landmark
    skin region keeps POS within a few bpm."""
    from test_rppg import sway_video

    errors = []
    for bpm in (55, 80, 105, 130):
        tracking, skin = FaceTracking(lambda: MODELS), SkinTrace()  # as the analyzer reads
        means = []
        for ts, frame in sway_video(bpm, noise=24.0, sway_px=8.0, seed=1):
            face = tracking.update(frame, ts).main
            assert face is not None
            means.append(skin.mean(frame, face.skin_regions(), ts))
        assert all(m is not None for m in means)
        errors.append(abs(heart_rate(np.stack(means), 15.0).bpm - bpm))
    assert max(errors) < 3.0, errors


def test_pose_and_irises_run_only_on_frames_asked_to_look(astronaut) -> None:
    """Heart rate reads every frame without looking; attention reads one in three and asks
    where the face looks: head pose and the iris model run on those only, and the first
    reader's work is not redone."""
    frame = on_canvas(astronaut, (640, 360), 0.7, 150, 0)
    tracking = FaceTracking(lambda: MODELS, detect_every_s=1.0)
    for i in range(9):
        ts = i / 15
        plain = tracking.update(frame, ts)
        assert plain.main is not None and plain.main.landmarks is not None
        assert plain.main.gaze is None and plain.main.pose is None and not plain.looked
        if i % 3 == 0:
            seen = tracking.update(frame, ts, look=True)
            assert seen.looked and seen.main is not None
            assert seen.main.gaze is not None and seen.main.pose is not None
            assert seen.main.landmarks is plain.main.landmarks  # the mesh did not run again
            assert tracking.update(frame, ts, look=True) is seen
