"""Picture geometry: analysis sizes as pixel budgets, and boxes between analysed pictures and
the displayed source picture. Pure functions, no I/O.

Every coordinate the product shows (result boxes) or takes (regions of interest, crops) is in
displayed source pixels: the camera's picture after its display rotation, at full size. The
analysed picture is a scaled copy of it (and for flow nodes maybe a crop of that); a
``Placement`` says how the two relate.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

Size = tuple[int, int]  # (width, height) in pixels
Box = tuple[int, int, int, int]  # x, y, width, height


def _even(value: float, limit: int) -> int:
    """Nearest even integer to ``value``, at least 2 and at most ``limit`` (rounded down to
    even when ``limit`` is odd): encoders of 4:2:0 video need even sides."""
    top = max(2, limit - limit % 2)
    return min(top, max(2, 2 * round(value / 2)))


@functools.lru_cache(maxsize=256)
def fit_budget(src_w: int, src_h: int, budget_w: int, budget_h: int) -> Size:
    """The size to analyse a ``src_w`` x ``src_h`` picture at, for a budget of
    ``budget_w * budget_h`` pixels: the source's aspect ratio, about that many pixels, even
    sides. A source within the budget is used as it is (never upscaled, no conversion).

    640x360 (230,400 px): 16:9 -> 640x360, 4:3 -> 554x416, 1:1 -> 480x480, 9:16 -> 360x640.
    Cached: one computation per source shape and budget, however many frames ask.
    """
    if src_w <= 0 or src_h <= 0:
        raise ValueError(f"source size {src_w}x{src_h} is empty")
    budget = budget_w * budget_h
    if src_w * src_h <= budget:
        return (src_w, src_h)
    scale = math.sqrt(budget / (src_w * src_h))
    return (_even(src_w * scale, src_w), _even(src_h * scale, src_h))


# Analysis frames: a source up to half as large again as the budget (a 640x480 webcam under
# the 640x360 default) is analysed as it is. Shrinking it by an odd ratio costs several times
# the colour conversion itself (swscale's scaled pass 0.5-0.8 ms a frame against 0.11 ms to
# convert a 640x480 frame with OpenCV), and the face analyzers' own cost barely depends on the
# frame's size (they work on fixed-size crops).
ANALYSIS_SLACK = 1.5


def analysis_size(src_w: int, src_h: int, budget: Size | None) -> Size:
    """The size analyzers get a ``src_w`` x ``src_h`` source at, for the stream's
    ``analysis_size`` budget (None: native): ``fit_budget``, except that a source within
    ``ANALYSIS_SLACK`` times the budget stays as it is, and one whose half is within that
    factor of the budget, either way, is halved (1280x720 and 1280x960 under 640x360)."""
    if budget is None:
        return (src_w, src_h)
    pixels, wanted = src_w * src_h, budget[0] * budget[1]
    if pixels <= ANALYSIS_SLACK * wanted:
        return (src_w, src_h)
    halved = pixels / 4
    if (
        src_w % 4 == 0
        and src_h % 4 == 0
        and wanted / ANALYSIS_SLACK <= halved <= ANALYSIS_SLACK * wanted
    ):
        return (src_w // 2, src_h // 2)  # even sides, and a fast path (``pixels.to_bgr``)
    return fit_budget(src_w, src_h, *budget)


def _clamp(value: float, low: int, high: int) -> int:
    return max(low, min(high, round(value)))


@dataclass(frozen=True, slots=True)
class Placement:
    """Where an analysed picture sits in the displayed source picture: the source was scaled
    from ``source`` to ``scaled``, then maybe cropped at ``offset`` (in scaled pixels)."""

    source: Size
    scaled: Size
    offset: tuple[int, int] = (0, 0)

    @classmethod
    def whole(cls, source: Size, scaled: Size | None = None) -> Placement:
        return cls(source, scaled or source)

    def cropped(self, x: int, y: int) -> Placement:
        """The placement of a crop at (x, y) of this picture."""
        return Placement(self.source, self.scaled, (self.offset[0] + x, self.offset[1] + y))

    @property
    def _scale(self) -> tuple[float, float]:
        return self.source[0] / self.scaled[0], self.source[1] / self.scaled[1]

    def to_source(self, box: Box | list[int]) -> Box:
        """A box of the analysed picture in displayed source pixels, within the source."""
        sx, sy = self._scale
        sw, sh = self.source
        x0 = _clamp((box[0] + self.offset[0]) * sx, 0, sw)
        y0 = _clamp((box[1] + self.offset[1]) * sy, 0, sh)
        x1 = _clamp((box[0] + box[2] + self.offset[0]) * sx, x0, sw)
        y1 = _clamp((box[1] + box[3] + self.offset[1]) * sy, y0, sh)
        return (x0, y0, x1 - x0, y1 - y0)

    def to_image(self, box: Box | list[int] | tuple[int, ...]) -> Box:
        """A box in displayed source pixels in the analysed picture's pixels, cut to the
        picture (an empty box when it lies outside)."""
        sx, sy = self._scale
        limit_w = self.scaled[0] - self.offset[0]
        limit_h = self.scaled[1] - self.offset[1]
        x0 = _clamp(box[0] / sx - self.offset[0], 0, limit_w)
        y0 = _clamp(box[1] / sy - self.offset[1], 0, limit_h)
        x1 = _clamp((box[0] + box[2]) / sx - self.offset[0], x0, limit_w)
        y1 = _clamp((box[1] + box[3]) / sy - self.offset[1], y0, limit_h)
        return (x0, y0, x1 - x0, y1 - y0)

    def normalise(self, box: Box) -> list[float]:
        """A box in displayed source pixels as fractions 0..1 of the source's sides."""
        sw, sh = self.source
        return [round(box[0] / sw, 4), round(box[1] / sh, 4),
                round(box[2] / sw, 4), round(box[3] / sh, 4)]  # fmt: skip

    def box_fields(self, box: Box | list[int] | None, name: str = "box") -> dict[str, object]:
        """``{name: [x, y, w, h] in source pixels, name_norm: [x, y, w, h] in 0..1}`` for a
        box of the analysed picture (both None without a box)."""
        if box is None:
            return {name: None, f"{name}_norm": None}
        placed = self.to_source(box)
        return {name: list(placed), f"{name}_norm": self.normalise(placed)}

    def boxes_fields(self, boxes: list[Box], name: str = "boxes") -> dict[str, object]:
        placed = [self.to_source(b) for b in boxes]
        return {
            name: [list(b) for b in placed],
            f"{name}_norm": [self.normalise(b) for b in placed],
        }
