"""Analyzer jobs: a worker's side of ``analysis.dispatch: redis`` (the backend's side is
``vlm_monitor.analyzers.remote``).

Live analysis is not a heap of independent jobs: heart rate needs every frame of a stream, in
order, in one place. So each stream has its own job stream and a lease
(``{channel}:lease:{stream}``, SET NX with a TTL of ``claim_idle_s``); the worker holding the
lease is the stream's only reader in the consumer group ``workers``, and keeps that stream's
analyzers (and their state) in memory.

- Sharing: each worker holds at most ceil(streams / live analysis workers) leases, so two
  workers on 4 streams take 2 each; a worker over its share releases one lease per round.
- Crash: a dead worker stops renewing; its leases expire after ``claim_idle_s`` and another
  worker takes them, first taking over (XAUTOCLAIM) the frames the dead one had read but not
  acknowledged: at-least-once. Results are written to the backend's stream before the frame
  is acknowledged; the backend stores a (stream, analyzer, frame time) once.
- Poison: a frame delivered ``max_attempts`` times (it keeps killing workers) goes to
  ``{channel}:jobs:dead``. An analyzer that merely raises gives an error result instead: a
  live frame is not worth retrying.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from vlm_monitor.analyzers.base import Analyzer, SharedModels
from vlm_monitor.analyzers.builtin import build_analyzers
from vlm_monitor.config import AnalyzerConfig
from vlm_monitor.jobs.keys import GROUP, analysis_keys, decode, ensure_group
from vlm_monitor.types import Frame
from vlm_monitor.worker.process import WorkerProcess

log = logging.getLogger("vlm_monitor.jobs")
STREAM_FRESH_S = 30.0  # a stream not re-announced by its backend this long is gone
RESULTS_MAXLEN = 100_000  # a backend away this long loses the oldest results, not its Redis
# Renewals happen between reads and frames; a read blocks this long at most.
READ_BLOCK_MS = 200


@dataclass
class StreamState:
    configs: str  # the analyzers' configuration the instances were built from
    analyzers: dict[str, Analyzer] = field(default_factory=dict)


def _source(meta: dict[str, Any]) -> tuple[int, int] | None:
    """The displayed size of the picture the job's JPEG was scaled from (None: the JPEG's own,
    for jobs from backends that do not say)."""
    size = meta.get("source")
    if size is None:
        return None
    width, height = (int(v) for v in size)
    if not (0 < width <= 16384 and 0 < height <= 16384):
        raise ValueError(f"source size {width}x{height} is out of range")
    return width, height


class AnalysisWorker:
    def __init__(
        self, process: WorkerProcess, claim_idle_s: float = 30.0, max_attempts: int = 3
    ) -> None:
        self.process, self.client, self.name = process, process.client, process.name
        self.channel = process.channel
        self.lease_ms = int(claim_idle_s * 1000)
        self.max_attempts = max_attempts
        self.models = SharedModels()
        self.leases: dict[str, StreamState | None] = {}  # stream -> its analyzers once built
        self._renew = self.client.register_script(
            "if redis.call('get', KEYS[1]) == ARGV[1] then "
            "return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
        )
        self._release = self.client.register_script(
            "if redis.call('get', KEYS[1]) == ARGV[1] then "
            "return redis.call('del', KEYS[1]) else return 0 end"
        )
        self._next_balance = 0.0

    def run(self, deadline: float | None = None) -> None:
        try:
            self.process.loop(self._step, deadline)
        finally:
            for stream in list(self.leases):
                self._drop(stream, release=True)

    def _step(self) -> None:
        if time.monotonic() >= self._next_balance:
            self._balance()
            self._next_balance = time.monotonic() + min(1.0, self.lease_ms / 3000)
        if not self.leases:
            self.process.stop.wait(READ_BLOCK_MS / 1000)
            return
        streams: Any = {self._key(s, "jobs"): ">" for s in self.leases}
        got: Any = self.client.xreadgroup(GROUP, self.name, streams, count=4, block=READ_BLOCK_MS)
        for key, entries in got or []:
            stream = decode(key).rsplit(":", 1)[1]
            for entry_id, fields in entries:
                if stream in self.leases:  # not lost while this batch ran
                    self._handle(stream, decode(entry_id), fields)

    def _key(self, stream: str, kind: str) -> str:
        return analysis_keys(self.channel, stream)[kind]

    def _streams(self) -> list[str]:
        now, streams = time.time(), []
        for sid, doc in self.client.hgetall(analysis_keys(self.channel)["streams"]).items():
            try:
                if now - float(json.loads(doc)["seen"]) < STREAM_FRESH_S:
                    streams.append(decode(sid))
            except (ValueError, KeyError, TypeError):
                continue
        return sorted(streams)

    def _balance(self) -> None:
        for stream in list(self.leases):
            if not self._renew(keys=[self._key(stream, "lease")], args=[self.name, self.lease_ms]):
                log.warning("lease lost", extra={"fields": {"stream": stream}})
                self._drop(stream, release=False)
        streams = self._streams()
        for stream in [s for s in self.leases if s not in streams]:
            self._drop(stream, release=True)  # its backend stopped analysing it
        share = math.ceil(len(streams) / self.process.live_workers("analyze", STREAM_FRESH_S / 3))
        if len(self.leases) > share:
            self._drop(next(iter(self.leases)), release=True)
            return
        for stream in streams:
            if len(self.leases) >= share:
                break
            if stream in self.leases:
                continue
            if self.client.set(self._key(stream, "lease"), self.name, nx=True, px=self.lease_ms):
                self._take(stream)

    def _take(self, stream: str) -> None:
        key = self._key(stream, "jobs")
        ensure_group(self.client, key)
        self.leases[stream] = None
        log.info("stream taken", extra={"fields": {"stream": stream, "worker": self.name}})
        # What the previous holder read and never acknowledged is ours now (min idle 0: the
        # lease says nobody else is working on it).
        start = "0-0"
        while True:
            start, claimed, *_ = self.client.xautoclaim(key, GROUP, self.name, 0, start, count=50)
            for entry_id, fields in claimed:
                entry = decode(entry_id)
                attempts = self.process.pending_attempts(key, GROUP, entry)
                if attempts > self.max_attempts:
                    self._dead(key, entry, fields, f"delivered {attempts} times")
                else:
                    self._handle(stream, entry, fields)
            if decode(start) == "0-0":
                break

    def _drop(self, stream: str, release: bool) -> None:
        self.leases.pop(stream, None)
        if release:
            self._release(keys=[self._key(stream, "lease")], args=[self.name])

    def _dead(self, key: str, entry_id: str, fields: dict[Any, Any], reason: str) -> None:
        meta = fields.get(b"meta")
        pipe = self.client.pipeline(transaction=False)
        self.process.dead_letter(pipe, {"kind": "analyze", "meta": decode(meta or b"")}, reason)
        pipe.xack(key, GROUP, entry_id)
        pipe.xdel(key, entry_id)
        pipe.execute()

    def _analyzers(self, stream: str, configs: list[dict[str, Any]]) -> dict[str, Analyzer]:
        text = json.dumps(configs, sort_keys=True)
        state = self.leases.get(stream)
        if state is None or state.configs != text:
            parsed = [AnalyzerConfig.model_validate(c) for c in configs]
            _, analyzers = build_analyzers(stream, parsed, self.models)
            state = StreamState(text, analyzers)
            self.leases[stream] = state
        return state.analyzers

    def _handle(self, stream: str, entry_id: str, fields: dict[Any, Any]) -> None:
        key = self._key(stream, "jobs")
        try:
            meta = json.loads(fields[b"meta"])
            image = cv2.imdecode(np.frombuffer(fields[b"jpeg"], np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError("the frame is not a JPEG")
            analyzers = self._analyzers(stream, meta["analyzers"])
            due, reply_to = list(meta["due"]), str(meta["reply_to"])
            ts = float(meta["ts"])
            shot = float(meta.get("capture_ts", ts))  # older backends do not send it
            frame = Frame(stream, int(meta["seq"]), ts, image, _source(meta), shot)
        except Exception as exc:  # any malformed job is dead, not a crash
            self._dead(key, entry_id, fields, f"bad job: {type(exc).__name__}: {exc}")
            return
        pipe = self.client.pipeline(transaction=False)
        for name in due:
            doc: dict[str, Any] = {"stream": stream, "analyzer": name, "frame_seq": frame.seq,
                                   "video_timestamp": frame.ts, "worker": self.name}  # fmt: skip
            analyzer = analyzers.get(name)
            try:
                if analyzer is None:
                    raise KeyError(f"analyzer {name!r} is not configured")
                doc["payload"] = analyzer.analyze(image, frame)
                self.process.counts["frames"] += 1
            except Exception as exc:  # reported to the backend as a result
                doc["error"] = f"{type(exc).__name__}: {exc}"
                self.process.counts["analysis_errors"] += 1
            pipe.xadd(reply_to, {"result": json.dumps(doc)}, maxlen=RESULTS_MAXLEN)
        pipe.xack(key, GROUP, entry_id)
        pipe.xdel(key, entry_id)
        pipe.execute()
