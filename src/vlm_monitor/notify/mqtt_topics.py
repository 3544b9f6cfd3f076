"""Topic names and payloads of the MQTT contract, with Home Assistant discovery configs. Pure:
no sockets, tested directly.

``{prefix}/availability`` online/offline (retained; the broker's will says offline),
``{prefix}/{stream}/events`` the event JSON on every open/update/close,
``{prefix}/{stream}/event/{kind}`` ON while an event of that kind is open (retained; the
binary sensors read it), ``{prefix}/{stream}/state`` the stream's state (retained),
``{prefix}/{stream}/snapshot`` the latest event's JPEG (retained),
``{prefix}/{stream}/{analyzer}`` the analyzer's latest reading (retained).
"""

from __future__ import annotations

import json
import re
from typing import Any

from vlm_monitor import __version__

BINARY_KINDS = ("motion", "alert", "absent", "multiple_faces", "looking_away", "stream_offline")
DEVICE_CLASS = {"motion": "motion", "stream_offline": "problem", "absent": "occupancy"}
UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def safe(name: str) -> str:
    """A topic level and Home Assistant object id: MQTT wildcards (+ #) and / would change the
    meaning of a topic, so anything but letters, digits, _ and - becomes _."""
    return UNSAFE.sub("_", name) or "_"


class Topics:
    def __init__(self, prefix: str, discovery_prefix: str) -> None:
        self.prefix, self.discovery = prefix, discovery_prefix
        self.node = safe(prefix)

    @property
    def availability(self) -> str:
        return f"{self.prefix}/availability"

    def events(self, stream: str) -> str:
        return f"{self.prefix}/{safe(stream)}/events"

    def event_kind(self, stream: str, kind: str) -> str:
        return f"{self.prefix}/{safe(stream)}/event/{safe(kind)}"

    def state(self, stream: str) -> str:
        return f"{self.prefix}/{safe(stream)}/state"

    def snapshot(self, stream: str) -> str:
        return f"{self.prefix}/{safe(stream)}/snapshot"

    def analyzer(self, stream: str, analyzer: str) -> str:
        return f"{self.prefix}/{safe(stream)}/{safe(analyzer)}"

    def discovery_configs(self, stream: str) -> dict[str, bytes]:
        """Retained Home Assistant discovery configs for one stream: a binary sensor per event
        kind, a heart-rate sensor, the stream state, and an image entity for the snapshot."""
        sid = safe(stream)
        device = {
            "identifiers": [f"{self.node}_{sid}"],
            "name": f"{self.prefix} {stream}",
            "manufacturer": "vlm-monitor",
            "sw_version": __version__,
        }
        common = {"availability_topic": self.availability, "device": device}
        out: dict[str, dict[str, Any]] = {}
        for kind in BINARY_KINDS:
            config = {
                **common,
                "name": kind.replace("_", " "),
                "unique_id": f"{self.node}_{sid}_{kind}",
                "state_topic": self.event_kind(stream, kind),
                "payload_on": "ON",
                "payload_off": "OFF",
            }
            if kind in DEVICE_CLASS:
                config["device_class"] = DEVICE_CLASS[kind]
            out[f"{self.discovery}/binary_sensor/{self.node}/{sid}_{kind}/config"] = config
        out[f"{self.discovery}/sensor/{self.node}/{sid}_heart_rate/config"] = {
            **common,
            "name": "heart rate",
            "unique_id": f"{self.node}_{sid}_heart_rate",
            "state_topic": self.analyzer(stream, "heart_rate"),
            "value_template": "{{ value_json.result.bpm }}",
            "unit_of_measurement": "bpm",
            "state_class": "measurement",
        }
        out[f"{self.discovery}/sensor/{self.node}/{sid}_state/config"] = {
            **common,
            "name": "stream state",
            "unique_id": f"{self.node}_{sid}_state",
            "state_topic": self.state(stream),
            "value_template": "{{ value_json.state }}",
        }
        out[f"{self.discovery}/image/{self.node}/{sid}_snapshot/config"] = {
            **common,
            "name": "snapshot",
            "unique_id": f"{self.node}_{sid}_snapshot",
            "image_topic": self.snapshot(stream),
            "content_type": "image/jpeg",
        }
        return {topic: json.dumps(config).encode() for topic, config in out.items()}
