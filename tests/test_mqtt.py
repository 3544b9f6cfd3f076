"""MQTT with a real broker (Debian's mosquitto) and a real subscriber (aiomqtt): availability
with its will, Home Assistant discovery, events, retained stream state and snapshot, analyzer
readings; a broker that starts late and one that restarts mid-run lose no event."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import aiomqtt
import pytest

from vlm_monitor.config import ConfigError, build_config
from vlm_monitor.config_events import MqttConfig
from vlm_monitor.notify.mqtt import MqttBridge
from vlm_monitor.notify.mqtt_topics import Topics, safe
from vlm_monitor.testing import free_port, wait_until

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Callable[[int], subprocess.Popen[bytes]]]:
    """mosquitto on a port, with persistence: a subscriber's session (and the messages queued
    for it) survive a broker restart, so a test sees what was published while it was away."""
    if not Path(MOSQUITTO).exists():
        pytest.fail("mosquitto missing: run scripts/install-os-deps.sh")
    procs: list[subprocess.Popen[bytes]] = []

    def start(port: int) -> subprocess.Popen[bytes]:
        store = tmp_path / "mosquitto"
        store.mkdir(exist_ok=True)
        conf = tmp_path / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {store}/\n"
            # Started as root it would switch to user mosquitto, who cannot enter pytest's
            # private temporary directory; as another user this line changes nothing.
            "user root\n"
        )
        with (tmp_path / f"mosquitto{len(procs)}.log").open("wb") as log:
            proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=log)
        procs.append(proc)
        wait_until(lambda: _listening(port), 10, what="mosquitto listening")
        return proc

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(5)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def collect(
    port: int, until: Callable[[dict[str, list[bytes]]], bool], timeout: float = 30
) -> dict[str, list[bytes]]:
    """Every message to the persistent subscriber "t" (queued while it was away included)."""
    got: dict[str, list[bytes]] = {}
    async with aiomqtt.Client("127.0.0.1", port, identifier="t", clean_session=False) as client:
        await client.subscribe([("vlm-monitor/#", 1), ("homeassistant/#", 1)])

        async def read() -> None:
            async for message in client.messages:
                payload = message.payload
                assert isinstance(payload, bytes)
                got.setdefault(str(message.topic), []).append(payload)
                if until(got):
                    return

        if not until(got):
            await asyncio.wait_for(read(), timeout)
    return got


def events_of(got: dict[str, list[bytes]]) -> list[dict]:
    return [json.loads(p) for p in got.get("vlm-monitor/cam/events", [])]


def test_topics_and_discovery_are_safe_and_complete() -> None:
    assert safe("cam/1+#") == "cam_1__"
    topics = Topics("vlm-monitor", "homeassistant")
    configs = {t: json.loads(p) for t, p in topics.discovery_configs("front door").items()}
    motion = configs["homeassistant/binary_sensor/vlm-monitor/front_door_motion/config"]
    assert motion["state_topic"] == "vlm-monitor/front_door/event/motion"
    assert motion["device_class"] == "motion" and motion["payload_on"] == "ON"
    image = configs["homeassistant/image/vlm-monitor/front_door_snapshot/config"]
    assert image["image_topic"] == "vlm-monitor/front_door/snapshot"
    hr = configs["homeassistant/sensor/vlm-monitor/front_door_heart_rate/config"]
    assert hr["unit_of_measurement"] == "bpm" and hr["state_topic"].endswith("/heart_rate")
    assert all(c["availability_topic"] == "vlm-monitor/availability" for c in configs.values())
    assert len({c["unique_id"] for c in configs.values()}) == len(configs)


@pytest.mark.parametrize("url", ["http://broker:1883", "mqtt://", "mqtt://h:99999", "broker"])
def test_bad_broker_url_names_the_key(url: str) -> None:
    with pytest.raises(ConfigError, match=r"mqtt\.url"):
        build_config({"mqtt": {"url": url}})


def test_serve_with_a_bad_broker_url_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"mqtt": {"url": "tcp://x"}, "server": {"data_dir": str(tmp_path)}}))
    out = subprocess.run(
        [sys.executable, "-m", "vlm_monitor", "serve", "--config", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2 and "mqtt.url" in out.stderr + out.stdout


def event(i: int, state: str = "open") -> dict:
    return {"id": f"e{i}", "stream": "cam", "kind": "motion", "state": state, "title": "Motion"}


def test_bridge_queues_while_the_broker_is_away(broker) -> None:
    port = free_port()
    bridge = MqttBridge(MqttConfig(url=f"mqtt://127.0.0.1:{port}", queue_max=10), ["cam"])

    async def scenario() -> tuple[dict[str, list[bytes]], dict[str, list[bytes]]]:
        proc = broker(port)
        await collect(port, lambda g: True)  # the subscriber's session, kept by the broker
        proc.terminate()
        proc.wait(5)
        bridge.start()
        # No broker: 15 events, the oldest 5 over queue_max are dropped and counted.
        for i in range(15):
            await bridge.on_event("open", event(i), b"\xff\xd8jpeg" if i == 14 else None)
        reading = {"stream": "cam", "analyzer": "heart_rate", "result": {"bpm": 72.0}}
        bridge.on_result("analysis", "local", reading)
        await asyncio.sleep(1)
        assert not bridge.connected and bridge.counts["dropped"] == 5
        proc = broker(port)
        await asyncio.to_thread(wait_until, lambda: bridge.status()["queued"] == 0, 30)
        first = await collect(port, lambda g: len(events_of(g)) >= 10)
        # The broker goes away mid-run: what is published meanwhile arrives after it is back.
        proc.terminate()
        proc.wait(5)
        await asyncio.to_thread(wait_until, lambda: not bridge.connected, 30)
        await bridge.on_event("close", event(99, "closed"), None)
        broker(port)
        await asyncio.to_thread(wait_until, lambda: bridge.status()["queued"] == 0, 30)
        second = await collect(port, lambda g: any(e["id"] == "e99" for e in events_of(g)))
        await bridge.stop()
        return first, second

    got, later = asyncio.run(scenario())
    assert [e["id"] for e in events_of(got)] == [f"e{i}" for i in range(5, 15)]
    assert events_of(got)[0]["action"] == "open" and events_of(got)[0]["kind"] == "motion"
    assert got["vlm-monitor/availability"][-1] == b"online"
    assert json.loads(got["vlm-monitor/cam/heart_rate"][-1])["result"]["bpm"] == 72.0
    assert got["vlm-monitor/cam/snapshot"] == [b"\xff\xd8jpeg"]
    assert got["vlm-monitor/cam/event/motion"][-1] == b"ON"
    assert any(t.startswith("homeassistant/binary_sensor/vlm-monitor/cam_") for t in got)
    assert any(t.startswith("homeassistant/image/") for t in got)
    # QoS 1 is at least once: a message the subscriber had not acknowledged when it left
    # comes again; nothing else may.
    again = [(e["id"], e["action"]) for e in events_of(later) if e["id"] != "e99"]
    assert set(again) <= {(e["id"], e["action"]) for e in events_of(got)}, again
    assert [(e["id"], e["action"]) for e in events_of(later) if e["id"] == "e99"] == [
        ("e99", "close")
    ]
    assert later["vlm-monitor/cam/event/motion"][-1] == b"OFF"


def test_server_publishes_events_states_and_discovery(broker, server) -> None:
    port = free_port()
    broker(port)
    asyncio.run(collect(port, lambda g: True))  # the subscriber's session, before the server
    srv = server(
        {
            "mqtt": {"url": f"mqtt://127.0.0.1:{port}"},
            "streams": [
                {
                    "id": "cam",
                    "url": "synthetic://?fps=10&size=320x240",
                    "analyzers": [{"name": "motion", "fps": 5}],
                }
            ],
        }
    )

    def enough(g: dict[str, list[bytes]]) -> bool:
        return (
            bool(events_of(g))
            and "vlm-monitor/cam/snapshot" in g
            and ("vlm-monitor/cam/state" in g)
        )

    got = asyncio.run(collect(port, enough))
    assert got["vlm-monitor/availability"][0] == b"online"
    assert json.loads(got["vlm-monitor/cam/state"][-1])["state"] in ("connecting", "live")
    opened = events_of(got)[0]
    assert opened["action"] == "open" and opened["kind"] == "motion"
    assert got["vlm-monitor/cam/snapshot"][-1][:2] == b"\xff\xd8"
    assert json.loads(got["vlm-monitor/cam/motion"][-1])["analyzer"] == "motion"
    assert "homeassistant/sensor/vlm-monitor/cam_heart_rate/config" in got
    srv.stop()
    after = asyncio.run(collect(port, lambda g: "vlm-monitor/availability" in g))
    assert after["vlm-monitor/availability"][-1] == b"offline"
