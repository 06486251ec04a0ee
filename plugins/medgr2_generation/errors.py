"""Errors of API requests, how an HTTP status maps to them, and secret redaction.

Three kinds of failure reach :class:`medgr2_generation.engine.RequestEngine` from a transport:

* :class:`RetryableError`: transient (408, 429, 5xx, timeouts, resets); retried, never final;
* :class:`FatalError`: retrying this request cannot fix it (a 400 for one prompt ...);
* a *permanent* status (401/403 authentication, 404 model not found, or 400 on several prompts in
  a row) is a fatal error that no other request can avoid either: the engine stops sending and
  raises :class:`PermanentError` naming the fix, so a stage with a wrong key or model ends at
  once, with an exit code ≠ 0 and nothing marked complete.

Anything stored or shown about a failure (rejects, caches, error bodies, ledgers, logs) goes
through :func:`redact` first: ``sk-…`` and ``AIza…`` keys, ``Bearer …`` tokens, ``api-key``
headers and the values of the key variables (:data:`SECRET_ENV_VARS` and those a backend adds
with :func:`register_secret_env`) become ``[REDACTED]``.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from typing import Any

from medgr2.interfaces import ComponentFailed

RETRYABLE_STATUS = frozenset({408, 409, 425, 429}) | frozenset(range(500, 600))
"""HTTP statuses worth retrying (timeouts, rate limits, conflicts, server errors)."""

REDACTED = "[REDACTED]"

SECRET_ENV_VARS: set[str] = {"OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "ANTHROPIC_API_KEY"}
"""Environment variables whose values are redacted wherever they appear (see :func:`redact`)."""

_BEARER = re.compile(  # a token has a digit or a symbol in it: "bearer protocols" stays
    r"(?i)(?<![A-Za-z0-9])(bearer)\s+(?=[A-Za-z]*[0-9._~+/=\-])[A-Za-z0-9._~+/=\-]{8,}"
)
_KEYS = [re.compile(r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_\-]{8,}"), re.compile(r"AIza[0-9A-Za-z_\-]{20,}")]
_HEADER = re.compile(
    r"(?i)((?:x-goog-api-key|x-api-key|api[-_]?key|authorization)[\"']?\s*[:=]\s*[\"']?)"
    r"(?!bearer\b|\[REDACTED\])[^\s\"',;&}]{6,}"
)
_MIN_SECRET_LEN = 6  # shorter values are too likely to be ordinary words


def register_secret_env(name: str) -> None:
    """Redact the value of environment variable ``name`` too (e.g. a configured ``api_key_env``)."""
    SECRET_ENV_VARS.add(name)


def redact(text: str) -> str:
    """``text`` with API keys, bearer tokens and the configured keys' values replaced by ``[REDACTED]``.

    >>> redact('{"echo": "Authorization: Bearer sk-abcdefghijklmnop"}')
    '{"echo": "Authorization: Bearer [REDACTED]"}'
    """
    if not text:
        return text
    for name in SECRET_ENV_VARS:
        value = os.environ.get(name)
        if value and len(value) >= _MIN_SECRET_LEN and value in text:
            text = text.replace(value, REDACTED)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    for pattern in _KEYS:
        text = pattern.sub(REDACTED, text)
    text = _HEADER.sub(lambda m: m.group(1) + REDACTED, text)
    return text


def redact_data(value: Any) -> Any:
    """:func:`redact` applied to every string in nested dicts / lists / tuples."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_data(v) for v in value)
    return value


class RetryableError(Exception):
    """A transient failure: the engine retries it (after ``retry_after`` s when given)."""

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = None):
        super().__init__(redact(message))
        self.retry_after = retry_after
        self.status = status


class FatalError(Exception):
    """A failure that retrying this request cannot fix (bad request, authentication ...)."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(redact(message))
        self.status = status


class RequestFailed(Exception):
    """A request gave up (fatal error, or retries exhausted); the message says why.

    ``final`` is true when retrying later cannot help (a fatal error for this one request);
    false when it gave up on transient errors (a later run asks again)."""

    def __init__(self, message: str, attempts: int, *, final: bool = False):
        super().__init__(redact(message))
        self.attempts = attempts
        self.final = final


class Stopped(Exception):
    """The engine's stop event was set before the request could finish."""


class PermanentError(FatalError, ComponentFailed):
    """Every request to this endpoint would fail the same way: wrong key, unknown model, or a
    request the server refuses on several prompts in a row. The engine sends nothing more;
    the stage ends with this error (the CLI exits 1) and is not marked complete.

    Attributes:
        kind: ``"auth"`` (401/403, or a 400 about the API key), ``"model"`` (404) or ``"invalid"``
            (400/422 on ``abort_after_invalid`` requests in a row).
        status: The HTTP status.
        requests_sent: Attempts the engine sent in this run, the failing ones included (set when
            the run ends: at most the attempts that were already in flight).
        fix: What to change (the key's variable, the model name ...).
    """

    def __init__(self, kind: str, status: int | None, detail: str, fix: str, requests_sent: int = 0):
        self.kind, self.detail, self.fix, self.requests_sent = kind, redact(detail), redact(fix), requests_sent
        super().__init__(self._message(), status=status)

    def _message(self) -> str:
        what = {"auth": "authentication failed", "model": "model not found", "invalid": "the server refuses "
                "every request as invalid"}.get(self.kind, self.kind)
        return (f"{what} ({self.detail}); stopped after {self.requests_sent} request(s) instead of sending "
                f"the rest. Fix: {self.fix}")

    def with_requests(self, n: int) -> PermanentError:
        """Record the final number of requests sent (updates the message)."""
        self.requests_sent = n
        self.args = (self._message(),)
        return self

    def __reduce__(self) -> Any:  # picklable across processes
        return (PermanentError, (self.kind, self.status, self.detail, self.fix, self.requests_sent))


def permanent_kind(status: int | None, message: str) -> str | None:
    """``"auth"``, ``"model"``, ``"invalid"`` or ``None`` for a fatal HTTP status (see :class:`PermanentError`).

    Gemini answers a bad key with 400 INVALID_ARGUMENT "API key not valid": that counts as auth."""
    if status in (401, 403) or (status == 400 and re.search(r"(?i)api[ _-]?key", message)):
        return "auth"
    if status == 404:
        return "model"
    if status in (400, 422):
        return "invalid"
    return None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); ``None`` if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def classify_status(status: int, message: str, retry_after: str | None = None) -> Exception:
    """The engine error for an HTTP error status: retryable (408/429/5xx ...) or fatal (with its status)."""
    if status in RETRYABLE_STATUS:
        return RetryableError(
            f"HTTP {status}: {message}", retry_after=parse_retry_after(retry_after), status=status
        )
    return FatalError(f"HTTP {status}: {message}", status=status)
