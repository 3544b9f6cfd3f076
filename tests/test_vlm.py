"""Providers against a local server speaking the real wire formats; guards; post-processing."""

from __future__ import annotations

import base64
import time

import cv2
import numpy as np
import pytest

from fake_vlm import DASHSCOPE_PATH, OPENAI_PATH, FakeVlm
from vlm_monitor.config import VlmProviderConfig
from vlm_monitor.vlm.base import ProviderError, VlmRequest
from vlm_monitor.vlm.local import LocalProvider
from vlm_monitor.vlm.postprocess import JsonSchemaProcessor, extract_json
from vlm_monitor.vlm.registry import build_provider
from vlm_monitor.vlm.resilience import ProviderGroup


@pytest.fixture
def fake():
    server = FakeVlm()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def api_key(monkeypatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "sk-test-123")


def request(n: int = 3) -> VlmRequest:
    frames = [np.full((360, 640, 3), 40 * i, np.uint8) for i in range(n)]
    return VlmRequest("cam", "What happens?", frames, [1000.0 + i for i in range(n)])


def provider(fake: FakeVlm, kind: str = "openai", **kw):
    base = fake.url + ("/v1" if kind == "openai" else "")
    cfg = VlmProviderConfig(
        name=kind, kind=kind, base_url=base, model="qwen-vl-max", api_key_env="FAKE_KEY", **kw
    )
    return build_provider(cfg)


def decode_data_url(url: str) -> np.ndarray:
    assert url.startswith("data:image/jpeg;base64,")
    raw = base64.b64decode(url.split(",", 1)[1])
    return cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)


def test_openai_request_and_answer(fake: FakeVlm) -> None:
    answer = provider(fake).analyze(request(3))
    assert answer.text == fake.answer and answer.tokens == 120 and answer.model == "fake-vl"
    (req,) = fake.requests
    assert req["path"] == OPENAI_PATH
    assert req["headers"]["Authorization"] == "Bearer sk-test-123"
    body = req["json"]
    assert body["model"] == "qwen-vl-max"
    (msg,) = body["messages"]
    assert msg["role"] == "user"
    assert msg["content"][0] == {"type": "text", "text": "What happens?"}
    images = msg["content"][1:]
    assert [p["type"] for p in images] == ["image_url"] * 3
    assert decode_data_url(images[2]["image_url"]["url"]).shape == (360, 640, 3)


def test_openai_video_and_grid_modes(fake: FakeVlm) -> None:
    provider(fake, mode="video").analyze(request(4))
    content = fake.requests[-1]["json"]["messages"][0]["content"]
    assert content[1]["type"] == "video" and len(content[1]["video"]) == 4
    provider(fake, mode="grid").analyze(request(4))
    content = fake.requests[-1]["json"]["messages"][0]["content"]
    (grid,) = content[1:]
    assert decode_data_url(grid["image_url"]["url"]).shape[1] == 960  # 2x2 cells of 480 px


def test_dashscope_native_request_and_answer(fake: FakeVlm) -> None:
    answer = provider(fake, "dashscope").analyze(request(3))
    assert answer.text == fake.answer and answer.tokens == 100
    (req,) = fake.requests
    assert req["path"] == DASHSCOPE_PATH
    assert req["headers"]["Authorization"] == "Bearer sk-test-123"
    body = req["json"]
    assert body["model"] == "qwen-vl-max"
    content = body["input"]["messages"][0]["content"]
    assert len(content[0]["video"]) == 3 and content[1] == {"text": "What happens?"}
    decode_data_url(content[0]["video"][0])


def test_429_retry_after_is_honoured(fake: FakeVlm) -> None:
    fake.behaviours.extend(["429"])
    p = provider(fake)
    assert p.analyze(request()).text == fake.answer
    assert len(fake.requests) == 2 and p.stats.retries == 1
    assert fake.requests[1]["at"] - fake.requests[0]["at"] >= 0.3


def test_500_gives_up_after_retries(fake: FakeVlm) -> None:
    fake.behaviours.extend(["500"] * 5)
    p = provider(fake, retries=2)
    with pytest.raises(ProviderError, match="HTTP 500"):
        p.analyze(request())
    assert len(fake.requests) == 3


