"""Result post-processors: turn a model's text into structured fields."""

from __future__ import annotations

from typing import Any, Protocol

from vlm_monitor.vlm.schemas import extract_json, parse_answer, resolve_schema

__all__ = ["JsonSchemaProcessor", "ResultPostProcessor", "extract_json"]


class ResultPostProcessor(Protocol):
    """Raise ValueError for an answer that does not fit (the result carries the message);
    anything else raised is counted as a plug-in error, with its traceback logged."""

    def process_result(self, text: str) -> dict[str, Any]: ...


class JsonSchemaProcessor:
    """The answer's JSON checked against the full schema (Draft 2020-12)."""

    def __init__(self, schema: dict[str, Any] | str) -> None:
        resolved = resolve_schema(schema)
        assert resolved is not None
        self.schema = resolved

    def process_result(self, text: str) -> dict[str, Any]:
        """Structured fields; raises ValueError naming what does not match."""
        return parse_answer(text, self.schema)
