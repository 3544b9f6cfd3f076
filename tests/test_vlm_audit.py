"""The VLM audit log and `vlm-monitor replay`, against the fake OpenAI-protocol server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fake_vlm import ALERT_SCHEMA, SMOKE_ALERT, FakeVlm
from vlm_monitor.config import VlmProviderConfig, build_config
from vlm_monitor.vlm.audit import AuditLog, load_request
from vlm_monitor.vlm.base import ProviderError, VlmRequest
from vlm_monitor.vlm.registry import ProviderSet


@pytest.fixture
def fake():
    server = FakeVlm(answer="A ball moves.")
    yield server
    server.close()


def request(schema=None) -> VlmRequest:
    frames = [np.full((720, 1280, 3), 50 * i, np.uint8) for i in range(3)]
    return VlmRequest("cam", "What happens?", frames, [1.0, 2.0, 3.0], schema=schema)


def providers(fake: FakeVlm) -> ProviderSet:
    cfg = VlmProviderConfig(
        name="qwen", kind="openai", base_url=fake.url + "/v1", model="m", retries=0
    )
    return ProviderSet([cfg])


def test_every_call_is_recorded_with_its_frames(fake: FakeVlm, tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit", max_mb=50)
    ps = providers(fake)
    ps.audit(audit.record)
    p = ps.providers["qwen"]
    fake.behaviours.append(("text", SMOKE_ALERT))
    p.analyze(request(ALERT_SCHEMA))
    p.analyze(request())
    fake.behaviours.append(("status", 400))
    with pytest.raises(ProviderError):
        p.analyze(request())
    (log,) = (tmp_path / "audit").glob("audit-*.jsonl")
    first, second, third = (json.loads(line) for line in log.read_text().splitlines())
    assert first["structured"] == {"alert": True, "reason": "smoke"} and first["repairs"] == 0
    assert first["schema"] == ALERT_SCHEMA and first["prompt"] == "What happens?"
    assert second["answer"] == "A ball moves." and second["tokens"] == 120
    assert third["answer"] is None and "HTTP 400" in third["error"]
    assert len(first["frames"]) == 3 and first["timestamps"] == [1.0, 2.0, 3.0]
    assert (tmp_path / "audit" / first["frames"][0]).stat().st_size > 0
    ps.close()


def test_a_recorded_question_reads_back_whole(tmp_path: Path) -> None:
    """What a replay re-sends: frames, the reference picture, annotation and boxes."""
    audit = AuditLog(tmp_path / "audit", max_mb=50, keep_days=30, params={"qwen": {"model": "m"}})
    asked = request(ALERT_SCHEMA)
    asked.reference = np.full((360, 640, 3), 200, np.uint8)
    asked.annotate, asked.boxes = True, [[[0.1, 0.1, 0.2, 0.2]]]
    audit.record("qwen", asked, None, "HTTP 500", 0.5)
    (log,) = (tmp_path / "audit").glob("audit-*.jsonl")
    doc = json.loads(log.read_text())
    assert doc["request"] == {"model": "m", "frames": 3, "frame_size": [1280, 720]}
    again = load_request(tmp_path / "audit", doc)
    assert len(again.frames) == 3 and again.frames[0].shape == (360, 640, 3)
    assert again.reference is not None and abs(int(again.reference.mean()) - 200) <= 2
    assert again.annotate and again.boxes == asked.boxes and again.schema == ALERT_SCHEMA


def test_the_audit_directory_stays_within_max_mb(fake: FakeVlm, tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit", max_mb=0.05)
    noisy = np.random.default_rng(0).integers(0, 255, (360, 640, 3), dtype=np.uint8)
    for _ in range(20):
        audit.record("qwen", VlmRequest("cam", "?", [noisy], [1.0]), None, "x", 0.1)
    used = sum(p.stat().st_size for p in (tmp_path / "audit").rglob("*") if p.is_file())
    assert used < 0.05 * 1024 * 1024 * 1.5


def test_audit_is_off_unless_configured() -> None:
    assert not build_config({}).vlm.audit.enabled
    assert build_config({"vlm": {"audit": {"enabled": True, "max_mb": 100}}}).vlm.audit.enabled
