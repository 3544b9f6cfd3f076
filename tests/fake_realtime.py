"""A local realtime provider speaking DashScope's Qwen-Omni realtime protocol (path
``/api-ws/v1/realtime``) and OpenAI's Realtime protocol (path ``/v1/realtime``), as their
documentation describes them: it records every client event so tests can assert on what we
send, and streams a response back for each ``response.create``."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
import time
from typing import Any

import websockets
from websockets.asyncio.server import ServerConnection, serve

DELTAS = ["I see ", "a person ", "in front of ", "the camera."]
TRANSCRIPT = "what do you see"


class FakeRealtime:
    def __init__(self, delta_interval: float = 0.05) -> None:
        self.delta_interval = delta_interval
        self.events: list[dict[str, Any]] = []  # every client event, with "_at" and "_path"
        self.connections: list[dict[str, Any]] = []
        self.drop_after_appends: int | None = None  # close the connection once, mid-stream
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self._thread.start()
        started.wait(10)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            self._server = await serve(self._handle, "127.0.0.1", 0, max_size=32 * 1024 * 1024)
            self.port = self._server.sockets[0].getsockname()[1]
            started.set()
            await self._server.serve_forever()

        with contextlib.suppress(asyncio.CancelledError):
            self._loop.run_until_complete(main())
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    def url(self, dialect: str) -> str:
        path = "/api-ws/v1/realtime" if dialect == "dashscope" else "/v1/realtime"
        return f"ws://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._thread.join(5)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == kind]

    async def _handle(self, ws: ServerConnection) -> None:
        path = ws.request.path
        dialect = "openai" if path.startswith("/v1/") else "dashscope"
        self.connections.append({"path": path, "headers": dict(ws.request.headers)})
        await ws.send(json.dumps({"type": "session.created", "session": {"id": "sess_1"}}))
        streaming: asyncio.Task[None] | None = None
        appends = 0
        try:
            async for message in ws:
                event = json.loads(message)
                event["_at"], event["_path"] = time.monotonic(), path
                self.events.append(event)
                kind = event.get("type")
                if kind == "session.update":
                    await ws.send(
                        json.dumps({"type": "session.updated", "session": event["session"]})
                    )
                elif kind == "input_audio_buffer.append":
                    appends += 1
                    if self.drop_after_appends is not None and appends >= self.drop_after_appends:
                        self.drop_after_appends = None
                        await ws.close()
                        return
                elif kind == "input_audio_buffer.commit":
                    await ws.send(
                        json.dumps({"type": "input_audio_buffer.committed", "item_id": "item_1"})
                    )
                    await ws.send(
                        json.dumps(
                            {
                                "type": "conversation.item.input_audio_transcription.completed",
                                "item_id": "item_1",
                                "content_index": 0,
                                "transcript": TRANSCRIPT,
                            }
                        )
                    )
                elif kind == "response.create":
                    streaming = asyncio.create_task(self._respond(ws, dialect))
                elif kind == "response.cancel" and streaming is not None and not streaming.done():
                    streaming.cancel()
                    await ws.send(
                        json.dumps(
                            {
                                "type": "response.done",
                                "response": {"id": "resp_1", "status": "cancelled"},
                            }
                        )
                    )
        except websockets.ConnectionClosed:
            pass
        finally:
            if streaming is not None:
                streaming.cancel()

    async def _respond(self, ws: ServerConnection, dialect: str) -> None:
        text_event = (
            "response.audio_transcript.delta"
            if dialect == "dashscope"
            else "response.output_audio_transcript.delta"
        )
        audio_event = (
            "response.audio.delta" if dialect == "dashscope" else "response.output_audio.delta"
        )
        await ws.send(
            json.dumps(
                {"type": "response.created", "response": {"id": "resp_1", "status": "in_progress"}}
            )
        )
        tone = base64.b64encode(bytes(4800)).decode()  # 100 ms of 24 kHz silence
        for delta in DELTAS:
            await asyncio.sleep(self.delta_interval)
            await ws.send(json.dumps({"type": text_event, "response_id": "resp_1", "delta": delta}))
            await ws.send(json.dumps({"type": audio_event, "response_id": "resp_1", "delta": tone}))
        await ws.send(
            json.dumps(
                {"type": "response.done", "response": {"id": "resp_1", "status": "completed"}}
            )
        )
