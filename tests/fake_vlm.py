"""A local HTTP server speaking the OpenAI chat-completions and DashScope multimodal wire
formats, recording every request so tests can assert on what we send."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

OPENAI_PATH = "/v1/chat/completions"
DASHSCOPE_PATH = "/api/v1/services/aigc/multimodal-generation/generation"
# A structured alert the tests ask for, and an answer that fits it.
ALERT_SCHEMA = {
    "type": "object",
    "properties": {"alert": {"type": "boolean"}, "reason": {"type": "string"}},
    "required": ["alert", "reason"],
}
SMOKE_ALERT = '{"alert": true, "reason": "smoke"}'


class FakeVlm:
    """Behaviours are queued per call: "ok", "429", "500", "badjson", ("slow", seconds),
    ("text", answer), ("status", code). With the queue empty it answers "ok"."""

    def __init__(self, answer: str = "A ball moves across the picture.") -> None:
        self.answer = answer
        self.requests: list[dict[str, Any]] = []
        self.behaviours: deque[Any] = deque()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                fake.requests.append(
                    {
                        "path": self.path,
                        "headers": dict(self.headers),
                        "json": json.loads(body),
                        "at": time.monotonic(),
                    }
                )
                fake._respond(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _send(
        self,
        h: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
    ) -> None:
        h.send_response(status)
        h.send_header("content-type", "application/json")
        h.send_header("content-length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)

    def _respond(self, h: BaseHTTPRequestHandler) -> None:
        what = self.behaviours.popleft() if self.behaviours else "ok"
        text = self.answer
        if isinstance(what, tuple) and what[0] == "slow":
            time.sleep(what[1])
        elif isinstance(what, tuple) and what[0] == "text":
            text = what[1]
        elif isinstance(what, tuple) and what[0] == "status":
            return self._send(h, what[1], b'{"error": {"message": "refused"}}')
        elif what == "429":
            return self._send(
                h, 429, b'{"error": {"message": "rate limited"}}', {"Retry-After": "0.3"}
            )
        elif what == "500":
            return self._send(h, 500, b'{"error": {"message": "internal"}}')
        elif what == "badjson":
            return self._send(h, 200, b"{not json")
        if h.path == OPENAI_PATH:
            doc = {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": "fake-vl",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": text},
                    }
                ],
                "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
            }
        elif h.path == DASHSCOPE_PATH:
            doc = {
                "request_id": "r1",
                "output": {
                    "choices": [
                        {
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": [{"text": text}]},
                        }
                    ]
                },
                "usage": {"input_tokens": 90, "output_tokens": 10},
            }
        else:
            return self._send(h, 404, b'{"error": "no such path"}')
        return self._send(h, 200, json.dumps(doc).encode())
