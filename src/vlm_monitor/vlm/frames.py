"""The pictures a VLM request carries: how many frames and at what size fit the provider's
context, the reference picture sent first, and the annotation drawn on each frame.

The budget (a provider's ``context_tokens``, ``image_tokens``, ``max_pixels``):

- every picture is at most ``max_pixels`` (scaled down, aspect ratio kept);
- pictures get the context that is left once the answer and the text have their room:
  ``context_tokens - max_tokens - text - TEMPLATE_TOKENS``, the text (prompt, schema, repair
  turns) counted as one token per 3 bytes of UTF-8: more than English text costs, about
  what Chinese costs;
- one picture costs ``image_tokens``, or, unset, what Qwen-VL counts for its pixels (one token
  per 28x28 pixels, rounded up per side, plus 2);
- the reference picture, if any, takes one place; the clip's frames get the others, sampled
  evenly, first and last kept;
- when fewer than ``MIN_FRAMES`` would fit and the cost is counted from pixels, the pictures
  are made smaller until ``MIN_FRAMES`` fit (not below ``MIN_PIXELS``);
- when not even that fits, the call is refused (``FrameBudgetError``) before it is sent.

Without ``context_tokens`` every frame is sent, as the clip has it (capped by ``max_pixels``).
Blocking (scaling, drawing): runs on the provider's calling thread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from vlm_monitor.clips.types import iso
from vlm_monitor.events.snapshot import draw_boxes
from vlm_monitor.vlm.base import ProviderError, VlmRequest, image_grid

if TYPE_CHECKING:
    from vlm_monitor.config import VlmProviderConfig

PATCH = 28  # pixels per token side: Qwen2/2.5-VL's 14-pixel patches merged 2x2
PICTURE_MARKERS = 2  # <|vision_start|> and <|vision_end|> around each picture
TEMPLATE_TOKENS = 64  # roles, separators and picture placeholders of the chat template
MIN_FRAMES = 2  # a single picture cannot show what changed
MIN_PIXELS = 112 * 112  # 16 tokens: below this a picture shows next to nothing
REFERENCE_NOTE = (
    "The first image is a reference picture of this camera's scene when nothing is "
    "happening; the images after it are what the camera captured. Compare them with it."
)
CAPTION_COLOUR = (255, 255, 255)  # BGR, on a black band: readable over any scene


class FrameBudgetError(ProviderError):
    """The request cannot fit the provider's context: refused before it is sent. The
    provider is not at fault (the breaker does not count it) and asking again will not help."""


@dataclass(frozen=True)
class Plan:
    frames: int  # clip frames sent (the reference not counted)
    size: tuple[int, int]  # (width, height) of each frame sent
    picture_tokens: int  # what one picture is counted as
    reference: bool

    def to_json(self) -> dict[str, object]:
        return {
            "frames": self.frames,
            "width": self.size[0],
            "height": self.size[1],
            "picture_tokens": self.picture_tokens,
            "reference": self.reference,
        }


def text_tokens(text: str) -> int:
    return -(-len(text.encode()) // 3)


def pixel_tokens(size: tuple[int, int]) -> int:
    """Tokens a picture of ``size`` costs on Qwen-VL."""
    return math.ceil(size[0] / PATCH) * math.ceil(size[1] / PATCH) + PICTURE_MARKERS


def fit_within(size: tuple[int, int], max_pixels: int) -> tuple[int, int]:
    """``size`` scaled down (aspect kept) to at most ``max_pixels``: a hard cap, so rounded
    down, unlike the analysis budget's nearest even size."""
    w, h = size
    if w * h <= max_pixels:
        return size
    scale = math.sqrt(max_pixels / (w * h))
    return max(1, math.floor(w * scale)), max(1, math.floor(h * scale))


def _shrink_to_tokens(size: tuple[int, int], tokens: int) -> tuple[int, int]:
    """The largest ``size`` (aspect kept) whose pixel cost is at most ``tokens``."""
    scaled = fit_within(size, max(1, tokens - PICTURE_MARKERS) * PATCH * PATCH)
    while pixel_tokens(scaled) > tokens and scaled[0] * scaled[1] > MIN_PIXELS:
        scaled = fit_within(scaled, int(scaled[0] * scaled[1] * 0.95))
    return scaled


