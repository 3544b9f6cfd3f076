"""HTTP providers: OpenAI-compatible chat completions and DashScope native multimodal."""

from __future__ import annotations

import json
import os
from typing import Any

import httpx

from vlm_monitor.config import VlmProviderConfig
from vlm_monitor.vlm.base import (
    PROVIDER_KINDS,
    ProviderError,
    VlmAnswer,
    VlmRequest,
    grid_layout,
    jpeg_data_url,
)
from vlm_monitor.vlm.frames import REFERENCE_NOTE, Plan, pictures, plan, text_tokens
from vlm_monitor.vlm.schemas import schema_instruction, schema_name

DASHSCOPE_URL = "https://dashscope.aliyuncs.com"
DASHSCOPE_PATH = "/api/v1/services/aigc/multimodal-generation/generation"


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _check_base_url(url: str) -> None:
    """A base URL every call could be sent to, so a typo fails at start-up, not on each clip."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ProviderError(f"base_url {url!r} is not a URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ProviderError(f"base_url {url!r} is not an http:// or https:// URL with a host")


class _HttpProvider:
    def __init__(self, config: VlmProviderConfig) -> None:
        self.name = config.name
        self.config = config
        if config.base_url is not None:
            _check_base_url(config.base_url)
        key = os.environ.get(config.api_key_env) if config.api_key_env else None
        if config.api_key_env and not key:
            raise ProviderError(f"${config.api_key_env} is not set")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(timeout=config.timeout_s, headers=headers)

    def close(self) -> None:
        self._http.close()

    def _post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            resp = self._http.post(url, json=body)
        except httpx.TimeoutException:
            raise ProviderError(
                f"{self.name}: timed out after {self.config.timeout_s} s", retryable=True
            ) from None
        except httpx.HTTPError as exc:
            raise ProviderError(
                f"{self.name}: {type(exc).__name__}: {exc}", retryable=True
            ) from None
        if resp.status_code in (408, 429) or resp.status_code >= 500:
            raise ProviderError(
                f"{self.name}: HTTP {resp.status_code}: {resp.text[:200]}",
                retryable=True,
                retry_after=_retry_after(resp),
            )
        if resp.status_code >= 400:
            # The request was refused (bad schema, image too large, wrong key): asking again
            # would get the same answer, and the provider itself is up.
            raise ProviderError(f"{self.name}: HTTP {resp.status_code}: {resp.text[:300]}")
        try:
            doc = resp.json()
        except ValueError:
            raise ProviderError(
                f"{self.name}: response is not JSON: {resp.text[:200]!r}", retryable=True
            ) from None
        if not isinstance(doc, dict):
            raise ProviderError(f"{self.name}: response is not a JSON object")
        return doc

    def _images(self, request: VlmRequest, prompt: str) -> list[str]:
        """The pictures as JPEG data URLs, the reference first: as many frames, as large, as
        the budget lets beside ``prompt`` and the rest of the text."""
        images, _ = pictures(
            request, self.config, self._text_tokens(request, prompt), self.config.mode == "grid"
        )
        return [jpeg_data_url(f, self.config.jpeg_quality) for f in images]

    def _prompt(self, request: VlmRequest, schema_in_request: bool) -> str:
        prompt = request.prompt
        if request.schema is not None and not schema_in_request:
            prompt += schema_instruction(request.schema)
        if request.reference is not None:
            prompt = f"{REFERENCE_NOTE}\n\n{prompt}"
        return prompt

    def _schema_in_request(self, request: VlmRequest) -> bool:
        return False

    def _text_tokens(self, request: VlmRequest, prompt: str) -> int:
        """Tokens of every text the request sends: prompt, repair turns, a schema the server
        is given apart (``response_format`` also goes into the model's context)."""
        text = prompt + "".join(t["content"] for t in _repair_turns(request))
        if self._schema_in_request(request):
            text += json.dumps(request.schema)
        return text_tokens(text)

    def frame_plan(self, request: VlmRequest, count: int, size: tuple[int, int]) -> Plan:
        """What a request like ``request`` with ``count`` frames of ``size`` would send.
        Raises FrameBudgetError when it cannot fit."""
        prompt = self._prompt(request, self._schema_in_request(request))
        text = self._text_tokens(request, prompt)
        reference = request.reference is not None
        if self.config.mode == "grid":  # one picture, the grid, sized by the budget
            cols, rows, cell = grid_layout(count, size)
            sheet = plan(self.config, 1, (cols * cell[0], rows * cell[1]), text, reference)
            return Plan(count, sheet.size, sheet.picture_tokens, reference)
        return plan(self.config, count, size, text, reference)


def _usage(doc: dict[str, Any], prompt_key: str, completion_key: str) -> dict[str, Any]:
    """The answer's ``usage``: tokens, and of them prompt and completion. A server that gives
    only a total has it counted as prompt tokens (the larger share of an image question)."""
    usage = doc.get("usage")
    usage = usage if isinstance(usage, dict) else {}

    def count(key: str) -> int:
        value = usage.get(key)
        return int(value) if isinstance(value, int | float) and value > 0 else 0

    prompt, completion = count(prompt_key), count(completion_key)
    total = count("total_tokens") or prompt + completion
    if prompt + completion == 0:
        prompt = total
    return {"tokens": total, "prompt_tokens": prompt, "completion_tokens": completion}


def _repair_turns(request: VlmRequest) -> list[dict[str, Any]]:
    """The previous answer and what was wrong with it, so the model can correct itself."""
    if request.repair is None:
        return []
    previous, problem = request.repair
    return [
        {"role": "assistant", "content": previous},
        {
            "role": "user",
            "content": f"That answer cannot be used: {problem}\nAnswer again with the "
            "corrected JSON object only.",
        },
    ]


@PROVIDER_KINDS.register("openai")
class OpenAIProvider(_HttpProvider):
    """``POST {base_url}/chat/completions``: covers OpenAI, DashScope compatible mode, Ollama,
    vLLM and LM Studio. Frames go as ``image_url`` parts, or one ``video`` part (mode video)."""

    def _schema_in_request(self, request: VlmRequest) -> bool:
        return request.schema is not None and self.config.structured == "json_schema"

    def analyze(self, request: VlmRequest) -> VlmAnswer:
        structured = self.config.structured if request.schema is not None else None
        prompt = self._prompt(request, structured == "json_schema")
        images = self._images(request, prompt)
        content: list[dict[str, Any]] = [{"type": "text", "text": prompt}]
        if self.config.mode == "video":
            if request.reference is not None:  # a picture of its own, not a frame of the video
                content.append({"type": "image_url", "image_url": {"url": images.pop(0)}})
            content.append({"type": "video", "video": images})
        else:
            content += [{"type": "image_url", "image_url": {"url": url}} for url in images]
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": [{"role": "user", "content": content}, *_repair_turns(request)],
            "max_tokens": self.config.max_tokens,
        }
        if structured == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": schema_name(request.schema),
                    "schema": request.schema,
                    "strict": True,
                },
            }
        elif structured == "json_object":
            body["response_format"] = {"type": "json_object"}
        doc = self._post(f"{(self.config.base_url or '').rstrip('/')}/chat/completions", body)
        try:
            text = doc["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise ProviderError(
                f"{self.name}: no choices[0].message.content in the answer"
            ) from None
        return VlmAnswer(
            text=str(text),
            model=doc.get("model", self.config.model),
            extra={"response": doc},
            **_usage(doc, "prompt_tokens", "completion_tokens"),
        )


