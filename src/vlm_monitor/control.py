"""Changes to running streams that people and programs ask for (over the HTTP API), which
reach across boxes: the stream manager, the analyzers, the session map.

A stream from outside is checked as the configuration file's are not (it came from the
network): its URL with its settings, a ``file://`` source confined to ``server.media_dir``,
the providers its clips name. HTTP-free: failures are the domain errors of ``types.py``,
answered with one status each by the API (``app.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any, Literal

from pydantic import ValidationError

from vlm_monitor.analyzers.service import AnalyzerService
from vlm_monitor.config import AnalysisConfig, AnalyzerConfig, StreamConfig, describe_errors
from vlm_monitor.results import SessionMap
from vlm_monitor.sources.manager import StreamExistsError, StreamManager, StreamNotFoundError
from vlm_monitor.sources.url import parse_stream_source, redact_url
from vlm_monitor.storage.paths import opens_inside
from vlm_monitor.types import ConflictError, InvalidError
from vlm_monitor.vlm.reference import read_reference


class StreamControl:
    """``providers``: the configured VLM provider names clips may use."""

    def __init__(
        self,
        streams: StreamManager,
        analyzers: AnalyzerService,
        sessions: SessionMap,
        analysis: AnalysisConfig,
        media_dir: str,
        providers: Collection[str],
    ) -> None:
        self.streams, self.analyzers, self.sessions = streams, analyzers, sessions
        self.analysis, self.media_dir, self.providers = analysis, media_dir, providers

    async def check(self, config: StreamConfig) -> None:
        """Raises InvalidError naming the field that cannot work."""
        try:
            source = parse_stream_source(config.url, config.listen)
        except ValueError as exc:
            raise InvalidError(f"url: {exc}") from None
        # source.path is exactly what FFmpeg opens (its file protocol, links followed).
        if source.scheme == "file" and not await asyncio.to_thread(
            opens_inside, source.path, self.media_dir
        ):
            raise InvalidError(
                f"url: file:// streams added over the API must be regular files inside "
                f"server.media_dir {self.media_dir}"
            )
        if config.reference_frame is not None:
            await self._check_reference(config.reference_frame)
        wanted = config.clips.provider if config.clips is not None else None
        names = wanted if isinstance(wanted, list) else [wanted] if wanted is not None else []
        unknown = [n for n in names if n not in self.providers]
        if unknown:
            raise InvalidError(
                f"clips.provider: unknown provider(s) {unknown}; "
                f"configured: {sorted(self.providers)}"
            )

    async def _check_reference(self, path: str) -> None:
        """Like a ``file://`` source: a picture inside ``server.media_dir``, or the API would
        let a caller send any picture on the server's disk to a VLM."""
        if not await asyncio.to_thread(opens_inside, path, self.media_dir):
            raise InvalidError(
                f"reference_frame: streams added over the API must name a file inside "
                f"server.media_dir {self.media_dir}"
            )
        try:
            await asyncio.to_thread(read_reference, path)
        except (OSError, ValueError) as exc:
            raise InvalidError(f"reference_frame: {exc}") from None

    async def add(self, config: StreamConfig) -> dict[str, Any]:
        """Starts a stream and keeps it across restarts; its status."""
        await self.check(config)
        self.analyzers.admit(config)
        return await self.streams.add(config, persistent=True)

    async def set_analyzers(
        self, stream_id: str, analyzers: list[AnalyzerConfig]
    ) -> dict[str, Any]:
        """Replaces a running stream's analyzers (kept across restarts for a stream added
        over the API); on failure the previous ones keep running. Their status."""
        current = self.streams.get(stream_id).config
        doc = current.model_dump(mode="json", by_alias=True)
        doc["analyzers"] = [a.model_dump(mode="json") for a in analyzers]
        try:
            wanted = StreamConfig.model_validate(doc)
        except ValidationError as exc:
            raise InvalidError("; ".join(describe_errors(exc))) from None
        self.analyzers.admit(wanted)
        try:
            await self.analyzers.start(wanted)
        except ValueError as exc:
            await self.analyzers.start(current)
            raise InvalidError(str(exc)) from None
        try:
            await self.streams.update(stream_id, {"analyzers": doc["analyzers"]})
        except StreamNotFoundError:  # removed meanwhile: its analyzers must not outlive it
            await self.analyzers.stop(stream_id)
            raise StreamNotFoundError(stream_id, f"stream {stream_id!r} was removed") from None
        return self.analyzers.status(stream_id)

    async def rtsp_start(
        self,
        name: str,
        url: str | None,
        transport: Literal["tcp", "udp", "auto"],
        analyzers: list[AnalyzerConfig] | None,
        session_id: str | None,
        student_id: str | None,
    ) -> tuple[bool, dict[str, Any]]:
        """Starts consuming a camera with its analyzers, as the exam-proctoring backend asks,
        binding the session if one is given. Idempotent: a stream already running from the
        same URL is a success (taking ``analyzers`` if given). (already running, status)."""
        if url is None:
            if self.analysis.rtsp_base is None:
                raise InvalidError(
                    "rtsp_url is needed: no analysis.rtsp_base (or MEDIAMTX_HOST) is set"
                )
            url = f"{self.analysis.rtsp_base}/{name}"
        try:
            config = StreamConfig(
                id=name,
                url=url,
                transport=transport,
                analyzers=self.analysis.rtsp_default_analyzers if analyzers is None else analyzers,
            )
        except ValidationError as exc:
            raise InvalidError("; ".join(describe_errors(exc))) from None
        await self.check(config)
        if session_id is not None:
            await self.sessions.bind(name, session_id, student_id)
        if name in self.streams:
            running = self.streams.get(name).config.url
            if running != url:
                raise ConflictError(f"stream {name!r} already runs from {redact_url(running)}")
            if analyzers is not None:
                await self.set_analyzers(name, analyzers)
            return True, self.streams.status(name)
        self.analyzers.admit(config)
        try:
            return False, await self.streams.add(config, persistent=True)
        except StreamExistsError:  # lost a race with a concurrent start of the same name
            return False, self.streams.status(name)
