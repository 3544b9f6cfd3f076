"""JSON schemas for structured answers: built-in ones by name, checked when a configuration or
flow is loaded, answers validated against the full schema (Draft 2020-12)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

REVIEW_SCHEMA: dict[str, Any] = {
    "title": "review",
    "type": "object",
    "properties": {
        "title": {"type": "string", "description": "a few words naming what happens"},
        "scene": {"type": "string", "description": "the place and what is in it"},
        "summary": {"type": "string", "description": "what happened, in one or two sentences"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "threat_level": {
            "type": "integer",
            "minimum": 0,
            "maximum": 2,
            "description": "0 normal, 1 worth a look, 2 needs action now",
        },
        "objects": {"type": "array", "items": {"type": "string"}},
    },
    # Every key required and no others: what OpenAI's strict structured outputs accept.
    "required": ["title", "scene", "summary", "confidence", "threat_level", "objects"],
    "additionalProperties": False,
}
BUILTIN_SCHEMAS: dict[str, dict[str, Any]] = {"review": REVIEW_SCHEMA}
SchemaSetting = dict[str, Any] | str | None


def resolve_schema(value: SchemaSetting) -> dict[str, Any] | None:
    """The schema a setting names (a built-in by name, or given inline)."""
    if isinstance(value, str):
        try:
            return BUILTIN_SCHEMAS[value]
        except KeyError:
            raise ValueError(
                f"unknown schema name {value!r}; built-in: {', '.join(sorted(BUILTIN_SCHEMAS))}"
            ) from None
    return value


def schema_name(value: SchemaSetting) -> str:
    """A name for ``response_format.json_schema.name`` (letters, digits, _ and - only)."""
    if isinstance(value, str):
        return value
    title = str((value or {}).get("title") or "answer")
    return re.sub(r"[^A-Za-z0-9_-]", "_", title)[:64] or "answer"


def check_schema(value: SchemaSetting) -> SchemaSetting:
    """Raises ValueError naming what is wrong with a schema setting; returns it unchanged.

    Caught at load time rather than on the first clip, where every answer would fail."""
    schema = resolve_schema(value)
    if schema is None:
        return value
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top)"
        raise ValueError(f"not a valid JSON Schema at {where}: {exc.message}") from None
    for ref in _refs(schema):
        # Answers are validated offline: a remote $ref could never be fetched.
        if not ref.startswith("#"):
            raise ValueError(f"$ref {ref!r}: only refs inside the schema (#/...) are supported")
        if _pointer(schema, ref[1:]) is None:
            raise ValueError(f"$ref {ref!r} points at nothing in the schema")
    return value


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, sub in node.items():
            if key == "$ref" and isinstance(sub, str):
                yield sub
            else:
                yield from _refs(sub)
    elif isinstance(node, list):
        for sub in node:
            yield from _refs(sub)


def _pointer(doc: Any, pointer: str) -> Any:
    if pointer in ("", "/"):
        return doc
    node = doc
    for raw in pointer.lstrip("/").split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def schema_problems(value: Any, schema: dict[str, Any]) -> list[str]:
    """Where ``value`` breaks ``schema``: ``"$.threat_level: 3 is greater than the maximum of
    2"``, one line per error, in document order."""
    validator = Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.path)))
    return [f"{e.json_path}: {e.message}" for e in errors]


def extract_json(text: str) -> Any:
    """The JSON value in a model's answer, with or without a ```json fence around it."""
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    body = fenced.group(1) if fenced else text
    start = min((i for i in (body.find("{"), body.find("[")) if i >= 0), default=-1)
    if start < 0:
        raise ValueError("no JSON object in the answer")
    try:
        value, _ = json.JSONDecoder().raw_decode(body[start:])
    except json.JSONDecodeError as exc:
        raise ValueError(f"the answer is not valid JSON: {exc}") from None
    return value


def parse_answer(text: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The answer's structured fields; raises ValueError naming every mismatch."""
    value = extract_json(text)
    problems = schema_problems(value, schema)
    if problems:
        raise ValueError("answer does not match the schema: " + "; ".join(problems))
    return value if isinstance(value, dict) else {"value": value}


def schema_instruction(schema: dict[str, Any]) -> str:
    """Appended to the prompt when the server is not told the schema (or only JSON mode)."""
    return (
        "\n\nAnswer with one JSON object only, no other text, that follows this JSON Schema:\n"
        + json.dumps(schema, separators=(",", ":"))
    )