@PROVIDER_KINDS.register("dashscope")
class DashScopeProvider(_HttpProvider):
    """DashScope native multimodal generation: the frames as one ``video`` (a list of images)."""

    def analyze(self, request: VlmRequest) -> VlmAnswer:
        prompt = self._prompt(request, False)  # the native API takes no schema: it is prompted
        images = self._images(request, prompt)
        # The reference is a picture of its own, not the first frame of the video.
        media: list[dict[str, Any]] = (
            [{"image": images.pop(0)}] if request.reference is not None else []
        )
        media.append({"image": images[0]} if len(images) == 1 else {"video": images})
        turns = [
            {"role": t["role"], "content": [{"text": t["content"]}]} for t in _repair_turns(request)
        ]
        question = {"role": "user", "content": [*media, {"text": prompt}]}
        body = {
            "model": self.config.model,
            "input": {"messages": [question, *turns]},
            "parameters": {"max_tokens": self.config.max_tokens},
        }
        base = (self.config.base_url or DASHSCOPE_URL).rstrip("/")
        doc = self._post(base + DASHSCOPE_PATH, body)
        if "code" in doc and doc.get("code"):
            raise ProviderError(f"{self.name}: {doc.get('code')}: {doc.get('message')}")
        try:
            parts = doc["output"]["choices"][0]["message"]["content"]
            text = "".join(p.get("text", "") for p in parts) if isinstance(parts, list) else parts
        except (KeyError, IndexError, TypeError):
            raise ProviderError(f"{self.name}: no output.choices[0].message.content") from None
        return VlmAnswer(
            text=str(text),
            model=self.config.model,
            extra={"response": doc},
            **_usage(doc, "input_tokens", "output_tokens"),
        )
