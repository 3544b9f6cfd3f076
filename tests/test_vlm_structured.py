"""Structured answers: what we ask each kind of server for, the repair retry, the schema
checked at load time and enforced in full (Draft 2020-12)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fake_vlm import FakeVlm
from vlm_monitor.config import ConfigError, VlmProviderConfig, load_config
from vlm_monitor.flows.graph import FlowValidationError
from vlm_monitor.flows.manager import parse_flow
from vlm_monitor.vlm.base import StructuredAnswerError, VlmRequest
from vlm_monitor.vlm.local import LocalProvider
from vlm_monitor.vlm.registry import build_provider
from vlm_monitor.vlm.resilience import ProviderGroup
from vlm_monitor.vlm.schemas import REVIEW_SCHEMA, parse_answer, resolve_schema

ALERT = {
    "type": "object",
    "properties": {"alert": {"type": "boolean"}, "reason": {"type": "string"}},
    "required": ["alert", "reason"],
    "additionalProperties": False,
}
GOOD = '{"alert": true, "reason": "smoke"}'


@pytest.fixture
def fake():
    server = FakeVlm(answer=GOOD)
    yield server
    server.close()


@pytest.fixture(autouse=True)
def api_key(monkeypatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "sk-test-123")


def request(schema=ALERT) -> VlmRequest:
    frames = [np.full((90, 160, 3), 60 * i, np.uint8) for i in range(2)]
    return VlmRequest("cam", "Anything wrong?", frames, [1.0, 2.0], schema=schema)


def provider(fake: FakeVlm, kind: str = "openai", **kw):
    base = fake.url + ("/v1" if kind == "openai" else "")
    return build_provider(
        VlmProviderConfig(
            name=kind, kind=kind, base_url=base, model="m", api_key_env="FAKE_KEY", **kw
        )
    )


def prompt_of(body: dict) -> str:
    return body["messages"][0]["content"][0]["text"]


def test_response_format_per_structured_mode(fake: FakeVlm) -> None:
    answer = provider(fake).analyze(request())  # json_schema is the default
    assert answer.structured == {"alert": True, "reason": "smoke"}
    body = fake.requests[-1]["json"]
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": ALERT, "strict": True},
    }
    assert prompt_of(body) == "Anything wrong?"  # the server is told the schema itself

    provider(fake, structured="json_object").analyze(request())
    body = fake.requests[-1]["json"]
    assert body["response_format"] == {"type": "json_object"}
    assert json.dumps(ALERT, separators=(",", ":")) in prompt_of(body)

    provider(fake, structured="prompt").analyze(request())
    body = fake.requests[-1]["json"]
    assert "response_format" not in body
    assert prompt_of(body).startswith("Anything wrong?") and '"required"' in prompt_of(body)

    provider(fake).analyze(request(schema=None))  # no schema: nothing asked for
    assert "response_format" not in fake.requests[-1]["json"]

    review = {
        "title": "Quiet yard",
        "scene": "a yard",
        "summary": "Nothing happens.",
        "confidence": 0.9,
        "threat_level": 0,
        "objects": ["fence"],
    }
    fake.behaviours.append(("text", json.dumps(review)))
    assert provider(fake).analyze(request(schema=REVIEW_SCHEMA)).structured == review
    sent = fake.requests[-1]["json"]["response_format"]["json_schema"]
    assert sent["name"] == "review" and sent["schema"] == REVIEW_SCHEMA


def test_dashscope_is_prompted_with_the_schema(fake: FakeVlm) -> None:
    assert provider(fake, "dashscope").analyze(request()).structured == {
        "alert": True,
        "reason": "smoke",
    }
    content = fake.requests[-1]["json"]["input"]["messages"][0]["content"]
    assert '"additionalProperties":false' in content[1]["text"]


def test_repair_retry_sends_the_error_back(fake: FakeVlm) -> None:
    fake.behaviours.extend([("text", "I think there is smoke."), ("text", GOOD)])
    answer = provider(fake).analyze(request())
    assert answer.structured == {"alert": True, "reason": "smoke"}
    assert answer.extra["repairs"] == 1 and answer.tokens == 240  # both calls counted
    first, second = (r["json"]["messages"] for r in fake.requests)
    assert len(first) == 1
    assert second[1] == {"role": "assistant", "content": "I think there is smoke."}
    assert second[2]["role"] == "user" and "no JSON object" in second[2]["content"]

    # a schema mismatch is repaired the same way, with the mismatch named
    fake.behaviours.extend([("text", '{"alert": "yes", "reason": "x"}'), ("text", GOOD)])
    assert provider(fake).analyze(request()).structured is not None
    assert "'yes' is not of type 'boolean'" in fake.requests[-1]["json"]["messages"][2]["content"]


def test_no_valid_answer_after_the_repair_is_a_clear_error(fake: FakeVlm) -> None:
    fake.behaviours.extend([("text", "nope"), ("text", '{"alert": 1}')])
    p = provider(fake)
    with pytest.raises(StructuredAnswerError) as err:
        ProviderGroup([p]).analyze(request())  # a group hands the answer on
    assert "answer does not match the schema" in str(err.value)
    assert "'reason' is a required property" in str(err.value)
    assert "after 1 repair retry" in str(err.value)
    assert err.value.answer.text == '{"alert": 1}'
    assert len(fake.requests) == 2 and not p.breaker_open  # the model erred, not the service


def write(tmp_path: Path, schema) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(
        json.dumps({"streams": [{"id": "a", "url": "synthetic://", "clips": {"schema": schema}}]})
    )
    return path


def test_a_bad_schema_fails_at_config_load_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"streams\.0\.clips\.schema: not a valid JSON Schema"):
        load_config(write(tmp_path, {"type": "object", "properties": {"n": {"minimum": "0"}}}))
    with pytest.raises(ConfigError, match=r"streams\.0\.clips\.schema: unknown schema name"):
        load_config(write(tmp_path, "revue"))
    with pytest.raises(ConfigError, match=r"streams\.0\.clips\.schema: \$ref '#/\$defs/x'"):
        load_config(write(tmp_path, {"$ref": "#/$defs/x"}))
    with pytest.raises(ConfigError, match="only refs inside the schema"):
        load_config(write(tmp_path, {"$ref": "https://example.com/s.json"}))
    clips = load_config(write(tmp_path, "review")).streams[0].clips
    assert clips is not None and resolve_schema(clips.schema_) == REVIEW_SCHEMA


def test_a_bad_schema_fails_when_a_flow_is_loaded() -> None:
    node = {"id": "v", "type": "vlm", "params": {"prompt": "?", "schema": {"type": "objekt"}}}
    with pytest.raises(FlowValidationError) as err:
        parse_flow({"id": "f", "trigger": {"kind": "manual"}, "nodes": [node]})
    assert "node 'v'" in str(err.value) and "params.schema" in str(err.value)
    node["params"]["schema"] = "review"
    parse_flow({"id": "f", "trigger": {"kind": "manual"}, "nodes": [node]})


def test_answers_are_checked_against_the_full_schema() -> None:
    assert parse_answer('{"n": 1.0}', {"properties": {"n": {"type": "integer"}}}) == {"n": 1.0}
    cases = [
        ({"properties": {"n": {"minimum": 0}}}, '{"n": -1}', "less than the minimum of 0"),
        ({"properties": {"id": {"pattern": "^[a-z]+$"}}}, '{"id": "A1"}', "does not match"),
        ({"additionalProperties": False}, '{"x": 1}', "Additional properties are not allowed"),
        (
            {"properties": {"v": {"anyOf": [{"type": "string"}, {"type": "null"}]}}},
            '{"v": 3}',
            "is not valid under any of the given schemas",
        ),
        (
            {
                "$defs": {"level": {"enum": [0, 1, 2]}},
                "properties": {"l": {"$ref": "#/$defs/level"}},
            },
            '{"l": 5}',
            "5 is not one of [0, 1, 2]",
        ),
        (REVIEW_SCHEMA, '{"threat_level": 3}', "3 is greater than the maximum of 2"),
    ]
    for schema, text, expected in cases:
        with pytest.raises(ValueError, match="answer does not match the schema") as err:
            parse_answer(text, schema)
        assert expected in str(err.value), (schema, str(err.value))


def test_local_provider_fills_the_review_schema() -> None:
    local = LocalProvider(VlmProviderConfig(name="offline", kind="local"))
    frames = [np.full((360, 640, 3), 30 * i, np.uint8) for i in range(3)]
    req = VlmRequest("cam", "?", frames, [0.0, 1.0, 2.0], schema=REVIEW_SCHEMA)
    doc = parse_answer(local.analyze(req).text, REVIEW_SCHEMA)
    assert doc["threat_level"] in (0, 1) and doc["summary"]
