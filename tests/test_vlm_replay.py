"""`vlm-monitor replay`, end to end: a server audits its clips' calls to one fake
OpenAI-protocol provider; the replay puts them to a second one that answers differently."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fake_vlm import ALERT_SCHEMA, SMOKE_ALERT, FakeVlm
from vlm_monitor.cli import main
from vlm_monitor.testing import wait_until


@pytest.fixture
def fakes():
    recorded, other = FakeVlm(answer=SMOKE_ALERT), FakeVlm(answer=SMOKE_ALERT)
    yield recorded, other
    recorded.close()
    other.close()


def replay(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vlm_monitor", "replay", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def records(audit: Path) -> list[dict]:
    return [json.loads(x) for f in audit.glob("audit-*.jsonl") for x in f.read_text().splitlines()]


def test_replay_compares_stored_clips_with_another_provider(fakes, server, tmp_path) -> None:
    recorded, other = fakes
    srv = server(
        {
            "vlm": {
                "providers": [
                    {"name": "qwen", "kind": "openai", "base_url": recorded.url + "/v1",
                     "model": "qwen-vl-max", "price_input_per_1k": 1.0,
                     "price_output_per_1k": 2.0},
                    {"name": "other", "kind": "openai", "base_url": other.url + "/v1",
                     "model": "other-vl", "price_input_per_1k": 0.5,
                     "price_output_per_1k": 1.0},
                ],
                "audit": {"enabled": True},
            },
            "streams": [
                {"id": "cam", "url": "synthetic://?fps=10&size=320x180",
                 "clips": {"clip_seconds": 1, "frames_per_clip": 2, "min_free_mb": 0,
                           "provider": "qwen", "schema": ALERT_SCHEMA}},
            ],
        }
    )  # fmt: skip
    audit = tmp_path / "data" / "audit"
    wait_until(lambda: len(records(audit)) >= 3, 30, what="three audited calls")
    srv.stop()
    first = records(audit)[0]
    assert first["request"]["model"] == "qwen-vl-max" and first["request"]["frames"] == 2
    assert first["clip"] and first["prompt_tokens"] == 100 and first["completion_tokens"] == 20
    assert first["cost"] == pytest.approx(0.14) and first["response"]["usage"]["total_tokens"]
    assert first["structured"] == {"alert": True, "reason": "smoke"}

    # Oldest first: the decision flips, a field changes, the same answer.
    other.behaviours.extend(
        [("text", '{"alert": false, "reason": "steam"}'),
         ("text", '{"alert": true, "reason": "fire"}'), ("text", SMOKE_ALERT)]
    )  # fmt: skip
    done = replay(srv.config_path, "--provider", "other", "--last", "3", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["calls"] == 3 and len(other.requests) == 3
    assert report["agreement"] == {"decided": 3, "agree": 2, "disagree": 1, "rate": 0.667}
    assert report["fields"] == {
        "alert": {"same": 2, "different": 1},
        "reason": {"same": 1, "different": 2},
    }
    flipped, changed = report["disagreements"]
    assert flipped["recorded"]["alert"] is True and flipped["replayed"]["alert"] is False
    assert flipped["agree"] is False and changed["agree"] is True
    assert changed["fields"] == {"alert": True, "reason": False}
    assert report["recorded"]["cost"] == pytest.approx(0.42)
    assert report["replayed"]["cost"] == pytest.approx(0.21)
    assert report["replayed"]["tokens"] == 360 and report["replayed"]["latency_s"]["p50"] > 0
    assert report["run"]["recorded_providers"] == ["qwen"]
    sent = other.requests[0]["json"]
    assert sent["model"] == "other-vl" and sent["response_format"]["type"] == "json_schema"

    other.behaviours.append(("text", '{"alert": false, "reason": "nothing"}'))
    human = replay(srv.config_path, "--provider", "other", "--last", "1", "--stream", "cam",
                   "--prompt", "Is there smoke?")  # fmt: skip
    assert human.returncode == 0, human.stderr
    text = human.stdout
    assert "recorded (qwen)" in text and "replayed (other)" in text
    assert "alert decisions: 0 of 1 agree (0%)" in text
    assert "disagreements: 1" in text and "alert True -> False" in text
    assert "fields changed: alert, reason" in text
    assert other.requests[-1]["json"]["messages"][0]["content"][0]["text"].startswith(
        "Is there smoke?"
    )


def test_replay_refuses_what_it_cannot_use(tmp_path: Path, capsys) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"server": {"data_dir": str(tmp_path / "data")}}))

    def refused(*args: str) -> str:
        assert main(["replay", "--config", str(config), *args]) == 2
        return capsys.readouterr().err

    assert "no audit log at" in refused("--provider", "qwen")
    (tmp_path / "data" / "audit").mkdir(parents=True)
    assert "no provider 'qwen'" in refused("--provider", "qwen")
    assert "not an ISO 8601 time" in refused("--since", "yesterday")
    assert "neither a built-in (review) nor a file" in refused("--schema", "nope")
    with pytest.raises(SystemExit):
        main(["replay", "--config", str(config), "--since", "2026-11-29", "--last", "3"])
    assert "not allowed with argument" in capsys.readouterr().err