def plan(
    config: VlmProviderConfig, count: int, size: tuple[int, int], text: int, reference: bool
) -> Plan:
    """What to send of ``count`` frames of ``size`` beside ``text`` tokens of text."""
    if config.max_pixels is not None:
        size = fit_within(size, config.max_pixels)
    cost = config.image_tokens or pixel_tokens(size)
    if config.context_tokens is None or count == 0:
        return Plan(count, size, cost, reference)
    room = config.context_tokens - config.max_tokens - text - TEMPLATE_TOKENS
    extra = int(reference)
    places = room // cost - extra
    least = min(count, MIN_FRAMES)
    if places < least and config.image_tokens is None:
        smaller = _shrink_to_tokens(size, room // (least + extra))
        fits = pixel_tokens(smaller) * (least + extra) <= room
        if fits and smaller[0] * smaller[1] >= MIN_PIXELS:
            size, cost, places = smaller, pixel_tokens(smaller), least
    if places < 1:
        raise FrameBudgetError(
            f"{config.name}: context_tokens {config.context_tokens} leaves {max(room, 0)} "
            f"tokens for pictures after the answer (max_tokens {config.max_tokens}) and about "
            f"{text} of text; {1 + extra} picture(s) need {cost * (1 + extra)}: raise "
            "context_tokens, or lower max_tokens, image_tokens or max_pixels",
        )
    return Plan(min(count, places), size, cost, reference)


def spread(count: int, keep: int) -> list[int]:
    """``keep`` indices of ``count`` spaced evenly, first and last included (the newest
    alone when only one is kept)."""
    if keep >= count:
        return list(range(count))
    if keep == 1:
        return [count - 1]
    return [round(i * (count - 1) / (keep - 1)) for i in range(keep)]


def caption(pixels: np.ndarray, text: str) -> None:
    """``text`` on a black band across the top of ``pixels`` (writable), in place: like a
    camera's own time stamp, it covers a strip of the scene instead of enlarging the picture
    (which would change its cost)."""
    height, width = pixels.shape[:2]
    scale = max(0.3, min(height / 720, width / 1280))  # OpenCV's font is ~22 px tall at 1.0
    thickness = max(1, round(scale * 1.5))
    (_, text_h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    pad = max(2, text_h // 3)
    band = min(height, text_h + base + 2 * pad)
    pixels[:band] = 0
    cv2.putText(
        pixels,
        text,
        (pad, pad + text_h),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        CAPTION_COLOUR,
        thickness,
        cv2.LINE_AA,
    )


def _scaled(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (image.shape[1], image.shape[0]) == size:
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _annotated(request: VlmRequest, index: int, image: np.ndarray) -> np.ndarray:
    pixels = image.copy()  # the clip's frames are shared with the clip writer: draw on a copy
    boxes = request.boxes[index] if index < len(request.boxes) else []
    draw_boxes(pixels, {"boxes_norm": boxes})
    when = iso(request.timestamps[index]) if index < len(request.timestamps) else ""
    caption(pixels, f"{request.stream} {when}".strip())
    return pixels


def pictures(
    request: VlmRequest, config: VlmProviderConfig, text: int, grid: bool = False
) -> tuple[list[np.ndarray], Plan]:
    """The pictures to send, the reference first, and the plan they follow. ``grid``: the
    chosen frames tiled on one picture, which is then what the budget sizes."""
    frames = request.frames
    if not frames:
        return [], Plan(0, (0, 0), 0, False)
    first = (frames[0].shape[1], frames[0].shape[0])
    reference = request.reference is not None
    if grid:
        tiles = [_annotated(request, i, f) if request.annotate else f for i, f in enumerate(frames)]
        sheet = image_grid(tiles)
        layout = plan(config, 1, (sheet.shape[1], sheet.shape[0]), text, reference)
        out = [_scaled(sheet, layout.size)]
        layout = Plan(len(frames), layout.size, layout.picture_tokens, reference)
    else:
        layout = plan(config, len(frames), first, text, reference)
        out = []
        for i in spread(len(frames), layout.frames):
            image = _scaled(frames[i], layout.size)
            out.append(_annotated(request, i, image) if request.annotate else image)
    if request.reference is not None:
        ref = request.reference
        wanted = fit_within((ref.shape[1], ref.shape[0]), layout.size[0] * layout.size[1])
        out.insert(0, _scaled(ref, wanted))
    return out, layout
