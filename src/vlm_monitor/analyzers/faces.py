"""Face tracking for one stream, shared by its face analyzers (emotion, heart rate,
attention): detection and landmarks run once per analysed frame, whoever asks first.

Per frame: BlazeFace re-detects every ``detect_every_s`` (1-4 ms); in between, the Face Mesh
follows the face from its previous landmarks (~2 ms), as MediaPipe tracks. The reported
box is the tracker's stable box (matched by IoU at each detection, smoothed, held for
``hold_s`` without one): rPPG used to read colour inside it, and a box that jumped once a
second injected a 60 bpm artefact. The skin regions now come from the landmarks, which move
with the face frame by frame instead of jumping.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

import numpy as np

from vlm_monitor.analyzers.face_detect import Box, Detection, FaceDetector, Range
from vlm_monitor.analyzers.face_geometry import (
    Gaze,
    HeadPose,
    gaze,
    head_pose,
    landmark_box,
    skin_polygons,
)
from vlm_monitor.analyzers.face_mesh import (
    MIN_FACE_SCORE,
    FaceMesh,
    Iris,
    Roi,
    roi_from_detection,
    roi_from_landmarks,
)
from vlm_monitor.analyzers.stillness import Stillness

DetectorMode = Literal["auto", "short", "full"]
Polygons = tuple[list[np.ndarray], list[np.ndarray]]
__all__ = ["Box", "FaceDetector", "FaceModels", "FaceTracker", "FaceTracking", "TrackedFace"]

# The short-range model stops finding faces below ~11 % of the frame's longer side (the
# full-range model's box; measured on the astronaut in 640x360 and 4K frames), the full-range
# model goes down to ~5 %. ``auto`` moves to full range when the face nears that limit or
# short range misses twice in a row, and back when a face is comfortably large again.
SMALL_FACE = 0.14  # of the frame's longer side, short range's own box
LARGE_FACE = 0.20  # of the longer side, full range's box
AUTO_MISSES = 2  # detections in a row with no face before trying the other model
# The irises (2 x ~1.1 ms, the dearest of the face models) are read once a second; frames
# between keep the last gaze, and head pose (from the landmarks) follows every frame looked
# at. Looking away counts after seconds (``away_s``, 3 by default: three readings or more).
GAZE_EVERY_S = 1.0


def iou(a: Box, b: Box) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


class Detector(Protocol):
    def detect(self, bgr: np.ndarray) -> list[Box]: ...


@dataclass(frozen=True)
class TrackedFace:
    """The tracked face in one frame, in analysis-frame pixels. ``landmarks`` (468, 3) and
    what follows from them are None when the mesh lost the face in this frame."""

    box: Box
    age_s: float  # since the last detection that confirmed it
    landmarks: np.ndarray | None = None
    score: float = 0.0  # the mesh's confidence that a face is there
    pose: HeadPose | None = None
    gaze: Gaze | None = None
    # The skin polygons of ``landmarks``, computed on first use and shared by the faces of
    # the frames that reuse these landmarks (heart rate asks on every frame).
    skin: list[Polygons] = field(default_factory=list, compare=False, repr=False)

    def skin_regions(self) -> Polygons:
        """The rPPG skin region: polygons to take and to leave out (none without
        landmarks)."""
        if self.landmarks is None:
            return ([], [])
        if not self.skin:  # two threads may both compute it: the same answer
            self.skin.append(skin_polygons(self.landmarks))
        return self.skin[0]


@dataclass(frozen=True)
class FaceFrame:
    """What one analysed frame shows: every face of the latest detection (``boxes``, largest
    first; the count is what ``multiple_faces`` needs), the tracked main face, and which
    model found them."""

    ts: float
    boxes: list[Box] = field(default_factory=list)
    main: TrackedFace | None = None
    detector: Range = "short"
    looked: bool = False  # head pose and irises done for this frame (``main.pose``/``gaze``)

    @property
    def faces(self) -> int:
        return len(self.boxes)


class FaceTracker:
    """Follows the main face's box: re-detects every ``detect_every_s``, matches by IoU,
    keeps the box for ``hold_s`` without a detection, and smooths small moves."""

    def __init__(
        self,
        detector: Detector | None = None,
        detect_every_s: float = 1.0,
        hold_s: float = 2.0,
        match_iou: float = 0.3,
        smoothing: float = 0.3,
    ) -> None:
        self.detector = detector
        self.detect_every_s, self.hold_s = detect_every_s, hold_s
        self.match_iou, self.smoothing = match_iou, smoothing
        self._box: Box | None = None
        self._confirmed_at = 0.0
        self._next_detect = 0.0

    def update(self, bgr: np.ndarray, ts: float) -> TrackedFace | None:
        """Detects when due, in the caller's thread; then the tracked face at ``ts``."""
        if self.detector is not None and self.detection_due(ts):
            self.accept(self.detector.detect(bgr), ts)
        return self.current(ts)

    def detection_due(self, ts: float) -> bool:
        """True once per ``detect_every_s``: the caller then detects and calls ``accept``."""
        if ts < self._next_detect:
            return False
        self._next_detect = ts + self.detect_every_s
        return True

    def accept(self, faces: list[Box], ts: float) -> None:
        if faces:
            self._accept(faces, ts)

    def confirm(self, ts: float) -> None:
        """The face is still there (the mesh says so) though no detection ran."""
        if self._box is not None:
            self._confirmed_at = ts

    def current(self, ts: float) -> TrackedFace | None:
        if self._box is None or ts - self._confirmed_at > self.hold_s:
            self._box = None
            return None
        return TrackedFace(self._box, max(0.0, ts - self._confirmed_at))

    def _accept(self, faces: list[Box], ts: float) -> None:
        if self._box is not None:
            box = self._box
            best = max(faces, key=lambda f: iou(f, box))
            if iou(best, box) >= self.match_iou:
                k = self.smoothing
                x, y, w, h = ((1 - k) * o + k * n for o, n in zip(box, best, strict=True))
                self._box = (round(x), round(y), round(w), round(h))
                self._confirmed_at = ts
                return
        self._box = faces[0]
        self._confirmed_at = ts


