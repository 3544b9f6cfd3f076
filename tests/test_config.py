import json
from pathlib import Path

import pytest

from vlm_monitor.config import ConfigError, build_config, load_config
from vlm_monitor.sources.url import parse_source_url


def test_contract_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("""
server: {host: 127.0.0.1, port: 8080, api_token: null, data_dir: ./data}
vlm:
  providers:
    - {name: qwen, kind: openai, base_url: "http://HOST/v1", model: qwen-vl-max,
       api_key_env: DASHSCOPE_API_KEY}
    - {name: offline, kind: local}
streams:
  - id: cam1
    url: tcp://127.0.0.1:8888
    analyzers: [motion, emotion, heart_rate]
    clips: {enabled: true, clip_seconds: 10, frames_per_clip: 8, provider: qwen,
            prompt: "Describe."}
flows: []
""")
    cfg = load_config(path, env={})
    assert cfg.streams[0].id == "cam1" and cfg.streams[0].analysis_dims == (640, 360)
    assert cfg.vlm.providers[0].kind == "openai"


def test_original_stream_tcp_form(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "stream": {
                    "type": "tcp",
                    "tcp": {
                        "host": "localhost",
                        "port": 8888,
                        "use_backend_client": True,
                        "backend_url": "http://localhost:8080",
                        "frame_rate": 5,
                    },
                }
            }
        )
    )
    cfg = load_config(path, env={})
    assert cfg.streams[0].url == "tcp://localhost:8888"
    assert cfg.worker.frame_rate == 5 and cfg.worker.backend_url == "http://localhost:8080"


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({"streams": [{"id": "a", "url": "htp://x"}]}, "streams.0.url: unsupported scheme 'htp'"),
        ({"streams": [{"id": "a", "url": "tcp://host"}]}, "needs a port"),
        ({"streams": [{"id": "bad id", "url": "tcp://h:1"}]}, "streams.0.id"),
        ({"server": {"port": 99999}}, "server.port"),
        ({"server": {"prot": 1}}, "server.prot: Extra inputs are not permitted"),
        (
            {"streams": [{"id": "a", "url": "tcp://h:1"}, {"id": "a", "url": "tcp://h:2"}]},
            "duplicate id 'a'",
        ),
        ({"streams": [{"id": "a", "url": "synthetic://?fps=0"}]}, "fps must be in"),
        ({"streams": [{"id": "a", "url": "tcp://h:1", "analysis_size": "640"}]}, "WIDTHxHEIGHT"),
    ],
)
def test_errors_name_key_and_value(doc: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config(doc, env={})
    assert needle in str(info.value)


def test_env_overrides() -> None:
    cfg = build_config(
        {"server": {"port": 1}},
        env={"VLM_MONITOR_PORT": "9000", "VLM_MONITOR_API_TOKEN": "s3cret-token"},
    )
    assert cfg.server.port == 9000 and cfg.server.api_token == "s3cret-token"
    with pytest.raises(ConfigError, match="VLM_MONITOR_PORT"):
        build_config({}, env={"VLM_MONITOR_PORT": "eighty"})


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml", env={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("streams: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad, env={})
    top = tmp_path / "list.json"
    top.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(top, env={})


def test_source_urls() -> None:
    assert parse_source_url("file:///tmp/a.mp4").path == "/tmp/a.mp4"
    assert parse_source_url("synthetic://?fps=30&size=640x360").params["size"] == "640x360"
    assert parse_source_url("rtsp://cam.local/stream").scheme == "rtsp"
    assert parse_source_url("http://cam.local/video.mjpg").scheme == "http"
    for bad in (
        "",
        "rtsp://",
        "tcp://:80",
        "tcp://h:notaport",
        "file://",
        "hls+http://x/y.m3u8",
        "tcp://h:1 ",
        "synthetic://?size=7x5",
    ):
        with pytest.raises(ValueError):
            parse_source_url(bad)


def test_a_refused_camera_url_is_shown_without_its_password() -> None:
    with pytest.raises(ConfigError) as refused:
        build_config({"streams": [{"id": "a", "url": "rtsp://u:topsecret@host:99999/x"}]}, env={})
    assert "topsecret" not in str(refused.value) and "u:***@host" in str(refused.value)
