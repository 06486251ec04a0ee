"""The ``gemini`` generator: Google's Gemini API through google-genai's async client (no SDK
retries: ``retry_options`` is never set)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from medgr2.config import env_secret
from medgr2_generation.engine import FatalError, Reply, RetryableError, classify_status
from medgr2_generation.api import ApiGenerator, Transport, closing, is_transport_error
from medgr2_generation.backend_support import EncodedImage
from medgr2_generation.options import GeminiOptions

KEY_VARS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")


class GeminiGenerator(ApiGenerator):
    """Generates VQA samples with Gemini (``response_schema`` structured output).

    The key comes from ``GEMINI_API_KEY`` or ``GOOGLE_API_KEY`` only (never from config).
    ``complete_json(prompts, schema, context) -> list[dict | Reject]`` runs arbitrary
    structured prompts (``prompts`` are ``(text, images)`` pairs) for LLM judges.
    """

    name = "gemini"

    def __init__(self, options: GeminiOptions):
        super().__init__(options)
        self.options: GeminiOptions = options

    def key_hint(self) -> str:
        import os

        return "GOOGLE_API_KEY" if not os.environ.get("GEMINI_API_KEY") and os.environ.get(
            "GOOGLE_API_KEY") else "GEMINI_API_KEY (or GOOGLE_API_KEY)"

    def payload(
        self, prompt: str, images: Sequence[EncodedImage], schema: dict[str, Any] | None
    ) -> dict[str, Any]:
        from google.genai import types

        parts = [types.Part.from_bytes(data=img.data, mime_type=img.mime) for img in images]
        parts.append(types.Part.from_text(text=prompt))
        config: dict[str, Any] = {
            "temperature": self.options.temperature,
            "max_output_tokens": self.options.max_output_tokens,
        }
        if schema is not None:
            config.update(response_mime_type="application/json", response_schema=schema)
        return {
            "model": self.options.model,
            "contents": [types.Content(role="user", parts=parts)],
            "config": types.GenerateContentConfig(**config),
        }

    def open_transport(self) -> contextlib.AbstractAsyncContextManager[Transport]:
        from google import genai
        from google.genai import errors, types

        secret = env_secret(*KEY_VARS)
        if secret is None:
            raise FatalError("the gemini backend needs an API key: set GEMINI_API_KEY (or GOOGLE_API_KEY)")
        http = types.HttpOptions(
            base_url=self.options.base_url,
            api_version=self.options.api_version,
            timeout=int(self.options.timeout_s * 1000),
            async_client_args={"limits": _limits(self.options.concurrency)},
        )
        client = genai.Client(api_key=secret.get_secret_value(), http_options=http)

        async def transport(kwargs: dict[str, Any]) -> Reply:
            try:
                resp = await client.aio.models.generate_content(**kwargs)
            except errors.APIError as exc:
                headers = getattr(getattr(exc, "response", None), "headers", None) or {}
                raise classify_status(
                    exc.code or 0, str(exc.message or exc), headers.get("retry-after")
                ) from exc
            except ValueError as exc:  # a body that is not JSON
                raise RetryableError(f"unreadable reply body: {exc}") from exc
            except Exception as exc:
                if is_transport_error(exc):
                    raise RetryableError(f"{type(exc).__name__}: {exc}") from exc
                raise
            cand = (resp.candidates or [None])[0]
            finish = str(getattr(cand, "finish_reason", "") or "").rsplit(".", 1)[-1]
            usage = resp.usage_metadata
            return Reply(
                text=resp.text or "",
                finish_reason=finish,
                input_tokens=(usage.prompt_token_count or 0) if usage else 0,
                output_tokens=(usage.candidates_token_count or 0) if usage else 0,
            )

        return closing([client.aio], transport)


def _limits(concurrency: int) -> Any:
    """httpx connection limits that let ``concurrency`` requests run at once."""
    import httpx

    return httpx.Limits(max_connections=concurrency + 8, max_keepalive_connections=concurrency + 8)
