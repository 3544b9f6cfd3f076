"""The provider interface: a clip in, an answer out. Providers are called from the clip
processor's inference threads, so ``analyze`` is synchronous and may block."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np

from vlm_monitor.config import BudgetConfig, VlmProviderConfig
from vlm_monitor.registry import Registry


@dataclass
class VlmRequest:
    stream: str
    prompt: str
    frames: list[np.ndarray]  # BGR, sampled, in time order
    timestamps: list[float]  # unix seconds of each frame
    video_path: str | None = None
    motion: float = 0.0  # 0..255, mean change between sampled frames
    schema: dict[str, Any] | None = None  # JSON schema the answer should follow, if any
    # (previous answer, what was wrong with it): the one repair retry of a structured answer.
    repair: tuple[str, str] | None = None
    # annotate: each frame sent gets its boxes (``boxes[i]``, [x, y, w, h] in 0..1, may be
    # shorter than ``frames``) and a caption with the stream and its capture time.
    annotate: bool = False
    boxes: list[list[list[float]]] = field(default_factory=list)
    reference: np.ndarray | None = None  # BGR picture of the empty scene, sent first
    # The limits of the stream asking (its clips.budget), besides the provider's and vlm.budget.
    budget: BudgetConfig = field(default_factory=BudgetConfig)


@dataclass
class VlmAnswer:
    text: str
    model: str | None = None
    tokens: int = 0  # prompt + completion
    structured: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    prompt_tokens: int = 0  # of ``tokens``, when the provider tells them apart
    completion_tokens: int = 0
    cost: float = 0.0  # at the provider's configured prices


class ProviderError(RuntimeError):
    """A failed call. ``retryable`` for 408/429/5xx/timeouts; ``retry_after`` in seconds if
    told. ``provider_fault`` (default: ``retryable``) counts it against the provider's circuit
    breaker: a request one stream got wrong (a 400) must not cut the provider off for all."""

    def __init__(
        self,
        message: str,
        retryable: bool = False,
        retry_after: float | None = None,
        provider_fault: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable, self.retry_after = retryable, retry_after
        self.provider_fault = retryable if provider_fault is None else provider_fault


class BudgetSpent(ProviderError):
    """The call was not made: a budget (calls, tokens or cost) is used up. Not the provider's
    fault, and asking again at once would be refused again."""


class StructuredAnswerError(ProviderError):
    """An answer that is not valid JSON for the schema, even after the repair retry. Carries
    the last answer, so the result can show what the model said."""

    def __init__(self, message: str, answer: VlmAnswer) -> None:
        super().__init__(message)
        self.answer = answer


class Provider(Protocol):
    name: str

    def analyze(self, request: VlmRequest) -> VlmAnswer: ...

    def close(self) -> None: ...


# Provider kinds by ``kind``: a new one is a class decorated with
# ``@PROVIDER_KINDS.register("kind")``, imported by ``vlm/registry.py``.
PROVIDER_KINDS: Registry[Callable[[VlmProviderConfig], Provider]] = Registry("VLM provider kind")


def jpeg_data_url(image: np.ndarray, quality: int = 80) -> str:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ProviderError("JPEG encoding failed")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode()


def grid_layout(
    count: int, size: tuple[int, int], cell_width: int = 480
) -> tuple[int, int, tuple[int, int]]:
    """(columns, rows, cell size) of ``image_grid`` for ``count`` frames of ``size``."""
    cols = int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / cols))
    return cols, rows, (cell_width, max(2, round(cell_width * size[1] / size[0])))


def image_grid(frames: list[np.ndarray], cell_width: int = 480) -> np.ndarray:
    """All frames tiled on one image, for models that accept a single image."""
    h, w = frames[0].shape[:2]
    cols, rows, cell = grid_layout(len(frames), (w, h), cell_width)
    grid = np.zeros((rows * cell[1], cols * cell[0], 3), np.uint8)
    for i, f in enumerate(frames):
        r, c = divmod(i, cols)
        grid[r * cell[1] : (r + 1) * cell[1], c * cell[0] : (c + 1) * cell[0]] = cv2.resize(f, cell)
    return grid
