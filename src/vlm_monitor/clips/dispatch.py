"""``clips.dispatch: redis``: the processor's VLM call becomes a clip job for the workers
(see ``vlm_monitor.jobs.clips`` for the queue's guarantees)."""

from __future__ import annotations

from vlm_monitor.config import ClipsConfig
from vlm_monitor.jobs.clips import ClipJobQueue, JobError, encode_frames
from vlm_monitor.vlm.base import ProviderError, VlmAnswer, VlmRequest


class RedisClipDispatcher:
    """The processor's analyze call when ``clips.dispatch`` is ``redis``. Blocking: runs in
    the processor's inference threads."""

    def __init__(self, url: str, channel: str, clips: ClipsConfig, max_backlog: int) -> None:
        self.clips = clips
        self.queue = ClipJobQueue(url, channel, max_backlog, clips.deadline_s)

    def __call__(self, request: VlmRequest) -> tuple[str, VlmAnswer]:
        reference = request.reference
        job = {
            "stream": request.stream,
            "prompt": request.prompt,
            "frames": encode_frames(request.frames),
            "timestamps": request.timestamps,
            "motion": request.motion,
            "schema": request.schema,
            "annotate": request.annotate,
            "boxes": request.boxes,
            "reference": None if reference is None else encode_frames([reference])[0],
            "provider": self.clips.provider,
            "strategy": self.clips.strategy,
            "budget": self.clips.budget.model_dump(),
        }
        try:
            answer = self.queue.run(job)
        except JobError as exc:
            raise ProviderError(str(exc), retryable=exc.retryable) from None
        return answer["provider"], VlmAnswer(
            text=answer["text"],
            model=answer.get("model"),
            tokens=answer.get("tokens", 0),
            structured=answer.get("structured"),
        )
