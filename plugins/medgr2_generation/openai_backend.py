"""The ``openai`` generator: any OpenAI-compatible chat-completions server (OpenAI, vLLM, Ollama,
LM Studio), through the openai SDK's async client with SDK retries off."""

from __future__ import annotations

import base64
import contextlib
import itertools
from collections.abc import Sequence
from typing import Any

from medgr2.config import env_secret
from medgr2_generation.engine import FatalError, Reply, RetryableError, classify_status
from medgr2_generation.errors import register_secret_env
from medgr2_generation.api import ApiGenerator, Transport, closing, is_transport_error
from medgr2_generation.backend_support import EncodedImage
from medgr2_generation.options import OpenAIOptions

CONNECTIONS_PER_CLIENT = 16
"""Concurrency served by one SDK client (one connection pool)."""


class OpenAIGenerator(ApiGenerator):
    """Generates VQA samples with an OpenAI-compatible server (``response_format`` JSON schema).

    The key comes from the environment variable named by ``api_key_env`` (default
    ``OPENAI_API_KEY``); without one a placeholder is sent, which local servers accept.
    ``complete_json(prompts, schema, context) -> list[dict | Reject]`` runs arbitrary
    structured prompts (``prompts`` are ``(text, images)`` pairs) for LLM judges.
    """

    name = "openai"

    def __init__(self, options: OpenAIOptions):
        super().__init__(options)
        self.options: OpenAIOptions = options
        register_secret_env(options.api_key_env)

    def key_hint(self) -> str:
        return f"the environment variable {self.options.api_key_env}"

    def payload(
        self, prompt: str, images: Sequence[EncodedImage], schema: dict[str, Any] | None
    ) -> dict[str, Any]:
        content: list[dict[str, Any]] = [{"type": "text", "text": prompt}]
        for img in images:
            url = f"data:{img.mime};base64,{base64.b64encode(img.data).decode('ascii')}"
            content.append({"type": "image_url", "image_url": {"url": url}})
        body: dict[str, Any] = {
            "model": self.options.model,
            "messages": [{"role": "user", "content": content}],
            "temperature": self.options.temperature,
            "max_tokens": self.options.max_output_tokens,
        }
        if schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "reply", "schema": schema, "strict": False},
            }
        return body

    def open_transport(self) -> contextlib.AbstractAsyncContextManager[Transport]:
        import openai

        secret = env_secret(self.options.api_key_env)
        # httpx's connection pool scans every connection per request: several small clients,
        # used in turn, keep that cost flat as concurrency grows.
        clients = [
            openai.AsyncOpenAI(
                api_key=secret.get_secret_value() if secret else "not-needed",
                base_url=self.options.base_url,
                max_retries=0,
                timeout=self.options.timeout_s,
            )
            for _ in range(-(-self.options.concurrency // CONNECTIONS_PER_CLIENT))
        ]
        turn = itertools.cycle(clients)

        async def transport(body: dict[str, Any]) -> Reply:
            client = next(turn)
            try:
                # The body is already plain JSON we built: post it as is and read the reply as a dict,
                # skipping the SDK's parameter transformation and response models (about 0.5 ms of
                # CPU per request); auth, base URL and the error classes are still the SDK's.
                resp = await client.post("/chat/completions", body=body, cast_to=object)
            except openai.APIStatusError as exc:
                raise classify_status(
                    exc.status_code, exc.message, exc.response.headers.get("retry-after")
                ) from exc
            except openai.APITimeoutError as exc:
                raise RetryableError(f"timed out: {exc}") from exc
            except openai.APIConnectionError as exc:
                raise RetryableError(f"connection error: {exc}") from exc
            except ValueError as exc:  # a body that is not JSON
                raise RetryableError(f"unreadable reply body: {exc}") from exc
            except openai.OpenAIError as exc:
                raise FatalError(f"{type(exc).__name__}: {exc}") from exc
            except Exception as exc:
                if is_transport_error(exc):
                    raise RetryableError(f"{type(exc).__name__}: {exc}") from exc
                raise
            try:
                choice = resp["choices"][0]
                usage = resp.get("usage") or {}
                return Reply(
                    text=choice["message"].get("content") or "",
                    finish_reason=choice.get("finish_reason") or "",
                    input_tokens=int(usage.get("prompt_tokens") or 0),
                    output_tokens=int(usage.get("completion_tokens") or 0),
                )
            except (TypeError, KeyError, IndexError, AttributeError, ValueError) as exc:
                raise RetryableError(
                    f"the server sent a reply that is not a chat completion: {exc!r}"
                ) from exc

        return closing(clients, transport)
