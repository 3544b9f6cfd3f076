"""What the face mesh's landmarks tell: head pose, gaze, the skin regions for heart rate and
an upright face crop for emotion. Pure functions of landmarks (N, 3) in frame pixels.

Mesh indices name points of the subject's face; "left" here is the picture's left in a
frontal, non-mirrored view (the person's right).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from vlm_monitor.analyzers.face_mesh import LEFT_EYE, RIGHT_EYE, Roi

# Skin for rPPG: the face oval pulled in by a twentieth (off the hairline, the ears and the
# background at the cheeks' edge) less the eyes with their brows, the nose and the mouth,
# each grown by a tenth: forehead, cheeks and chin, the parts that stay skin when the person
# talks, blinks or frowns and that carry the pulse. Convex hulls of these mesh points.
# The area matters: under heavy sensor noise three small patches (forehead band, cheek
# centres; 1/3 of these pixels) left POS 8.4 bpm off on average, and a tighter cut (oval
# 0.9, exclusions 1.2) still missed some static faces by 49 bpm.
# fmt: off
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378,
             400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54,
             103, 67, 109)
NOT_SKIN: dict[str, tuple[int, ...]] = {
    "left_eye": (70, 63, 105, 66, 107, 55, 65, 52, 53, 46, 33, 7, 163, 144, 145, 153, 154,
                 155, 133, 130, 25, 110, 24, 23, 22, 26, 112, 243, 226, 31, 228, 229, 230,
                 231, 232, 233, 244),
    "right_eye": (300, 293, 334, 296, 336, 285, 295, 282, 283, 276, 263, 249, 390, 373, 374,
                  380, 381, 382, 362, 359, 255, 339, 254, 253, 252, 256, 341, 463, 446, 261,
                  448, 449, 450, 451, 452, 453, 464),
    "nose": (168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 327, 64, 294, 48, 278, 115, 344, 220,
             440, 45, 275, 217, 437, 174, 399, 122, 351),
    "mouth": (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269,
              270, 409, 57, 287, 164, 18, 212, 432, 202, 422),
}
# fmt: on
OVAL_SCALE, NOT_SKIN_SCALE = 0.95, 1.1

# The canonical face for head pose: MediaPipe's canonical face model (the mesh the
# landmarks are fitted to) at eight points that an expression hardly moves (nose tip, nose
# bridge, mid-forehead, chin, the four eye corners), in millimetres and camera axes (x to the
# picture's right, y down, z away from the camera), nose tip at the origin. Mouth corners
# are left out: a smile moves them by a fifth of the eye distance.
POSE_INDICES = (1, 168, 151, 152, 33, 133, 362, 263)
POSE_MODEL = np.array(
    [
        [0.0, 0.0, 0.0],
        [0.0, -44.0, 22.4],
        [0.0, -76.7, 24.5],
        [0.0, 82.8, 32.1],
        [-44.5, -37.9, 43.0],
        [-18.6, -37.1, 37.2],
        [18.6, -37.1, 37.2],
        [44.5, -37.9, 43.0],
    ]
)
LIDS = {"left": (159, 145), "right": (386, 374)}  # upper, lower lid midpoints


@dataclass(frozen=True)
class HeadPose:
    """Degrees. ``yaw`` > 0: the face turns towards the picture's right (the person's
    left); ``pitch`` > 0: looking up; ``roll`` > 0: the head tilts clockwise on screen."""

    yaw: float
    pitch: float
    roll: float


def head_pose(points: np.ndarray) -> HeadPose | None:
    """Head pose by rotating the canonical face onto the landmarks in 3D (Kabsch/Procrustes
    on the mesh's x, y and z, as MediaPipe's face geometry does with all of its points).

    ``cv2.solvePnP`` on the same points' x and y alone was tried and is worse: the 2D fit
    reads a face shorter than the canonical one (a smile, a short chin) as a head tipped
    down (pitch -28 to -36 degrees for the frontal astronaut, here -7), and it reads heads
    rendered turned by +-30 degrees as +20 / -10 (here +24 / -21)."""
    observed = points[list(POSE_INDICES)]
    a = observed - observed.mean(axis=0)
    b = POSE_MODEL - POSE_MODEL.mean(axis=0)
    u, _, vt = np.linalg.svd(b.T @ a)
    flip = np.diag([1.0, 1.0, float(np.sign(np.linalg.det(u @ vt)))])  # no mirror image
    r = (u @ flip @ vt).T  # canonical -> observed
    if not np.all(np.isfinite(r)):
        return None
    # r = Rz(roll) @ Ry(yaw) @ Rx(pitch) in camera axes; y points down, so a positive x
    # rotation tips the face down and a positive y rotation turns it to the picture's left.
    pitch = -math.degrees(math.atan2(r[2, 1], r[2, 2]))
    yaw = -math.degrees(math.asin(max(-1.0, min(1.0, -r[2, 0]))))
    roll = math.degrees(math.atan2(r[1, 0], r[0, 0]))
    return HeadPose(round(yaw, 1), round(pitch, 1), round(roll, 1))


@dataclass(frozen=True)
class Gaze:
    """Where the irises sit in the eyes, -1..1 each: ``x`` along the eye line (> 0 towards
    the picture's right), ``y`` across it (> 0 down), 0 in the middle. Relative to the head:
    add the head pose for where the person looks."""

    x: float
    y: float


def gaze(points: np.ndarray, left_iris: np.ndarray, right_iris: np.ndarray) -> Gaze:
    """The mean of both eyes: each iris centre against its eye's corners (along the eye
    line, in half eye widths) and its lids (across it, in half the eye's opening)."""
    xs, ys = [], []
    for iris, corners, lids in (
        (left_iris, LEFT_EYE, LIDS["left"]),
        (right_iris, RIGHT_EYE, LIDS["right"]),
    ):
        a, b = points[corners[0], :2], points[corners[1], :2]
        axis = b - a
        half = float(np.hypot(*axis)) / 2
        if half < 1e-6:
            continue
        axis = axis / (2 * half)
        across = np.array([-axis[1], axis[0]])  # the eye line turned 90 degrees, down
        upper, lower = points[lids[0], :2], points[lids[1], :2]
        opening = max(abs(float((lower - upper) @ across)) / 2, half * 0.15)
        xs.append(float((iris - (a + b) / 2) @ axis) / half)
        ys.append(float((iris - (upper + lower) / 2) @ across) / opening)
    if not xs:
        return Gaze(0.0, 0.0)
    return Gaze(_unit(float(np.mean(xs))), _unit(float(np.mean(ys))))


def _unit(value: float) -> float:
    return round(max(-1.0, min(1.0, value)), 3)


def _hull(points: np.ndarray, idx: tuple[int, ...], scale: float) -> np.ndarray:
    xy = points[list(idx), :2]
    centre = xy.mean(axis=0)
    hull: np.ndarray = cv2.convexHull(np.round(centre + scale * (xy - centre)).astype(np.int32))
    return hull


def skin_polygons(points: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The skin region as int32 polygons in frame pixels: those to take, those to leave
    out of them."""
    keep = [_hull(points, FACE_OVAL, OVAL_SCALE)]
    drop = [_hull(points, idx, NOT_SKIN_SCALE) for idx in NOT_SKIN.values()]
    return keep, drop


def upright_roi(points: np.ndarray, margin: float = 0.08) -> Roi:
    """The face's square turned upright (eye line level): the landmarks' extent along and
    across the eye line, its longer side plus ``margin`` on each side. It frames the face
    as the frontal-face boxes the emotion model was trained on."""
    a, b = points[LEFT_EYE[0], :2], points[RIGHT_EYE[1], :2]
    angle = math.atan2(float(b[1] - a[1]), float(b[0] - a[0]))
    c, s = math.cos(angle), math.sin(angle)
    u = points[:, 0] * c + points[:, 1] * s
    v = -points[:, 0] * s + points[:, 1] * c
    mu, mv = (u.min() + u.max()) / 2, (v.min() + v.max()) / 2
    side = float(max(u.max() - u.min(), v.max() - v.min())) * (1 + 2 * margin)
    return Roi(float(mu * c - mv * s), float(mu * s + mv * c), side, angle)


def aligned_face(bgr: np.ndarray, points: np.ndarray, size: int = 64) -> np.ndarray:
    """The upright face as a ``size``x``size`` grey picture."""
    crop = upright_roi(points).crop(bgr, size * 2)  # warp at 2x, then area-average down
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    return cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA)


def landmark_box(points: np.ndarray, frame_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The landmarks' upright bounding box in frame pixels, cut to the frame."""
    w, h = frame_size
    x0, y0 = np.clip(points[:, :2].min(axis=0), 0, [w, h])
    x1, y1 = np.clip(points[:, :2].max(axis=0), 0, [w, h])
    return (round(float(x0)), round(float(y0)), round(float(x1 - x0)), round(float(y1 - y0)))
