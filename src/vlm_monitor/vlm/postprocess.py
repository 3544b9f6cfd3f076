"""Result post-processors: turn a model's text into structured fields."""

from __future__ import annotations

import json
import re
from typing import Any, Protocol

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}


class ResultPostProcessor(Protocol):
    """Raise ValueError for an answer that does not fit (the result carries the message);
    anything else raised is counted as a plug-in error, with its traceback logged."""

    def process_result(self, text: str) -> dict[str, Any]: ...


def extract_json(text: str) -> Any:
    """The JSON value in a model's answer, with or without a ```json fence around it."""
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    body = fenced.group(1) if fenced else text
    start = min((i for i in (body.find("{"), body.find("[")) if i >= 0), default=-1)
    if start < 0:
        raise ValueError("no JSON object in the answer")
    value, _ = json.JSONDecoder().raw_decode(body[start:])
    return value


def check_schema(value: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    """Problems of ``value`` against a JSON-schema subset: type, properties, required, items,
    enum. Enough for answers like ``{"alert": bool, "reason": str}``."""
    problems: list[str] = []
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        allowed = tuple(t for k in kinds for t in _TYPES.get(k, ()))
        is_bool = isinstance(value, bool)
        if not isinstance(value, allowed) or (is_bool and "boolean" not in kinds):
            return [f"{where}: expected {kind}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                problems.append(f"{where}: missing required key {key!r}")
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                problems += check_schema(value[key], sub, f"{where}.{key}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            problems += check_schema(item, schema["items"], f"{where}[{i}]")
    return problems


class JsonSchemaProcessor:
    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema

    def process_result(self, text: str) -> dict[str, Any]:
        """Structured fields; raises ValueError naming what does not match."""
        value = extract_json(text)
        problems = check_schema(value, self.schema)
        if problems:
            raise ValueError("answer does not match the schema: " + "; ".join(problems))
        if not isinstance(value, dict):
            return {"value": value}
        return value
