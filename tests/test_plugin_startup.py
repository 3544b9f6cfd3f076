"""A plug-in the configuration names that cannot be built stops start-up, naming the plug-in
and the reason: `vlm-monitor serve` exits 2 before it listens, instead of running without it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from vlm_monitor.config import VlmProviderConfig
from vlm_monitor.registry import PluginError
from vlm_monitor.testing import free_port
from vlm_monitor.vlm.registry import ProviderSet

SYN = "synthetic://?fps=5&size=320x240"


def serve(python: str, tmp_path: Path, config: dict[str, Any], **env: str) -> tuple[int, str]:
    port = free_port()
    config = {"server": {"port": port, "data_dir": str(tmp_path / "data")}, **config}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    proc = subprocess.run(
        [python, "-m", "vlm_monitor", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "VLM_MONITOR_LOG_DIR": str(tmp_path / "logs"), **env},
    )
    return proc.returncode, proc.stderr


def provider(**fields: Any) -> dict[str, Any]:
    return {"name": "qwen", "kind": "openai", "model": "qwen-vl-max", **fields}


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"base_url": "localhost:8000/v1"}, "is not an http:// or https:// URL with a host"),
        ({"base_url": "http://"}, "is not an http:// or https:// URL with a host"),
        (
            {"base_url": "http://127.0.0.1:9/v1", "api_key_env": "VLM_TEST_NO_SUCH_KEY"},
            "$VLM_TEST_NO_SUCH_KEY is not set",
        ),
    ],
)
def test_serve_stops_on_a_vlm_provider_that_cannot_be_built(
    python: str, tmp_path: Path, fields: dict[str, Any], reason: str
) -> None:
    code, stderr = serve(python, tmp_path, {"vlm": {"providers": [provider(**fields)]}})
    assert code == 2, stderr
    assert "vlm-monitor: VLM provider 'qwen' cannot be built: " in stderr
    assert reason in stderr
    assert "Traceback" not in stderr


def test_serve_stops_on_an_analyzer_that_cannot_be_built(python: str, tmp_path: Path) -> None:
    # No Tesseract on this PATH: the OCR analyzer cannot be built.
    stream = {"id": "door", "url": SYN, "analyzers": ["motion", "ocr"]}
    code, stderr = serve(python, tmp_path, {"streams": [stream]}, PATH=str(tmp_path))
    assert code == 2, stderr
    assert "vlm-monitor: analyzer 'ocr' cannot be built: " in stderr
    assert "apt install tesseract-ocr" in stderr and "(stream door)" in stderr


def test_provider_set_names_the_provider_that_cannot_be_built() -> None:
    good = VlmProviderConfig(name="offline", kind="local")
    bad = VlmProviderConfig(**provider(base_url="ftp://example.com/v1"))
    with pytest.raises(PluginError, match=r"VLM provider 'qwen' cannot be built: base_url") as info:
        ProviderSet([good, bad])
    assert (info.value.kind, info.value.name) == ("VLM provider", "qwen")
    assert ProviderSet([good]).providers.keys() == {"offline"}