class FaceModels:
    """The four face models of one thread, built on first use (LiteRT interpreters are not
    thread-safe: one set per worker thread, none shared)."""

    def __init__(self) -> None:
        self.detector = FaceDetector()
        self._mesh: FaceMesh | None = None
        self._iris: Iris | None = None

    @property
    def mesh(self) -> FaceMesh:
        if self._mesh is None:
            self._mesh = FaceMesh()
        return self._mesh

    @property
    def iris(self) -> Iris:
        if self._iris is None:
            self._iris = Iris()
        return self._iris


class FaceTracking:
    """One stream's faces, computed once per analysed frame for all its analyzers.
    Thread-safe: the stream's analyzers may run in different threads at once.

    ``update(image, ts)`` gives a FaceFrame: ``faces`` and ``boxes`` (every face of the
    latest detection, at most ``detect_every_s`` old), ``main`` (the tracked face: stable
    ``box``, 468 ``landmarks``, ``pose`` yaw/pitch/roll in degrees, ``gaze`` x/y in -1..1
    when asked, ``skin_regions()``), all in analysis-frame pixels. An analyzer that reads
    where the face looks asks ``update(..., look=True)``: head pose and the iris model then
    run on the frames it analyses only, not on every frame heart rate (15 fps) analyses.

    ``models`` returns the calling thread's FaceModels. ``detector``: ``short`` (webcam
    distance), ``full`` (room cameras), or ``auto`` (short range, full range while faces
    are small or short range finds none). ``look``: head pose and irises (2 x ~1.1 ms, read
    once a second) on every update unless the call says otherwise."""

    def __init__(
        self,
        models: FaceModelsSource,
        detect_every_s: float = 1.0,
        detector: DetectorMode = "auto",
        look: bool = False,
        hold_s: float = 2.0,
        landmarks_fps: float | None = None,
    ) -> None:
        self._models = models
        self.mode: DetectorMode = detector
        self.look = look
        # The mesh runs at most this often; frames between reuse the last landmarks.
        self._mesh_every = 1.0 / landmarks_fps if landmarks_fps else 0.0
        self._mesh_at = float("-inf")
        self._score = 0.0
        # Between detections, a face that has not moved keeps its landmarks: the mesh runs
        # again when it moves (a pixel), or at the next detection.
        self._face_still = Stillness(max_age_s=detect_every_s)
        self._gaze: Gaze | None = None
        self._gaze_at = float("-inf")
        self._tracker = FaceTracker(None, detect_every_s, hold_s)
        self._lock = threading.Lock()
        self._range: Range = "full" if detector == "full" else "short"
        self._misses = 0
        self._boxes: list[Box] = []
        self._points: np.ndarray | None = None  # the last frame's landmarks
        self._skin: list[Polygons] = []  # their skin polygons, once computed
        self._last = FaceFrame(float("-inf"))
        self.detections = 0

    def update(self, image: np.ndarray, ts: float, look: bool | None = None) -> FaceFrame:
        """The faces in ``image`` (a frame of this stream at ``ts``); a frame already seen,
        or one older than the last (a slower analyzer's), gets the last answer. ``look``:
        with head pose and gaze (default: the tracking's ``look``)."""
        with self._lock:
            if ts > self._last.ts:
                self._last = self._update(image, ts)
            last = self._last
            main = last.main
            wanted = self.look if look is None else look
            if wanted and not last.looked and last.ts == ts:
                if main is not None and main.landmarks is not None:
                    points = main.landmarks
                    if ts - self._gaze_at >= GAZE_EVERY_S - 1e-3:
                        self._gaze = gaze(points, *self._models().iris.centres(image, points))
                        self._gaze_at = ts
                    main = replace(main, pose=head_pose(points), gaze=self._gaze)
                else:  # a face found again is read afresh
                    self._gaze_at = float("-inf")
                self._last = last = replace(last, main=main, looked=True)
            return last

    def _update(self, image: np.ndarray, ts: float) -> FaceFrame:
        models = self._models()
        found: list[Detection] | None = None
        if self._tracker.detection_due(ts):
            found = self._detect(models, image)
            self.detections += 1
            boxes = sorted((d.box for d in found), key=lambda b: b[2] * b[3], reverse=True)
            self._boxes = boxes
            self._tracker.accept(boxes, ts)
        still = found is None and self._points is not None and self._face_still.still(image, ts)
        if still:  # as the mesh last saw it: still there, though no model looked
            self._tracker.confirm(ts)
        tracked = self._tracker.current(ts)
        if tracked is None:
            self._points = None
            return FaceFrame(ts, self._boxes, None, self._range)
        if still or (
            found is None
            and self._points is not None
            and ts - self._mesh_at < self._mesh_every - 1e-3
        ):
            face = TrackedFace(
                tracked.box, tracked.age_s, self._points, self._score, skin=self._skin
            )
            return FaceFrame(ts, self._boxes, face, self._range)
        roi = self._roi(tracked.box, found, image.shape)
        if roi is None:
            self._points = None
            return FaceFrame(ts, self._boxes, tracked, self._range)
        mesh = models.mesh.run(image, roi)
        if mesh.score < MIN_FACE_SCORE:
            self._points = None
            return FaceFrame(ts, self._boxes, tracked, self._range)
        points = self._points = mesh.points
        self._skin = []
        self._mesh_at, self._score = ts, round(mesh.score, 3)
        self._face_still.mark(image, landmark_box(points, (image.shape[1], image.shape[0])), ts)
        self._tracker.confirm(ts)
        face = TrackedFace(
            tracked.box, 0.0 if found else tracked.age_s, points, self._score, skin=self._skin
        )
        return FaceFrame(ts, self._boxes, face, self._range)

    def _roi(self, box: Box, found: list[Detection] | None, shape: tuple[int, ...]) -> Roi | None:
        """Where to look for the landmarks: from the last frame's landmarks (no jump at each
        detection; the mesh's score says when they are lost), unless a detection just moved
        the tracked box to another face; then, and when tracking was lost, from the
        detection matching the box. Between detections the box may lag a quick move: the
        landmarks are not held to it, or heart rate would lose its window."""
        h, w = shape[:2]
        if self._points is not None and (
            found is None or iou(landmark_box(self._points, (w, h)), box) > 0.1
        ):
            return roi_from_landmarks(self._points)
        if found:
            best = max(found, key=lambda d: iou(d.box, box))
            if iou(best.box, box) > 0:
                return roi_from_detection(best)
        return None

    def _detect(self, models: FaceModels, image: np.ndarray) -> list[Detection]:
        if self.mode != "auto":
            return models.detector.detections(image, self.mode)
        longer = max(image.shape[:2])
        found = models.detector.detections(image, self._range)
        if found:
            self._misses = 0
            width = max(d.w for d in found) / longer
            if self._range == "short" and width < SMALL_FACE:
                self._range = "full"
            elif self._range == "full" and width >= LARGE_FACE:
                self._range = "short"
            return found
        self._misses += 1
        if self._misses < AUTO_MISSES:
            return found
        self._misses = 0
        self._range = "full" if self._range == "short" else "short"
        return models.detector.detections(image, self._range)


class FaceModelsSource(Protocol):
    def __call__(self) -> FaceModels: ...
