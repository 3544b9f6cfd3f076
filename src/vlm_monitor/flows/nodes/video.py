"""Nodes that read video: ``frame``, ``clip``, and the analyzers ``motion``, ``ocr``,
``emotion``, ``heart_rate``."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from vlm_monitor.analyzers.builtin import emotion_fields
from vlm_monitor.analyzers.faces import FaceTracking
from vlm_monitor.analyzers.motion import MotionDetector, motion_fields
from vlm_monitor.analyzers.ocr import read_text, tesseract_path
from vlm_monitor.analyzers.params import OcrParams
from vlm_monitor.config import SizeText, parse_size
from vlm_monitor.flows.nodes.base import (
    CLIP,
    FRAME,
    NODE_TYPES,
    ClipValue,
    FrameValue,
    NodeError,
    NodeType,
    Params,
    RunContext,
)
from vlm_monitor.flows.ports import FlowPorts
from vlm_monitor.geometry import Placement

if TYPE_CHECKING:
    from vlm_monitor.hub import Subscription


class StreamParams(Params):
    stream: str | None = Field(None, description="default: the flow's stream")


class FrameParams(StreamParams):
    size: SizeText | None = Field(
        "640x360",
        description="pixel budget WxH: scaled to about W*H pixels, aspect ratio kept, never "
        "upscaled; null = native",
    )
    crop: tuple[int, int, int, int] | None = Field(
        None, description="x, y, w, h in displayed source pixels"
    )
    max_age_s: float = Field(5.0, gt=0, description="older latest frame: the stream is stale")


def _single(inputs: dict[str, Any], kind: type) -> Any:
    values = [v for v in inputs.values() if isinstance(v, kind)]
    if not values:
        raise NodeError(f"no {kind.__name__} among the inputs")
    return values[0]


@NODE_TYPES.register("frame")
class FrameNode(NodeType):
    type_name = "frame"
    description = "the stream's latest frame, optionally scaled and cropped"
    ParamsModel = FrameParams
    output = FRAME
    needs_stream = True
    default_timeout_s = 10.0

    async def run(self, ctx: RunContext, inputs: dict[str, Any]) -> FrameValue:
        p: FrameParams = self.params  # type: ignore[assignment]
        stream = self.stream or ""
        frame = ctx.ports.hub.latest(stream)
        if frame is None:
            raise NodeError(f"no frame from stream {stream!r} (unknown or not live)")
        if frame.age() > p.max_age_s:
            raise NodeError(f"stream {stream!r} is stale: last frame {frame.age():.1f} s ago")
        budget = parse_size(p.size) if p.size else None

        def convert() -> FrameValue:
            scaled = frame.fit(budget)
            image, placement = frame.bgr(scaled), Placement.whole(frame.size, scaled)
            if p.crop is not None:
                x, y, w, h = placement.to_image(p.crop)
                if w == 0 or h == 0:
                    raise NodeError(
                        f"crop {list(p.crop)} is outside the {frame.width}x{frame.height} frame"
                    )
                image, placement = image[y : y + h, x : x + w], placement.cropped(x, y)
            return FrameValue(stream, frame.seq, frame.ts, image, placement)

        return await ctx.blocking(convert)


class ClipParams(StreamParams):
    seconds: float = Field(10.0, gt=0, le=600)
    frames: int = Field(8, ge=2, le=64)
    size: SizeText = Field("640x360", description="pixel budget WxH, aspect ratio kept")


@NODE_TYPES.register("clip")
class ClipNode(NodeType):
    """Buffers the stream while the flow runs (a hub subscription at frames/seconds fps), so
    a run gets the last ``seconds`` at once instead of waiting for them."""

    type_name = "clip"
    description = "the last N seconds of the stream, sampled to a few frames"
    ParamsModel = ClipParams
    output = CLIP
    needs_stream = True

    async def start(self, ports: FlowPorts) -> None:
        p: ClipParams = self.params  # type: ignore[assignment]
        self._size = parse_size(p.size)
        self._buffer: collections.deque[Any] = collections.deque(maxlen=p.frames)
        self._hub = ports.hub
        self._sub: Subscription = ports.hub.subscribe(
            self.stream or "", f"flow:{self.flow.id}:{self.spec.id}", "latest",
            frame_rate=p.frames / p.seconds, size=self._size,
        )  # fmt: skip
        self._task = asyncio.create_task(self._fill())

    async def _fill(self) -> None:
        async for frame in self._sub:
            self._buffer.append(frame)

    async def stop(self) -> None:
        self._hub.unsubscribe(self._sub)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def run(self, ctx: RunContext, inputs: dict[str, Any]) -> ClipValue:
        frames = list(self._buffer)
        if len(frames) < 2:
            raise NodeError(f"clip of {self.stream!r} not ready: {len(frames)} frame(s) buffered")
        images = await ctx.blocking(lambda: [f.bgr_fit(self._size) for f in frames])
        return ClipValue(self.stream or "", images, [f.ts for f in frames])


class MotionNodeParams(Params):
    threshold: int = Field(25, ge=1, le=255)
    min_level: float = Field(0.01, ge=0, le=1)


@NODE_TYPES.register("motion")
class MotionNode(NodeType):
    """Compares each run's frame with a running background kept between runs."""

    type_name = "motion"
    description = "motion level and boxes of the input frame vs the previous runs"
    ParamsModel = MotionNodeParams
    min_inputs = max_inputs = 1
    accepts = frozenset({FRAME})

    async def start(self, ports: FlowPorts) -> None:
        self._detector = MotionDetector(threshold=self.params.threshold)  # type: ignore[attr-defined]

    async def run(self, ctx: RunContext, inputs: dict[str, Any]) -> dict[str, Any]:
        frame: FrameValue = _single(inputs, FrameValue)
        reading = await ctx.blocking(self._detector.update, frame.image, frame.ts)
        # No hold time, unlike the analyzer: each run is judged on its own frame.
        moving = reading.level >= self.params.min_level  # type: ignore[attr-defined]
        return motion_fields(reading, moving, frame.place)


