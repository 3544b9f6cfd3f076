"""A structured answer: the model's JSON validated against the schema, with one repair retry
that shows the model its mistake before the clip is given up as failed."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from vlm_monitor.vlm.base import StructuredAnswerError, VlmAnswer, VlmRequest
from vlm_monitor.vlm.schemas import parse_answer

REPAIR_RETRIES = 1  # a second repair rarely fixes what the first did not, and costs a call


def answer_structured(call: Callable[[VlmRequest], VlmAnswer], request: VlmRequest) -> VlmAnswer:
    """``call(request)``, its answer parsed into ``structured``; a request without a schema is
    passed through. Raises StructuredAnswerError when no answer fits."""
    answer = call(request)
    if request.schema is None:
        return answer
    problem = ""
    for attempt in range(REPAIR_RETRIES + 1):
        try:
            answer.structured = parse_answer(answer.text, request.schema)
        except ValueError as exc:
            problem = str(exc)
        else:
            answer.extra["repairs"] = attempt
            return answer
        if attempt < REPAIR_RETRIES:
            first = answer
            answer = call(dataclasses.replace(request, repair=(answer.text, problem)))
            answer.tokens += first.tokens
            answer.prompt_tokens += first.prompt_tokens
            answer.completion_tokens += first.completion_tokens
            answer.cost += first.cost
    answer.structured = None
    raise StructuredAnswerError(f"{problem} (after {REPAIR_RETRIES} repair retry)", answer)