def test_malformed_json_and_timeout(fake: FakeVlm) -> None:
    fake.behaviours.extend(["badjson"])
    with pytest.raises(ProviderError, match="not JSON"):
        provider(fake, retries=0).analyze(request())
    fake.behaviours.extend([("slow", 1.5)])
    t0 = time.monotonic()
    with pytest.raises(ProviderError, match="timed out"):
        provider(fake, retries=0, timeout_s=0.3).analyze(request())
    assert time.monotonic() - t0 < 1.2


def test_circuit_breaker_and_budget(fake: FakeVlm) -> None:
    fake.behaviours.extend(["500"] * 3)
    p = provider(fake, retries=0, breaker_failures=3, breaker_reset_s=60)
    for _ in range(3):
        with pytest.raises(ProviderError):
            p.analyze(request())
    with pytest.raises(ProviderError, match="circuit open"):
        p.analyze(request())
    assert len(fake.requests) == 3 and p.breaker_open
    budget = provider(fake, calls_per_minute=2)
    budget.analyze(request())
    budget.analyze(request())
    with pytest.raises(ProviderError, match="budget"):
        budget.analyze(request())
    assert budget.per_minute() == (2, 240)


def test_fallback_and_round_robin(fake: FakeVlm) -> None:
    broken = build_provider(
        VlmProviderConfig(
            name="down",
            kind="openai",
            base_url="http://127.0.0.1:9/v1",
            model="m",
            retries=0,
            timeout_s=1,
        )
    )
    good = provider(fake)
    name, answer = ProviderGroup([broken, good], "fallback").analyze(request())
    assert name == "openai" and answer.text == fake.answer
    rr = ProviderGroup([provider(fake), provider(fake, "dashscope")], "round_robin")
    names = [rr.analyze(request())[0] for _ in range(4)]
    assert sorted(names) == ["dashscope", "dashscope", "openai", "openai"]


def test_missing_key_is_a_clear_error(monkeypatch, fake: FakeVlm) -> None:
    monkeypatch.delenv("FAKE_KEY")
    with pytest.raises(ProviderError, match=r"\$FAKE_KEY is not set"):
        provider(fake)


def test_local_provider_describes_signals() -> None:
    local = LocalProvider(VlmProviderConfig(name="offline", kind="local"))
    grey = np.full((360, 640, 3), 128, np.uint8)
    still = local.analyze(VlmRequest("cam", "?", [grey] * 4, [0, 1, 2, 3]))
    assert still.structured is not None and still.structured["motion_level"] == 0
    assert still.text.startswith("No motion")
    frames = []
    for i in range(4):
        img = np.full((360, 640, 3), (200, 90, 20), np.uint8)  # blue background
        cv2.rectangle(img, (20 + 40 * i, 20), (80 + 40 * i, 100), (255, 255, 255), -1)
        frames.append(img)
    moving = local.analyze(VlmRequest("cam", "?", frames, [0, 1, 2, 3]))
    assert moving.structured is not None and still.structured is not None
    assert moving.structured["motion_level"] > still.structured["motion_level"]
    assert "top-left" in moving.structured["changed_regions"]
    assert moving.structured["dominant_colours"][0] == "blue"
    assert "motion" in moving.text and moving.model == "local-signals"


def test_schema_post_processor() -> None:
    schema = {
        "type": "object",
        "required": ["alert", "reason"],
        "properties": {"alert": {"type": "boolean"}, "reason": {"type": "string"}},
    }
    proc = JsonSchemaProcessor(schema)
    assert proc.process_result('Sure:\n```json\n{"alert": true, "reason": "smoke"}\n```') == {
        "alert": True,
        "reason": "smoke",
    }
    with pytest.raises(ValueError, match=r"\$.alert: 'yes' is not of type 'boolean'"):
        proc.process_result('{"alert": "yes", "reason": "x"}')
    with pytest.raises(ValueError, match="'reason' is a required property"):
        proc.process_result('{"alert": false}')
    with pytest.raises(ValueError, match="no JSON"):
        extract_json("nothing here")