@NODE_TYPES.register("ocr")
class OcrNode(NodeType):
    type_name = "ocr"
    description = "text in the input frame (Tesseract)"
    ParamsModel = OcrParams
    min_inputs = max_inputs = 1
    accepts = frozenset({FRAME})

    def check(self, inputs: list[str]) -> list[str]:
        try:
            tesseract_path()
        except RuntimeError as exc:
            return [str(exc)]
        return []

    async def run(self, ctx: RunContext, inputs: dict[str, Any]) -> dict[str, Any]:
        p: OcrParams = self.params  # type: ignore[assignment]
        frame: FrameValue = _single(inputs, FrameValue)

        def read() -> dict[str, Any]:
            try:
                return read_text(
                    frame.image,
                    frame.place,
                    p.roi,
                    lang=p.lang,
                    psm=p.psm,
                    timeout_s=p.timeout_s,
                    min_confidence=p.min_confidence,
                )
            except ValueError as exc:
                raise NodeError(str(exc)) from None

        return await ctx.blocking(read)


@NODE_TYPES.register("emotion")
class EmotionNode(NodeType):
    type_name = "emotion"
    description = "face emotion on the input frame (largest face)"
    min_inputs = max_inputs = 1
    accepts = frozenset({FRAME})

    async def run(self, ctx: RunContext, inputs: dict[str, Any]) -> dict[str, Any]:
        frame: FrameValue = _single(inputs, FrameValue)
        models = ctx.ports.face_models

        def analyse() -> dict[str, Any]:
            image = np.ascontiguousarray(frame.image)
            # The analyzers' face pipeline (detection, landmarks, upright crop), afresh for
            # each run: runs may be far apart or cropped differently, so nothing is tracked.
            face = FaceTracking(models.faces).update(image, frame.ts).main
            return emotion_fields(models, image, face, frame.place)

        return await ctx.blocking(analyse)


@NODE_TYPES.register("heart_rate")
class HeartRateNode(NodeType):
    """Heart rate needs seconds of video: this node reads the stream's ``heart_rate``
    analyzer (enable it on the stream)."""

    type_name = "heart_rate"
    description = "the stream's latest heart-rate reading"
    ParamsModel = StreamParams
    needs_stream = True

    async def run(self, ctx: RunContext, inputs: dict[str, Any]) -> dict[str, Any]:
        latest = ctx.ports.latest_analysis(self.stream or "", "heart_rate")
        if latest is None:
            raise NodeError(
                f"stream {self.stream!r} has no heart-rate reading: enable its heart_rate analyzer"
            )
        return dict(latest)
