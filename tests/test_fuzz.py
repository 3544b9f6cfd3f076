"""Property-based fuzzing of every parser of outside bytes: whatever comes in, each one
either returns a value or raises its documented error (which the server turns into a 4xx
or an error event), never anything else. FUZZ_EXAMPLES sets the examples per parser; the
suite's runs are derandomized (the same inputs every time, so CI is repeatable), FUZZ_RANDOM=1
explores new ones."""

from __future__ import annotations

import base64
import json
import os
import string

import cv2
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vlm_monitor.camera import strip
from vlm_monitor.config import ConfigError, RealtimeConfig, load_config
from vlm_monitor.flows.expr import Expression, ExpressionError
from vlm_monitor.flows.graph import FlowValidationError
from vlm_monitor.flows.manager import parse_flow
from vlm_monitor.hub import wire
from vlm_monitor.logging_setup import Redactor
from vlm_monitor.realtime.protocol import ProtocolError, normalise_frame, parse
from vlm_monitor.sources.url import parse_source_url, redact_url
from vlm_monitor.storage.paths import inside

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
fuzz = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LIMITS = RealtimeConfig(max_message_bytes=200_000, max_frame_bytes=100_000, max_audio_ms=500)

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@fuzz
@given(st.binary(max_size=2000))
def test_frame_wire_messages(data: bytes) -> None:
    try:
        msg = wire.unpack(data)
    except ValueError:
        return
    assert wire.unpack(wire.pack(msg)) == msg


@fuzz
@given(
    st.sampled_from(["", "stream", "seq", "ts", "width", "height"]).flatmap(
        lambda drop: st.fixed_dictionaries(
            {k: json_values for k in ("stream", "seq", "ts", "width", "height") if k != drop}
        )
    ),
    st.binary(max_size=100),
)
def test_frame_wire_headers(head: dict, jpeg: bytes) -> None:
    raw = json.dumps(head).encode()
    try:
        wire.unpack(len(raw).to_bytes(4, "big") + raw + jpeg)
    except ValueError:
        pass


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


realtime_messages = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=300),
    json_values.map(json.dumps),
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["audio", "video", "close", "Audio", ""]) | st.text(max_size=6),
            "data": st.one_of(
                st.binary(max_size=20_000).map(_b64),
                st.text(alphabet=string.printable, max_size=200),
                json_values,
            ),
        }
    ).map(json.dumps),
)


@fuzz
@given(realtime_messages, st.booleans())
def test_realtime_client_messages(raw: str | bytes, want_video: bool) -> None:
    try:
        message = parse(raw, LIMITS, want_video)
    except ProtocolError as exc:
        assert exc.event()["type"] == "error" and exc.code
        return
    assert message.type in ("audio", "video", "close")
    if message.type == "audio":
        assert len(message.data) % 2 == 0 and len(message.data) <= LIMITS.max_audio_ms * 32


@fuzz
@given(st.binary(min_size=2, max_size=3000))
def test_realtime_frames_that_claim_to_be_jpeg(tail: bytes) -> None:
    """A payload that passes the JPEG magic check still has to survive normalisation."""
    try:
        out = normalise_frame(b"\xff\xd8" + tail)
    except ProtocolError:
        return
    assert out.startswith(b"\xff\xd8")


config_docs = st.one_of(
    st.text(max_size=400),
    json_values.map(lambda v: yaml.safe_dump(v)),
    st.fixed_dictionaries(
        {},
        optional={
            "server": st.dictionaries(
                st.sampled_from(["port", "host", "api_token", "max_body_bytes", "cors_origins"]),
                json_values,
            ),
            "streams": st.lists(
                st.dictionaries(st.sampled_from(["id", "url", "analyzers", "clips"]), json_values),
                max_size=3,
            ),
            "bus": st.dictionaries(st.sampled_from(["kind", "url", "channel"]), json_values),
            "analysis": st.dictionaries(st.sampled_from(["dispatch", "threads"]), json_values),
            "flows": st.lists(json_values, max_size=2),
        },
    ).map(lambda d: yaml.safe_dump(d)),
)


@fuzz
@given(config_docs)
def test_config_files(tmp_path_factory, text: str) -> None:
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_text(text)
    try:
        load_config(path, env={})
    except ConfigError as exc:
        assert str(exc)


@fuzz
@given(json_values)
def test_flow_definitions(doc) -> None:
    try:
        parse_flow(doc)
    except FlowValidationError as exc:
        assert str(exc)


@fuzz
@given(st.text(max_size=120), st.dictionaries(st.text(max_size=5), json_values, max_size=3))
def test_flow_expressions(source: str, names: dict) -> None:
    try:
        expr = Expression(source)
    except ExpressionError:
        return
    try:
        expr.evaluate(names)
    except ExpressionError:
        pass


@fuzz
@given(st.text(max_size=200))
def test_source_urls(url: str) -> None:
    try:
        parse_source_url(url)
    except ValueError:
        pass
    assert isinstance(redact_url(url), str)


PASSWORD_CHARS = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:%"


@fuzz
@given(
    st.sampled_from(["rtsp", "rtsps", "http", "https", "tcp"]),
    st.text(string.ascii_letters + string.digits + "-._", min_size=1, max_size=12),
    st.text(PASSWORD_CHARS, min_size=1, max_size=24),
)
def test_camera_passwords_never_shown(scheme: str, user: str, password: str) -> None:
    """Whatever the password, status (redact_url) and log lines (Redactor) show ***."""
    url = f"{scheme}://{user}:{password}@cam.example:8554/stream"
    shown = f"{scheme}://{user}:***@cam.example:8554/stream"
    assert redact_url(url) == shown
    assert Redactor()(f"open failed: '{url}' (401)") == f"open failed: '{shown}' (401)"


@fuzz
@given(st.lists(st.text(max_size=30), min_size=1, max_size=3))
def test_paths_from_input_stay_inside(tmp_path_factory, parts: list[str]) -> None:
    base = tmp_path_factory.mktemp("base")
    path = inside(base, *parts)
    assert path is None or path.is_relative_to(base.resolve())


@fuzz
@given(
    st.integers(160, 1280).map(lambda w: w - w % 2),
    st.integers(0, 2**31 - 1),
    st.floats(1.6e9, 2.0e9),
    st.integers(0, 2**32 - 1),
    st.sampled_from(["none", "noise", "jpeg"]),
)
def test_timestamp_strip_decoder(width: int, seq: int, ts: float, seed: int, damage: str) -> None:
    rng = np.random.default_rng(seed)
    image = np.zeros((max(90, width * 9 // 16), width, 3), np.uint8)
    strip.draw(image, seq, ts)
    if damage == "noise":
        image = rng.integers(0, 256, image.shape, dtype=np.uint8)
    elif damage == "jpeg":
        image = cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 30])[1], 1)
    got = strip.read(image)
    if damage != "noise":
        assert got is not None and got[0] == seq and abs(got[1] - ts) < 0.002
    # Random pixels must not decode (the CRC) except by a 1-in-256 chance.


@pytest.mark.parametrize("seed", range(3))
def test_random_pictures_do_not_decode_as_strips(seed: int) -> None:
    rng = np.random.default_rng(seed)
    hits = sum(
        strip.read(rng.integers(0, 256, (180, 320, 3), dtype=np.uint8)) is not None
        for _ in range(200)
    )
    assert hits <= 4
