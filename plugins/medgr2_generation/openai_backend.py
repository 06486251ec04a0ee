"""The ``openai`` generator: any OpenAI-compatible chat-completions server (OpenAI, vLLM, Ollama,
LM Studio), through medgr2's lean HTTP client (:mod:`medgr2_generation.lean_http`, the default) or the
openai SDK's async client with SDK retries off (``transport: sdk``). Both send the same request bytes
(``tests/generation/test_gen_lean_http.py`` compares them) and map failures to the same engine errors."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import ssl
import zlib
from collections.abc import Sequence
from typing import Any

from medgr2.config import env_secret
from medgr2_generation.engine import FatalError, Reply, RetryableError, classify_status
from medgr2_generation.errors import register_secret_env
from medgr2_generation.api import ApiGenerator, Transport, closing, is_transport_error
from medgr2_generation.backend_support import EncodedImage
from medgr2_generation.lean_http import LeanClient, proxy_for
from medgr2_generation.options import OpenAIOptions
from medgr2_generation.prompts import json_str as _encode_str

DEFAULT_BASE_URL = "https://api.openai.com/v1"

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
            content.append({"type": "image_url", "image_url": {"url": img.data_url}})
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

    def request_body(
        self, prompt: str, images: Sequence[EncodedImage], schema: dict[str, Any] | None
    ) -> bytes:
        """The request body as the bytes both transports send, ``encode_json(payload(...))`` exactly, made
        once per request (retries reuse it) from the body's constant JSON, encoded once per schema and
        image count (:meth:`_body_parts`), with the prompt and the image URLs put in between."""
        parts = self._body_parts(len(images), schema)
        out = [parts[0], _encode_str(prompt)]
        for img, part in zip(images, parts[1:]):
            out += (part, img.data_url_json)
        out.append(parts[-1])
        return "".join(out).encode("utf-8")

    def _body_parts(self, n_images: int, schema: dict[str, Any] | None) -> tuple[str, ...]:
        """The JSON of :meth:`payload` split where the prompt and the image URLs go (cached by image count
        and schema: the schema is JSON-encoded once, not per request)."""
        memo = self.__dict__.setdefault("_parts_memo", {})
        key = (n_images, id(schema), id(self.options))
        hit = memo.get(key)
        if hit is not None and hit[0] is schema and hit[1] is self.options:
            return hit[2]
        slots = [_SLOT % i for i in range(n_images + 1)]
        images = [EncodedImage(b"", "", 1, 1) for _ in range(n_images)]
        for img, slot in zip(images, slots[1:]):
            img.__dict__["data_url"] = slot  # the cached_property, preset
        text = encode_json(self.payload(slots[0], images, schema)).decode("utf-8")
        parts: list[str] = []
        for slot in slots:
            before, sep, text = text.partition(_encode_str(slot))
            if not sep:
                raise AssertionError(f"slot {slot!r} not found in the encoded body")
            parts.append(before)
        parts.append(text)
        memo[key] = (schema, self.options, tuple(parts))
        return memo[key][2]

    def base_url(self) -> str:
        """The server URL: the option, else ``OPENAI_BASE_URL``, else OpenAI's (as the SDK resolves it)."""
        return self.options.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL

    def transport_kind(self) -> str:
        """``lean`` or ``sdk``: the ``transport`` option, ``auto`` resolved (``sdk`` when a proxy applies)."""
        kind = self.options.transport
        if kind == "auto":
            kind = "sdk" if proxy_for(self.base_url()) else "lean"
        return kind

    def open_transport(self) -> contextlib.AbstractAsyncContextManager[Transport]:
        if self.transport_kind() == "sdk":
            return self._sdk_transport()
        return self._lean_transport()

    def lean_headers(self) -> dict[str, str]:
        """The headers the lean transport sends besides ``Host`` and ``Content-Length``: those of the SDK's
        request that a server reads (authorization, content type, accept, the organisation and project when
        their variables are set). Left out on purpose: the SDK's ``x-stainless-*`` telemetry (language,
        package version, OS, architecture, runtime, retry count, read timeout), ``Accept-Encoding`` (replies
        come uncompressed: no gzip to undo per reply on a local link) and ``Connection: keep-alive`` (the
        HTTP/1.1 default); ``User-Agent`` names medgr2 instead of the SDK."""
        from medgr2 import __version__

        secret = env_secret(self.options.api_key_env)
        headers = {
            "Authorization": f"Bearer {secret.get_secret_value() if secret else 'not-needed'}",
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": f"medgr2/{__version__}",
        }
        for var, header in (("OPENAI_ORG_ID", "OpenAI-Organization"), ("OPENAI_PROJECT_ID", "OpenAI-Project")):
            if os.environ.get(var):
                headers[header] = os.environ[var]
        return headers

    def _lean_transport(self) -> contextlib.AbstractAsyncContextManager[Transport]:
        client = LeanClient(
            self.base_url(), self.lean_headers(), timeout_s=self.options.timeout_s,
            max_idle=self.options.concurrency,
        )

        async def transport(body: bytes | dict[str, Any]) -> Reply:
            data = body if isinstance(body, bytes) else encode_json(body)
            try:
                resp = await client.post("/chat/completions", data)
            except (TimeoutError, asyncio.TimeoutError) as exc:
                raise RetryableError(f"timed out after {client.timeout_s:g} s") from exc
            except (OSError, asyncio.IncompleteReadError, ssl.SSLError, zlib.error) as exc:
                raise RetryableError(f"connection error: {type(exc).__name__}: {exc}") from exc
            if not 200 <= resp.status < 300:
                raise classify_status(resp.status, status_message(resp.status, resp.body),
                                      resp.headers.get("retry-after"))
            try:
                reply = json.loads(resp.body)
            except ValueError as exc:  # a body that is not JSON (UnicodeDecodeError included)
                raise RetryableError(f"unreadable reply body: {exc}") from exc
            return chat_reply(reply)

        transport.enforces_timeout = True  # type: ignore[attr-defined]  # the client's timeout_s (see RequestEngine)
        return closing([client], transport)

    def _sdk_transport(self) -> contextlib.AbstractAsyncContextManager[Transport]:
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

        async def transport(body: bytes | dict[str, Any]) -> Reply:
            client = next(turn)
            try:
                # The body is already plain JSON we built (bytes: sent as they are): post it and read the
                # reply as a dict, skipping the SDK's parameter transformation and response models (about
                # 0.5 ms of CPU per request); auth, base URL and the error classes are still the SDK's.
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
            return chat_reply(resp)

        return closing(clients, transport)


def encode_json(body: Any) -> bytes:
    """``body`` as the openai SDK (and httpx) encode JSON: compact, UTF-8, no NaN."""
    return _ENCODER.encode(body).encode("utf-8")


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_SLOT = "\x00medgr2-slot-%d\x00"


def status_message(status: int, body: bytes) -> str:
    """The message of an error reply, worded as the openai SDK words it: ``Error code: 429 - <the JSON
    body's error.message>``, or just ``Error code: 502`` for a body without one."""
    message = f"Error code: {status}"
    try:
        data = json.loads(body)
    except ValueError:
        return message
    error = data.get("error", data) if isinstance(data, dict) else None
    text = error.get("message") if isinstance(error, dict) else None
    return f"{message} - {text}" if isinstance(text, str) and text else message


def chat_reply(resp: Any) -> Reply:
    """The :class:`Reply` of a decoded chat completion (a retryable error when it is not one)."""
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
        raise RetryableError(f"the server sent a reply that is not a chat completion: {exc!r}") from exc
